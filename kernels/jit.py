"""How kernels are compiled and cached, and the int64 columns of the float64 book.

``cache=True`` keeps compiled code on disk between runs. ``inline="always"`` inlines kernels
into the fused pipeline at Numba's IR level, removing call overhead between them.
``error_model="numpy"`` drops the zero-division branch Python semantics would put in front of
every float division; no kernel divides by a value that can be zero.

Integer columns of the book (ns timestamps, counters) hold int64 bit patterns. Kernels read
and write them with ``get_int`` / ``set_int`` / ``add_int``, which reinterpret the 8 bytes in
a register. An ``ndarray.view`` would do the same but costs a reference-count increment and
decrement per call in the hot loop (measured: ~40% of ``run_ticks``).
"""

import hashlib
import os
import shutil
from pathlib import Path

import numba
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


def _cache_dir() -> Path:
    # Numba invalidates a cached kernel only when its own file changes, but kernels bake in
    # constants and inlined code from other files (layout.py above all): a stale cache would
    # silently read the wrong columns. So the cache lives in a folder named after a hash of
    # every kernel source, and older folders are removed.
    here = Path(__file__).resolve().parent
    digest = hashlib.sha1()
    for source in sorted(here.glob("*.py")):
        digest.update(source.read_bytes())
    root = here / "__pycache__" / "numba"
    for stale in root.glob("*"):
        if stale.name != digest.hexdigest()[:16]:
            shutil.rmtree(stale, ignore_errors=True)
    return root / digest.hexdigest()[:16]


if not os.environ.get("NUMBA_CACHE_DIR"):
    numba.config.CACHE_DIR = str(_cache_dir())

#: decorator for the kernels composed by the pipeline
kernel = njit(cache=True, inline="always", error_model="numpy")
#: decorator for entry points and rare paths kept out of line
entry = njit(cache=True, error_model="numpy")


@intrinsic
def int_bits(typingctx, value):
    """Return the int64 whose bits are the float64 ``value``."""
    if not isinstance(value, types.Float):
        return None

    def codegen(context, builder, signature, args):
        as_double = context.cast(builder, args[0], signature.args[0], types.float64)
        return builder.bitcast(as_double, ir.IntType(64))

    return types.int64(value), codegen


@intrinsic
def float_bits(typingctx, value):
    """Return the float64 whose bits are the int64 ``value``."""
    if not isinstance(value, types.Integer | types.Boolean):
        return None

    def codegen(context, builder, signature, args):
        as_int = context.cast(builder, args[0], signature.args[0], types.int64)
        return builder.bitcast(as_int, ir.DoubleType())

    return types.float64(value), codegen


@kernel
def get_int(book, row, column):
    """Return the int64 stored at ``book[row, column]``."""
    return int_bits(book[row, column])


@kernel
def set_int(book, row, column, value):
    """Store int ``value`` at ``book[row, column]``."""
    book[row, column] = float_bits(value)


@kernel
def add_int(book, row, column, delta):
    """Add int ``delta`` to the int64 at ``book[row, column]``."""
    book[row, column] = float_bits(int_bits(book[row, column]) + delta)
