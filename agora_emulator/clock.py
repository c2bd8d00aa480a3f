"""Emulated time: one scheduler thread running callbacks at emulated instants, compressible by ``scale``.

``scale`` is real seconds per emulated second: 1.0 is Agora's own pace, 0.05 runs twenty times faster (a
5-minute resource expiry then lasts 15 real seconds). Wall-clock stamps (``sendts``, ``notifyMs``) follow the
emulated clock, so a compressed run still produces a consistent timeline.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Clock:
    """Emulated seconds since start, and the matching Unix milliseconds."""

    def __init__(self, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError("time scale must be positive")
        self.scale = scale
        self._real_start = time.monotonic()
        self._wall_start_ms = int(time.time() * 1000)

    def now(self) -> float:
        """Emulated seconds since the emulator started."""
        return (time.monotonic() - self._real_start) / self.scale

    def wall_ms(self) -> int:
        """Emulated Unix time in milliseconds."""
        return self._wall_start_ms + int(self.now() * 1000)

    def real(self, emulated_seconds: float) -> float:
        """Real seconds for an emulated duration."""
        return emulated_seconds * self.scale


class Scheduler:
    """Runs ``callback()`` after an emulated delay, on one thread, in time order."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="emulator-scheduler", daemon=True)
        self._thread.start()

    def call_later(self, emulated_delay: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` once ``emulated_delay`` emulated seconds have passed."""
        due = time.monotonic() + max(0.0, self.clock.real(emulated_delay))
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._counter), callback))
            self._cond.notify()

    def clear(self) -> None:
        """Forget every pending callback."""
        with self._cond:
            self._heap.clear()

    def stop(self) -> None:
        """Stop the thread; pending callbacks are dropped."""
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = None if not self._heap else self._heap[0][0] - time.monotonic()
                    self._cond.wait(timeout)
                if self._stopped:
                    return
                _, _, callback = heapq.heappop(self._heap)
            try:
                callback()
            except Exception:  # a broken callback must not stop the emulated world
                log.exception("emulator callback failed")
