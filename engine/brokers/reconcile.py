"""Moved to :mod:`engine.brokers.routing` (kept while the helpers finish: delete)."""

from engine.brokers.routing.reconcile import adopt, reconcile  # noqa: F401
