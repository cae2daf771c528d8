"""Brokers: one small async interface (:mod:`engine.brokers.base`) and its adapters.

``paper`` (:class:`PaperBroker`) fills inside the process; live adapters come later and
implement the same :class:`Broker` protocol.
"""

from engine.brokers.base import (
    Bracket,
    Broker,
    OrderError,
    OrderRequest,
    OrderState,
    OrderUpdate,
)
from engine.brokers.paper import PaperBroker

__all__ = [
    "Bracket",
    "Broker",
    "OrderError",
    "OrderRequest",
    "OrderState",
    "OrderUpdate",
    "PaperBroker",
]
