"""Waiting on a condition, never on a guess of how long something takes: poll until it holds, with a deadline
generous enough for a loaded machine, and fail with what was awaited and what was seen last."""

from __future__ import annotations

import linecache
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: The default deadline: far above what any condition of the suite needs on an idle machine, so that a run on
#: a loaded one (a parallel worker, a benchmark) waits longer instead of failing.
DEADLINE = 30.0


def wait_until(
    predicate: Callable[[], T],
    timeout: float = DEADLINE,
    interval: float = 0.02,
    *,
    what: str | None = None,
    seen: Callable[[], Any] | None = None,
) -> T:
    """Poll until ``predicate()`` is truthy and return that value; past ``timeout`` seconds fail the test,
    naming ``what`` was awaited (the predicate's name or source line by default) and, given ``seen``, what it
    shows then (a state, a log tail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            described = what or _describe(predicate)
            message = f"waited {timeout} s for {described}; last value {value!r}"
            if seen is not None:
                message += f"\n--- seen ---\n{seen()}"
            raise AssertionError(message)
        time.sleep(interval)


def _describe(predicate: Callable[..., Any]) -> str:
    name = getattr(predicate, "__name__", repr(predicate))
    if name != "<lambda>":
        return name
    code = getattr(predicate, "__code__", None)
    if code is None:
        return name
    line = linecache.getline(code.co_filename, code.co_firstlineno).strip()
    return f"{line} ({code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno})" if line else name
