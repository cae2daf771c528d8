"""Recording kernel: append a batch of ticks, as the pipeline gets it, to a record buffer.

The flight recorder (``engine.record``) owns the buffer and writes it to files; ``run_ticks``
calls :func:`record_batch` first while recording is on, so a batch costs the recorder no call
of its own. The caller passes the recording control array on a batch's first call only.
Records are 4 int64 words of header (kind, count, a, b) and a payload; see ``engine.record``.
"""

import numpy as np

from kernels.jit import get_int, int_bits, kernel
from kernels.layout import A_LIVE, A_MAX_TS, A_N_INST, A_PAUSED, I_PENDING, I_STOP_RESTING

#: record kinds: a batch of ticks, the router's per-instrument flags (see ``engine.record``)
K_TICKS = 1
K_FLAGS = 5
#: int64 words of a record header and of a tick row
HEAD_WORDS = 4
ROW_WORDS = 4

# -- the control array (int64) shared by the recorder and the kernel --------------------------
RC_POS = 0  #: words of the buffer in use
RC_ON = 1  #: nonzero while a recorder has a file open: ``run_ticks`` records what it is given
RC_NEED = 2  #: words the batch needed when it did not fit (the caller makes room and calls again)
RC_BATCHES = 3  #: batches recorded
RC_FLAGS = 4  #: from here: the flags last recorded, I_PENDING then I_STOP_RESTING, float bits


@kernel
def _flags_changed(book: np.ndarray, ctl: np.ndarray, n_inst: int) -> bool:
    for i in range(n_inst):
        if ctl[RC_FLAGS + i] != int_bits(book[i, I_PENDING]):
            return True
        if ctl[RC_FLAGS + n_inst + i] != int_bits(book[i, I_STOP_RESTING]):
            return True
    return False


@kernel
def record_batch(
    book: np.ndarray,
    rec: np.ndarray,
    ctl: np.ndarray,
    idx: np.ndarray,
    price: np.ndarray,
    size: np.ndarray,
    ts: np.ndarray,
    start: int,
    stop: int,
) -> bool:
    """Append ticks ``start .. stop-1`` as one ``K_TICKS`` record; return False if no room.

    With a live broker a ``K_FLAGS`` record goes first when the router changed an instrument's
    pending or stop-resting flag since the last one. The header's ``a`` is the batch's
    ``A_MAX_TS``, ``b`` its ``A_PAUSED``. Without room nothing is written and ``ctl[RC_NEED]``
    says how many words the batch needs.
    """
    acct = book.shape[0] - 1
    n_inst = get_int(book, acct, A_N_INST)
    flags = get_int(book, acct, A_LIVE) != 0 and _flags_changed(book, ctl, n_inst)
    need = HEAD_WORDS + (stop - start) * ROW_WORDS
    if flags:
        need += HEAD_WORDS + 2 * n_inst
    pos = ctl[RC_POS]
    if pos + need > rec.shape[0]:
        ctl[RC_NEED] = need
        return False
    if flags:
        rec[pos] = K_FLAGS
        rec[pos + 1] = 2 * n_inst
        rec[pos + 2] = ctl[RC_BATCHES]
        rec[pos + 3] = 0
        pos += HEAD_WORDS
        for i in range(n_inst):
            ctl[RC_FLAGS + i] = rec[pos + i] = int_bits(book[i, I_PENDING])
            ctl[RC_FLAGS + n_inst + i] = rec[pos + n_inst + i] = int_bits(book[i, I_STOP_RESTING])
        pos += 2 * n_inst
    rec[pos] = K_TICKS
    rec[pos + 1] = stop - start
    rec[pos + 2] = get_int(book, acct, A_MAX_TS)
    rec[pos + 3] = get_int(book, acct, A_PAUSED)
    pos += HEAD_WORDS
    for k in range(start, stop):
        rec[pos] = idx[k]
        rec[pos + 1] = int_bits(price[k])
        rec[pos + 2] = int_bits(size[k])
        rec[pos + 3] = ts[k]
        pos += ROW_WORDS
    ctl[RC_POS] = pos
    ctl[RC_BATCHES] += 1
    return True
