"""Running async tests: one fresh uvloop per test with a time limit, and deadline polling."""

from __future__ import annotations

import asyncio
import functools
import time

import uvloop

#: seconds an async test may take before it fails
TEST_TIMEOUT_S = 30


def run_async(test):
    """Run the coroutine test ``test`` on a fresh uvloop, failing it after TEST_TIMEOUT_S."""

    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        uvloop.run(asyncio.wait_for(test(*args, **kwargs), TEST_TIMEOUT_S))

    return wrapper


async def until(predicate, timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` is true; raise AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.005)
