"""Scratch tick batches: the one shape every feed fills and the engine consumes.

Feeds never build per-tick Python objects. Each feed fills the column arrays of a preallocated
:class:`TickBatch` and the engine hands them to one kernel call per batch. Validation (finite,
positive, known instrument, time not going back) belongs to that kernel, so feeds pass such ticks
through untouched and drop only what they cannot represent in the arrays at all; those drops are
counted per reason in a small int64 array that a feed exposes as a ``rejected`` dict.
"""

from __future__ import annotations

import numpy as np

#: Names of the reasons a feed drops a row, indexed by the ``REJECT_*`` codes below.
REJECT_REASONS: tuple[str, ...] = ("not_a_number", "malformed_row")
#: Code for a row whose used field is present but is not a number (e.g. ``abc``, ``12x``).
REJECT_NOT_A_NUMBER: int = 0
#: Code for a row with a missing or empty field, or with the wrong number of fields.
REJECT_MALFORMED_ROW: int = 1
#: Ticks a broker feed's batch holds; a larger frame goes to the engine in several calls.
FRAME_BATCH_TICKS: int = 4096


class TickBatch:
    """Preallocated scratch arrays for one batch of ticks.

    Rows ``[0, n)`` are valid and kept in source order. ``idx`` is the instrument index (-1 for
    a symbol the engine does not know), ``price`` and ``size`` are float64 (``size`` is 0.0 when
    the source has none) and ``ts`` is int64 nanoseconds since the epoch, UTC.

    Parameters
    ----------
    capacity : int
        Number of rows the arrays hold; a feed never fills more than this per batch.
    """

    def __init__(self, capacity: int) -> None:
        capacity = int(capacity)
        if capacity <= 0:
            raise ValueError(f"TickBatch capacity must be positive, got {capacity}")
        self.capacity: int = capacity
        self.idx = np.zeros(capacity, np.int64)
        self.price = np.zeros(capacity, np.float64)
        self.size = np.zeros(capacity, np.float64)
        self.ts = np.zeros(capacity, np.int64)
        self.n: int = 0

    def __repr__(self) -> str:
        return f"TickBatch(capacity={self.capacity}, n={self.n})"


def new_reject_counts() -> np.ndarray:
    """Return a zeroed int64 counter array with one slot per reject reason.

    Returns
    -------
    numpy.ndarray
        Array of shape ``(len(REJECT_REASONS),)`` that numba kernels increment in place.
    """
    return np.zeros(len(REJECT_REASONS), np.int64)


def rejects_to_dict(counts: np.ndarray) -> dict[str, int]:
    """Convert a reject counter array into a ``{reason: count}`` dict.

    Parameters
    ----------
    counts : numpy.ndarray
        Counter array made by :func:`new_reject_counts`.

    Returns
    -------
    dict[str, int]
        Every reason name mapped to its count, zeros included, so the keys are stable.
    """
    return {name: int(counts[code]) for code, name in enumerate(REJECT_REASONS)}
