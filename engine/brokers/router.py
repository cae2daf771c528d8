"""Moved to :mod:`engine.brokers.routing` (kept while the helpers finish: delete)."""

from engine.brokers.routing.router import *  # noqa: F403
from engine.brokers.routing.router import Router  # noqa: F401
