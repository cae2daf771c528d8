"""Latency samples and tick rates for the live status, in preallocated rings."""

from __future__ import annotations

import time
from array import array

import numpy as np

#: latency samples kept; percentiles describe the most recent ones
LATENCY_SAMPLES = 8192
#: seconds a computed pair of percentiles is served before it is recomputed
PERCENTILES_EVERY_S = 0.1


class LatencyRing:
    """The last ``LATENCY_SAMPLES`` latencies in nanoseconds; recording allocates nothing."""

    def __init__(self, capacity: int = LATENCY_SAMPLES) -> None:
        # array.array: a store is a third of a NumPy item assignment, once per frame
        self.samples = array("q", bytes(8 * capacity))
        self.capacity = capacity
        self.count = 0
        self._cached: dict[str, float | None] = {"p50": None, "p99": None}
        self._cached_at = -1.0

    def record(self, nanoseconds: int) -> None:
        """Add one sample, overwriting the oldest when full."""
        self.samples[self.count % self.capacity] = nanoseconds
        self.count += 1

    def percentiles_us(self) -> dict[str, float | None]:
        """Return p50 and p99 of the kept samples in microseconds (None before any).

        Recomputed at most every ``PERCENTILES_EVERY_S``: a status poller asking thousands of
        times a second would otherwise spend its time sorting samples.
        """
        now = time.monotonic()
        if now - self._cached_at < PERCENTILES_EVERY_S:
            return self._cached
        kept = np.frombuffer(self.samples, np.int64)[: min(self.count, self.capacity)]
        if kept.shape[0]:
            p50, p99 = np.percentile(kept, (50, 99))
            self._cached = {"p50": round(float(p50) / 1e3, 2), "p99": round(float(p99) / 1e3, 2)}
        self._cached_at = now
        return self._cached


class RateMeter:
    """Ticks per second over the last sampling interval, read without a background task."""

    def __init__(self, min_interval_s: float = 0.5) -> None:
        self.min_interval_s = min_interval_s
        self._last_count = 0
        self._last_time = time.monotonic()
        self.rate = 0.0

    def sample(self, count: int) -> float:
        """Return the rate of ``count`` growth, updated at most every ``min_interval_s``."""
        now = time.monotonic()
        elapsed = now - self._last_time
        if elapsed >= self.min_interval_s:
            self.rate = (count - self._last_count) / elapsed
            self._last_count, self._last_time = count, now
        return self.rate
