"""Brokers: one small async interface (:mod:`engine.brokers.base`) and its adapters.

``paper`` (:class:`PaperBroker`) fills inside the process; the live adapters (Kite, Upstox,
ProjectX) implement the same :class:`Broker` protocol over the brokers' APIs
(:mod:`engine.brokers.live_base`), and :mod:`engine.brokers.routing` connects them to the kernels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.brokers.base import (
    Bracket,
    Broker,
    OrderError,
    OrderRequest,
    OrderState,
    OrderUpdate,
)
from engine.brokers.paper import PaperBroker

if TYPE_CHECKING:
    from engine.brokers.live_base import Alert, LiveAdapter
    from engine.config import EngineConfig

__all__ = [
    "Bracket",
    "Broker",
    "OrderError",
    "OrderRequest",
    "OrderState",
    "OrderUpdate",
    "PaperBroker",
    "live_adapter",
]


def live_adapter(cfg: EngineConfig, on_alert: Alert) -> LiveAdapter:
    """Return the adapter of ``cfg.broker.name`` (imported on demand: each pulls its own code)."""
    name = cfg.broker.name
    if name == "kite":
        from engine.brokers.kite.broker import KiteBroker as Adapter
    elif name == "upstox":
        from engine.brokers.upstox.broker import UpstoxBroker as Adapter
    elif name == "projectx":
        from engine.brokers.projectx.broker import ProjectXBroker as Adapter
    else:
        raise ValueError(f"{name!r} is not a live broker")
    return Adapter(cfg, on_alert)
