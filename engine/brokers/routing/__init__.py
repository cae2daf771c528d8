"""Live order routing: each position's bracket at the broker, kept through failures and restarts.

:mod:`~engine.brokers.routing.router` turns the kernels' intents into orders and the broker's
updates into fills; :mod:`~engine.brokers.routing.brackets` is the per-position order-state
machine; :mod:`~engine.brokers.routing.legs` keeps a position's stop and target and closes it;
:mod:`~engine.brokers.routing.invariants` checks that no position is left without its stop;
:mod:`~engine.brokers.routing.rebuild` and :mod:`~engine.brokers.routing.reconcile` put it all
back after a restart and compare it with the broker.
"""

from engine.brokers.routing.reconcile import adopt, reconcile
from engine.brokers.routing.router import Router

__all__ = ["Router", "adopt", "reconcile"]
