"""The fleet benchmark (issue 9): a thousand recordings on one App ID, then the concurrency quota at 50.

Runs the service as deployed, as ``bench/soak.py`` does (``tests/support/stack.Stack``: redis-server with its
append-only file, the Procfile's gunicorn ``web`` and one ``rq worker`` per core, two at least) against the
Agora emulator as its own process, both in **real time** (``--time-scale 1``, ``RECORDING_TIME_SCALE=1``) at
Agora's real budget of 10 requests/s per App ID (``--rate-limit``; the emulator answers 429 beyond it and
counts them in ``/_emulator/rate-limit``). Each part gets a fresh stack and emulator; logs stay in the run
directories it prints.

    .venv/bin/python bench/fleet.py                       # both parts, as in ``make bench`` (~15 min)
    .venv/bin/python bench/fleet.py --recordings 30 --hold 20 --quota-recordings 12 --quota 5 --duration 15
    .venv/bin/python bench/fleet.py --recordings 0         # part B only (``--quota-recordings 0``: A only)

Part A, **fleet** (``--recordings N``, 1,000): the concurrency quota raised to fit, as Agora does on request
(``PUT /_emulator/quota``, ``AGORA_MAX_RECORDERS`` / ``AGORA_MAX_WEB_RECORDERS`` = max(2000, N)). N
individual-mode recordings, one channel each, created in parallel within a few seconds; wait until every one is
``recording`` (listing ``?state=recording`` every 2 s); keep them running ``--hold`` seconds (120); stop every
one through the API and wait until all are terminal.

- *all recording*: seconds from the first create sent to the last recording's first ``recording`` (the earliest
  ``confirmedMs`` of its sessions: the service confirms a session by a query that finds it running);
- *floor*: the Agora calls the emulator got in that time ÷ the rate limit: the quickest the budget allowed for
  the calls the service chose to make; *minimum floor*: 3 calls a recording (acquire, start, one query) ÷ the
  rate limit. *ratio* = floor ÷ all recording (target >= 0.8; the minimum floor's ratio is information);
- *create -> recording* p50/p99: per recording, its ``createdMs`` to its first ``confirmedMs``;
- *429s*: requests the emulator refused over its rate limit during the part (target 0);
- *calls per recording-hour* while held: Agora calls in the hold window from the emulator's request log, by
  endpoint, ÷ (N x hold hours). A poll is one query per 120 s (30 a recording-hour), stretched as the fleet
  grows; a hold shorter than one poll interval after the last start reads low (below ~300 recordings the
  first polls all fall after a 120 s hold);
- *stop-all -> all terminal*: the first stop sent to the last ``endedMs``; terminal states counted (all
  ``completed``);
- *orphans*: emulator tasks still alive once every recording is terminal and 20 s have passed (target 0);
- *worker CPU s / recording*: utime + stime (+ reaped children) of every process of every worker's process
  group (``/proc/<pid>/stat``), from before the creates until all terminal, ÷ N; web, Redis and the emulator
  share the same cores and are shown beside it; *Redis bytes / recording*: ``INFO memory`` ``used_memory``
  with all N recording (and after the hold) minus before the creates, ÷ N;
- *failed*: recordings that ended ``failed`` (target 0).

Part B, **quota** (``--quota-recordings M``, 150; ``--quota Q``, 50): emulator and service at the quota Q.
M recordings with ``maxDurationSeconds`` ``--duration`` (30) so they end by themselves, created one after the
other; the last ``--high`` (5) with ``priority: "high"``. Then wait until all are terminal, sampling the
emulator every 0.5 s (``/_emulator/state``: live tasks and its quota usage) and ``/metrics`` every 2 s
(``acr_admission_queue``, ``acr_admission_slots_used``), and at each 2 s poll the ``queuePosition`` of every
``queued`` recording (information: whether the positions rise in the expected order).

- *max live tasks* in the emulator (must be <= Q), *max quota use* (live tasks + acquired resources not started);
- *406s*: acquires the emulator refused with ``vendor_over_load`` (information: ideally 0);
- *queue order*: each recording's first ``starting`` or ``recording`` transition (its timeline, ``GET
  /v1/recordings/{id}/events``) is when it left the queue. Expected order: ``high`` before ``normal``, then
  creation order. A pair is out of order when the one that should go first had been created (and so was
  waiting) over a second before the other left, and left over a second after it (ties within 1 s allowed);
- *never recorded*: recordings that ended without ever reaching ``recording`` (their capacity never came);
- *total time ÷ ideal*: first create to the last ``endedMs``, against ceil(M / Q) x duration.

Features the service or emulator lacks show as ``n/a`` (e.g. the emulator's quota control, ``priority``,
``queuePosition``, the admission metrics). Output: a table per part, then one JSON summary line; exit code 1
when a target fails (ratio < 0.8, 429s, orphans, a failed or never-recorded recording, not all recording or
terminal in time, quota exceeded, queue order violated).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import soak  # noqa: E402
from bench.soak import TERMINAL, Emulator, Soak  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
MIN_CALLS = 3  # acquire, start, one query that finds the task running
TIE_MS = 1000  # queue order: transitions within a second of each other are a tie
LIST_PAGE = 200
POLL = 2.0
ORPHAN_GRACE = 20.0
NA = "n/a"


def log(message: str) -> None:
    print(f"[fleet {time.strftime('%H:%M:%S')}] {message}", flush=True)


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def rnd(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def show(value: Any) -> str:
    return NA if value is None else str(value)


def first_confirmed_ms(doc: dict[str, Any]) -> int | None:
    """When the recording first reached ``recording``: the earliest session the service confirmed running."""
    stamps = [s["confirmedMs"] for s in doc.get("sessions") or [] if s.get("confirmedMs")]
    return min(stamps) if stamps else None


def cpu_seconds(groups: list[int], pids: list[int]) -> float:
    """utime + stime + cutime + cstime of every process in the process groups ``groups`` and of ``pids``."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()  # fields[0] is field 3 (state) of proc(5)
        if int(fields[2]) in groups or int(entry.name) in pids:
            ticks += sum(int(x) for x in fields[11:15])
    return ticks / CLK_TCK


def order_violations(items: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Pairs (a, b) that left the queue out of order. ``items``: index, high, created (ms), left (ms or None).

    ``a`` should leave before ``b`` when it is ``high`` and ``b`` is not, or both share a priority and ``a`` was
    created first. It is a violation when ``b`` left over TIE_MS before ``a`` (or ``a`` never left) although
    ``a`` already existed (was waiting) TIE_MS before ``b`` left."""
    ranked = sorted(items, key=lambda r: (not r["high"], r["index"]))
    found = []
    for position, a in enumerate(ranked):
        a_left = a["left"] if a["left"] is not None else math.inf
        for b in ranked[position + 1 :]:
            if b["left"] is not None and a["created"] < b["left"] - TIE_MS and b["left"] < a_left - TIE_MS:
                found.append((a, b))
    return found


def describe(a: dict[str, Any], b: dict[str, Any]) -> str:
    """One out-of-order pair, for the notes."""

    def name(item: dict[str, Any]) -> str:
        return f"#{item['index']}{' (high)' if item['high'] else ''}"

    if a["left"] is None:
        return f"{name(b)} left while {name(a)}, created {(b['left'] - a['created']) / 1000:.1f} s before, never did"
    return f"{name(b)} left {(a['left'] - b['left']) / 1000:.1f} s before {name(a)}"


def parse_metric(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric family in Prometheus text (empty when absent)."""
    found = {}
    for match in re.finditer(rf"^{name}(\{{[^}}]*\}})? ([0-9.eE+-]+|NaN)$", text, re.M):
        found[match.group(1) or ""] = float(match.group(2))
    return found


@contextmanager
def environ(extra: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``extra`` for the duration (``Stack`` passes os.environ on to every process)."""
    saved = {key: os.environ.get(key) for key in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class RequestLog(threading.Thread):
    """The emulator's log of Agora calls, copied every few seconds: it keeps only its last 10,000 calls.

    Fetched from one id before the last seen, de-duplicated by request id and time: still complete when the
    emulator's ids stop growing (they are its log's length + 1, stuck at 10,001 once the log is full)."""

    def __init__(self, emulator: Emulator, every: float = 3.0) -> None:
        super().__init__(name="request-log", daemon=True)
        self.emulator = emulator
        self.every = every
        self.calls: list[dict[str, Any]] = []
        self.gaps = 0  # fetches that found calls missing (dropped from the emulator's log in between)
        self.errors = 0
        self._seen: set[tuple[Any, Any]] = set()
        self._since = 0
        self._lock = threading.Lock()
        self.stopped = threading.Event()

    def fetch(self) -> None:
        with self._lock:
            status, answer = self.emulator.control("GET", f"requests?since={max(0, self._since - 1)}")
            if status != 200 or not isinstance(answer, dict):
                self.errors += 1
                return
            batch = answer.get("requests", [])
            if self._since and batch and min(int(c.get("id", 0)) for c in batch) > self._since:
                self.gaps += 1
            for call in batch:
                key = (call.get("requestId"), call.get("at"))
                if key in self._seen:
                    continue
                self._seen.add(key)
                reply = call.get("answer")
                self.calls.append(
                    {
                        "real": self.emulator.real_of_wall_ms(call["at"]),
                        "endpoint": call.get("endpoint") or "unrouted",
                        "status": call.get("status"),
                        "code": reply.get("code") if isinstance(reply, dict) else None,
                    }
                )
                self._since = max(self._since, int(call.get("id", 0)))

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            self.fetch()

    def between(self, begin: float, end: float) -> list[dict[str, Any]]:
        """Calls the emulator served in [begin, end) (real Unix seconds)."""
        with self._lock:
            return [c for c in self.calls if begin <= c["real"] < end]


class Part:
    """One stack + emulator (soak's setup in real time), its request log, and the figures of one part."""

    name = ""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.runner: Soak | None = None
        self.calls: RequestLog | None = None
        self.rows: list[tuple[str, str, str]] = []  # figure, value, target
        self.checks: dict[str, bool] = {}
        self.figures: dict[str, Any] = {}
        self.notes: list[str] = []
        self.ids: list[str] = []
        self.docs: dict[str, dict[str, Any]] = {}

    def run(self) -> None:
        raise NotImplementedError

    # -- the stack -----------------------------------------------------------------------------------------

    def start(self, max_recorders: int, max_web_recorders: int) -> None:
        # soak's setup, in real time at the real budget (soak.main sets its RATE_LIMIT the same way)
        soak.SCALE = 1.0
        soak.RATE_LIMIT = self.args.rate_limit
        runner = Soak(argparse.Namespace(read_timeout=self.args.read_timeout, seed=self.args.seed))
        runner.directory = Path(tempfile.mkdtemp(prefix=f"acr-fleet-{self.name}-"))
        self.runner = runner
        self.figures["directory"] = str(runner.directory)
        quota_env = {
            "AGORA_MAX_RECORDERS": str(max_recorders),
            "AGORA_MAX_WEB_RECORDERS": str(max_web_recorders),
        }
        with environ(quota_env):
            runner.setup()
        assert runner.stack is not None and runner.emulator is not None
        while len(runner.stack.workers) < self.args.workers:
            runner.stack.start_worker()
        self.figures["workers"] = len(runner.stack.workers)
        status, answer = runner.emulator.control(
            "PUT", "quota", {"maxRecorders": max_recorders, "maxWebRecorders": max_web_recorders}
        )
        if status == 200:
            self.figures["emulatorQuota"] = answer
        else:
            self.figures["emulatorQuota"] = None
            self.notes.append(f"the emulator has no quota control (PUT /_emulator/quota: {status})")
        self.calls = RequestLog(runner.emulator)
        self.calls.start()
        log(f"{self.name}: {len(runner.stack.workers)} workers, quota {max_recorders}/{max_web_recorders}")

    def stop(self) -> None:
        if self.calls is not None:
            self.calls.stopped.set()
            self.calls.join(timeout=10)
        runner = self.runner
        if runner is None:
            return
        if runner.emulator is not None:  # for a post-mortem: what the emulator saw (its last 10,000 calls)
            for name in ("state", "requests", "quota"):
                status, answer = runner.emulator.control("GET", name)
                if status == 200:
                    (runner.directory / f"emulator-{name}.json").write_text(json.dumps(answer))
        soak.shutdown(runner.stack, runner.emulator)

    @property
    def emulator(self) -> Emulator:
        assert self.runner is not None and self.runner.emulator is not None
        return self.runner.emulator

    def api(self, method: str, path: str, body: Any = None, **headers: str) -> tuple[int | None, Any]:
        assert self.runner is not None
        return self.runner.api(method, path, body, **headers)

    def redis_memory(self) -> int | None:
        assert self.runner is not None and self.runner.stack is not None
        try:
            info = redis.Redis.from_url(self.runner.stack.redis.url, socket_timeout=5).info("memory")
            return int(info["used_memory"])
        except Exception as exc:
            self.notes.append(f"Redis INFO memory: {exc}")
            return None

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the workers, web, Redis and the emulator (process groups; Redis: its pid)."""
        assert self.runner is not None and self.runner.stack is not None
        stack = self.runner.stack
        redis_pid = stack.redis.process.pid if stack.redis.process else -1
        return {
            "workers": cpu_seconds([w.pid for w in stack.workers], []),
            "web": cpu_seconds([stack.web.pid] if stack.web else [], []),
            "redis": cpu_seconds([], [redis_pid]),
            "emulator": cpu_seconds([self.emulator.process.pid], []),
        }

    # -- recordings ----------------------------------------------------------------------------------------

    def create(self, index: int, body: dict[str, Any]) -> dict[str, Any] | None:
        """POST /v1/recordings (Idempotency-Key: its channel), up to 5 tries; the accepted recording or None."""
        for attempt in range(5):
            status, answer = self.api("POST", "/v1/recordings", body, **{"Idempotency-Key": body["cname"]})
            if status == 202 and isinstance(answer, dict):
                return answer
            if status == 400:
                self.notes.append(f"create #{index} refused: {answer}")
                return None
            time.sleep(0.5 * (attempt + 1))
        self.notes.append(f"create #{index} ({body['cname']}) never accepted")
        return None

    def listing(self, state: str | None = None) -> dict[str, dict[str, Any]] | None:
        """Every recording (of ``state``), paged through ``nextCursor``; None when a page could not be read."""
        found: dict[str, dict[str, Any]] = {}
        cursor = None
        for _ in range(10_000):
            query = f"limit={LIST_PAGE}" + (f"&state={state}" if state else "")
            query += f"&cursor={cursor}" if cursor else ""
            status, answer = self.api("GET", f"/v1/recordings?{query}")
            if status != 200 or not isinstance(answer, dict):
                return None
            found.update((doc["id"], doc) for doc in answer.get("recordings", []))
            cursor = answer.get("nextCursor")
            if cursor is None:
                return found
        return None

    def wait(self, what: str, timeout: float, probe: Callable[[], bool], every: float = POLL) -> bool:
        """Until ``probe()``, at most ``timeout`` seconds; False (and a note) when it never came."""
        deadline = time.monotonic() + timeout
        while not probe():
            if time.monotonic() > deadline:
                self.notes.append(f"timed out after {timeout:.0f} s waiting for {what}")
                log(f"{self.name}: timed out after {timeout:.0f} s waiting for {what}")
                return False
            time.sleep(every)
        return True

    def wait_terminal(self, timeout: float) -> bool:
        """Until every recording of the part is terminal (unfiltered listing every POLL seconds)."""
        last = [0.0]

        def done() -> bool:
            found = self.listing()
            if found is None:
                return False
            self.docs.update(found)
            self.polled()
            states = Counter(self.docs[i].get("state") for i in self.ids if i in self.docs)
            if time.monotonic() - last[0] > 15:
                last[0] = time.monotonic()
                log(f"{self.name}: {dict(states)}")
            return all(self.docs.get(i, {}).get("state") in TERMINAL for i in self.ids)

        return self.wait("every recording terminal", timeout, done)

    def polled(self) -> None:
        """Called after each listing of :meth:`wait_terminal` (``self.docs`` fresh)."""

    def orphans(self) -> list[str] | None:
        """Emulator tasks still alive ORPHAN_GRACE seconds after everything was terminal (None: unreadable)."""
        deadline = time.monotonic() + ORPHAN_GRACE
        while True:
            status, state = self.emulator.control("GET", "state")
            if status != 200 or not isinstance(state, dict):
                return None
            alive = [t for t in state.get("tasks", []) if soak._alive(t)]
            if not alive or time.monotonic() > deadline:
                return [f"{t.get('cname')} sid {str(t.get('sid'))[:8]} ({t.get('state')})" for t in alive]
            time.sleep(1)

    def rate_limited(self) -> int | None:
        status, answer = self.emulator.control("GET", "rate-limit")
        return int(answer.get("limited", 0)) if status == 200 and isinstance(answer, dict) else None

    def common_checks(self) -> None:
        """429s, failed recordings, orphans: rows and checks shared by both parts."""
        assert self.calls is not None
        self.calls.fetch()
        limited = self.rate_limited()
        self.figures["emulator429"] = limited
        self.row("429s from the emulator", limited, "0", limited == 0)
        failed = {i: self.docs[i] for i in self.ids if self.docs.get(i, {}).get("state") == "failed"}
        self.figures["failed"] = len(failed)
        for doc in list(failed.values())[:5]:
            self.notes.append(f"failed {doc['cname']}: {doc.get('reason')} {doc.get('lastError')}")
        self.row("recordings failed", len(failed), "0", not failed)
        orphans = self.orphans()
        self.figures["orphans"] = None if orphans is None else len(orphans)
        self.notes.extend(f"orphan: {o}" for o in (orphans or [])[:5])
        self.row("orphans (alive after all terminal)", self.figures["orphans"], "0", orphans == [])
        if self.calls.gaps:
            self.notes.append(f"the emulator's request log lost calls between {self.calls.gaps} fetches")

    def row(self, figure: str, value: Any, target: str = "", ok: bool | None = None) -> None:
        self.rows.append((figure, show(value), target))
        if ok is not None:
            self.checks[figure] = ok

    def table(self) -> None:
        print(f"\n== {self.name} ==  ({self.figures.get('directory')})")
        width = max((len(r[0]) for r in self.rows), default=10)
        for figure, value, target in self.rows:
            verdict = ""
            if figure in self.checks:
                verdict = "ok" if self.checks[figure] else "FAIL"
            print(f"  {figure:<{width}}  {value:>16}  {target:<12} {verdict}")
        for note in self.notes[:30]:
            print(f"  note: {note}")
        if len(self.notes) > 30:
            print(f"  note: ... {len(self.notes) - 30} more in the JSON summary")

    def summary(self) -> dict[str, Any]:
        return {
            "ok": bool(self.checks) and all(self.checks.values()),
            "failedChecks": [name for name, ok in self.checks.items() if not ok],
            **self.figures,
            "notes": self.notes,
        }


class Fleet(Part):
    """Part A: N recordings at once, held, then stopped."""

    name = "fleet"

    def run(self) -> None:
        args = self.args
        n = args.recordings
        quota = max(2000, n)
        self.start(quota, quota)
        memory_before = self.redis_memory()
        cpu_before = self.cpu()
        assert self.calls is not None

        t0 = time.time()
        bodies = [{"cname": f"fleet-{i:04d}", "mode": "individual"} for i in range(n)]
        with ThreadPoolExecutor(max_workers=16) as pool:
            created = list(pool.map(self.create, range(n), bodies))
        self.ids = [doc["id"] for doc in created if doc]
        self.docs = {doc["id"]: doc for doc in created if doc}
        self.figures["created"] = len(self.ids)
        self.figures["createSeconds"] = rnd(time.time() - t0, 2)
        log(f"fleet: {len(self.ids)}/{n} created in {self.figures['createSeconds']} s")

        all_recording = self.wait_recording(args.start_timeout or 120 + 10 * n / args.rate_limit)
        t_all_seen = time.time()
        self.docs.update(self.listing() or {})
        confirmed = {i: first_confirmed_ms(self.docs[i]) for i in self.ids if i in self.docs}
        stamps = [ms for ms in confirmed.values() if ms is not None]
        t_all = max(stamps) / 1000 if all_recording and stamps else None
        actual = None if t_all is None else t_all - t0
        self.calls.fetch()
        startup_calls = self.calls.between(t0, t_all if t_all is not None else t_all_seen)
        floor = len(startup_calls) / args.rate_limit
        min_floor = MIN_CALLS * n / args.rate_limit
        ratio = None if not actual else floor / actual
        latencies = [
            (confirmed[i] - self.docs[i]["createdMs"]) / 1000
            for i in self.ids
            if confirmed.get(i) is not None
        ]
        memory_recording = self.redis_memory()
        self.figures.update(
            allRecording=all_recording,
            allRecordingSeconds=rnd(actual),
            startupCalls=len(startup_calls),
            startupCallsByEndpoint=dict(Counter(c["endpoint"] for c in startup_calls)),
            floorSeconds=rnd(floor),
            minFloorSeconds=rnd(min_floor),
            ratio=rnd(ratio, 3),
            minFloorRatio=rnd(None if not actual else min_floor / actual, 3),
            createToRecordingP50=rnd(percentile(latencies, 0.5), 2),
            createToRecordingP99=rnd(percentile(latencies, 0.99), 2),
            createToRecordingMax=rnd(max(latencies, default=None), 2),
        )
        self.row("recordings created", f"{len(self.ids)}/{n}", f"{n}", len(self.ids) == n)
        self.row("creates took (s)", self.figures["createSeconds"])
        self.row("all recording after (s)", rnd(actual), "", all_recording)
        self.row(
            "floor: calls made / rate (s)",
            f"{rnd(floor)} ({len(startup_calls)})",
            f"{MIN_CALLS * n} calls min",
        )
        self.row("ratio floor / actual", rnd(ratio, 3), ">= 0.8", ratio is not None and ratio >= 0.8)
        self.row("ratio minimum floor / actual", rnd(self.figures["minFloorRatio"], 3))
        self.row("Agora calls / recording, start-up", rnd(len(startup_calls) / max(1, n), 2))
        self.row(
            "create -> recording p50/p99 (s)",
            f"{show(self.figures['createToRecordingP50'])} / {show(self.figures['createToRecordingP99'])}",
        )

        hold_calls: list[dict[str, Any]] = []
        hold_seconds = 0.0
        memory_held = None
        if all_recording:
            hold_begin = time.time()
            log(f"fleet: all {n} recording; holding {args.hold:.0f} s")
            self.hold(hold_begin + args.hold)
            hold_end = time.time()
            hold_seconds = hold_end - hold_begin
            memory_held = self.redis_memory()
            self.calls.fetch()
            hold_calls = self.calls.between(hold_begin, hold_end)
        else:
            self.notes.append("not all recording: no hold, every recording stopped at once")
        hours = n * hold_seconds / 3600
        by_endpoint = Counter(c["endpoint"] for c in hold_calls)
        per_hour = {e: round(k / hours, 1) for e, k in sorted(by_endpoint.items())} if hours else None
        self.figures.update(
            holdSeconds=rnd(hold_seconds),
            holdCalls=dict(by_endpoint),
            callsPerRecordingHour=per_hour,
            callsPerRecordingHourTotal=rnd(len(hold_calls) / hours) if hours else None,
        )
        self.row(
            "Agora calls / recording-hour, held",
            show(self.figures["callsPerRecordingHourTotal"]),
            "30 = 1 query/2 min",
        )
        for endpoint, rate in (per_hour or {}).items():
            self.row(f"  {endpoint}", rate)

        t_stop = time.time()
        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(lambda i: self.api("POST", f"/v1/recordings/{i}/stop")[0], self.ids))
        refused = sum(status != 202 for status in answers)
        if refused:
            self.notes.append(f"{refused} stops not accepted (202)")
        all_terminal = self.wait_terminal(args.stop_timeout or 120 + 5 * n / args.rate_limit)
        ended = [self.docs[i].get("endedMs") or 0 for i in self.ids if i in self.docs]
        stop_seconds = (max(ended) / 1000 - t_stop) if all_terminal and ended else None
        cpu_after = self.cpu()
        states = Counter(self.docs.get(i, {}).get("state") for i in self.ids)
        self.figures.update(
            stopAllToTerminalSeconds=rnd(stop_seconds),
            terminalStates=dict(states),
            cpuSeconds={k: round(cpu_after[k] - cpu_before[k], 2) for k in cpu_after},
        )
        self.row("stop-all -> all terminal (s)", rnd(stop_seconds), "", all_terminal)
        self.row(
            "terminal states",
            " ".join(f"{k}={v}" for k, v in sorted(states.items(), key=str)),
            "all completed",
            states.get("completed", 0) == n,
        )
        self.common_checks()
        worker_cpu = self.figures["cpuSeconds"]["workers"]
        self.figures["workerCpuSecondsPerRecording"] = round(worker_cpu / max(1, n), 4)
        self.row("worker CPU s / recording", self.figures["workerCpuSecondsPerRecording"])
        self.row(
            "CPU s: workers/web/redis/emulator",
            "/".join(f"{self.figures['cpuSeconds'][k]:.0f}" for k in ("workers", "web", "redis", "emulator")),
        )
        per_rec = {
            "allRecording": memory_recording,
            "afterHold": memory_held,
        }
        self.figures["redisBytesPerRecording"] = {
            k: None if v is None or memory_before is None else round((v - memory_before) / max(1, n))
            for k, v in per_rec.items()
        }
        self.row(
            "Redis bytes / recording (all rec./held)",
            " / ".join(show(v) for v in self.figures["redisBytesPerRecording"].values()),
        )
        status, answer = self.emulator.control("GET", "rate-limit")
        self.figures["busiestSecond"] = answer.get("maxInOneSecond") if status == 200 else None
        self.row("busiest second (calls)", self.figures["busiestSecond"], f"<= {args.rate_limit}")

    def wait_recording(self, timeout: float) -> bool:
        """Until every recording is ``recording`` (or can no longer get there: terminal)."""
        rounds = [0]
        ids = set(self.ids)

        def done() -> bool:
            rounds[0] += 1
            found = self.listing("recording")
            count = len(ids & found.keys()) if found is not None else 0
            if found is not None and count == len(ids):
                return True
            if rounds[0] % 10 == 0:  # every ~20 s: progress, and whether a recording ended on the way
                everything = self.listing()
                if everything is not None:
                    self.docs.update(everything)
                    states = Counter(self.docs[i].get("state") for i in ids if i in self.docs)
                    log(f"fleet: {dict(states)}")
                    ended = sum(states.get(s, 0) for s in TERMINAL)
                    if ended and count + ended >= len(ids):
                        self.notes.append(f"{ended} recordings ended before all were recording")
                        return True
            return False

        return self.wait("every recording `recording`", timeout, done) and not any(
            self.docs.get(i, {}).get("state") in TERMINAL for i in self.ids
        )

    def hold(self, until: float) -> None:
        """Keep them running; every 15 s count those still ``recording``."""
        while time.time() < until:
            time.sleep(min(15.0, max(0.0, until - time.time())))
            found = self.listing("recording")
            if found is not None and len(found) < len(self.ids):
                self.notes.append(f"{len(self.ids) - len(found)} not recording during the hold")
                log(f"fleet: {len(found)}/{len(self.ids)} recording during the hold")


class Quota(Part):
    """Part B: M recordings through a concurrency quota of Q, ending by themselves."""

    name = "quota"

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.samples: dict[str, int | None] = {
            "liveTasks": 0,
            "quotaInUse": None,
            "queue": None,
            "slots": None,
        }
        self.sampled = threading.Event()
        self.items: list[dict[str, Any]] = []  # index, id, high, then created and left (ms)
        self.positions: dict[str, int] = {}  # highest queuePosition seen per recording
        self.has_position = False  # the API shows queuePosition at all
        self.position_snapshots = 0  # polls that read the positions of every queued recording
        self.position_disorder = 0  # of those, the ones whose positions disagree with the expected order
        self.priority = True
        self.all_terminal = False
        self.t0 = 0.0

    def sample(self) -> None:
        """Every 0.5 s the emulator's live tasks and quota use; every 2 s the admission metrics."""
        assert self.runner is not None and self.runner.stack is not None
        metrics_url = self.runner.stack.url + "/metrics"
        tick = 0
        while not self.sampled.wait(0.5):
            status, state = self.emulator.control("GET", "state")
            if status == 200 and isinstance(state, dict):
                live = state.get("liveTasks")
                if live is None:
                    live = sum(soak._alive(t) for t in state.get("tasks", []))
                self.samples["liveTasks"] = max(self.samples["liveTasks"] or 0, live)
                use = (state.get("quota") or {}).get("recorders")
                if use is not None:
                    self.samples["quotaInUse"] = max(self.samples["quotaInUse"] or 0, use)
            tick += 1
            if tick % 4:
                continue
            try:  # soak's http() keeps only 300 characters of a text answer
                response = requests.get(metrics_url, timeout=10)
            except requests.RequestException:
                continue
            if response.status_code == 200:
                text = response.text
                queue = parse_metric(text, "acr_admission_queue")
                slots = parse_metric(text, "acr_admission_slots_used")
                if queue:
                    self.samples["queue"] = max(self.samples["queue"] or 0, int(sum(queue.values())))
                if slots:
                    self.samples["slots"] = max(self.samples["slots"] or 0, int(max(slots.values())))

    def run(self) -> None:
        args = self.args
        m, q = args.quota_recordings, args.quota
        self.start(q, max(q, 200))
        sampler = threading.Thread(target=self.sample, name="quota-sampler", daemon=True)
        sampler.start()
        try:
            self.run_queue(m, q)
        finally:
            self.sampled.set()
            sampler.join(timeout=10)
        self.report(m, q)

    def run_queue(self, m: int, q: int) -> None:
        args = self.args
        high_from = m - min(args.high, m)
        priority = True
        t0 = time.time()
        for index in range(m):
            body: dict[str, Any] = {
                "cname": f"quota-{index:04d}",
                "mode": "individual",
                "maxDurationSeconds": args.duration,
            }
            if priority:
                body["priority"] = "high" if index >= high_from else "normal"
            status, answer = self.api("POST", "/v1/recordings", body, **{"Idempotency-Key": body["cname"]})
            if status == 400 and "priority" in json.dumps(answer):
                priority = False
                self.notes.append(f"priority refused by the service ({answer}): created without it")
                body.pop("priority")
                doc = self.create(index, body)
            else:
                doc = answer if status == 202 and isinstance(answer, dict) else self.create(index, body)
            if doc is None:
                continue
            self.ids.append(doc["id"])
            self.docs[doc["id"]] = doc
            self.items.append({"index": index, "id": doc["id"], "high": priority and index >= high_from})
        self.t0 = t0
        self.priority = priority
        log(f"quota: {len(self.ids)}/{m} created in {time.time() - t0:.1f} s")
        ideal = math.ceil(m / max(1, q)) * args.duration
        timeout = args.stop_timeout or 3 * ideal + 8 * m / args.rate_limit + 120
        self.all_terminal = self.wait_terminal(timeout)

    def polled(self) -> None:
        """Read the queuePosition of every ``queued`` recording (the listing does not show it); count the polls
        whose positions do not rise in the expected order (high first, then creation; read one by one while
        the queue moves, so information only)."""
        rank = {item["id"]: (not item["high"], item["index"]) for item in self.items}
        queued = sorted((i for i in self.ids if self.docs[i].get("state") == "queued"), key=rank.__getitem__)
        seen = []
        for recording_id in queued:
            status, doc = self.api("GET", f"/v1/recordings/{recording_id}")
            if status != 200 or not isinstance(doc, dict):
                return
            position = doc.get("queuePosition")
            if position is None:
                return
            self.has_position = True
            self.positions[recording_id] = max(position, self.positions.get(recording_id, 0))
            seen.append(position)
        if seen:
            self.position_snapshots += 1
            self.position_disorder += seen != sorted(seen)

    def left_queue(self, recording_id: str) -> tuple[int | None, bool]:
        """(ms of the first transition to starting or recording, whether it was ever queued) from its timeline."""
        status, answer = self.api("GET", f"/v1/recordings/{recording_id}/events")
        if status != 200 or not isinstance(answer, dict):
            return None, False
        moves = [e for e in answer.get("events", []) if e.get("kind") == "transition"]
        left = [e["ts"] for e in moves if e.get("to") in ("starting", "recording") and e.get("ts")]
        return (min(left) if left else None), any(e.get("to") == "queued" for e in moves)

    def report(self, m: int, q: int) -> None:
        args = self.args
        queued = 0
        for item in self.items:
            item["left"], was_queued = self.left_queue(item["id"])
            item["created"] = self.docs[item["id"]]["createdMs"]
            queued += was_queued
        never = [i for i in self.items if first_confirmed_ms(self.docs.get(i["id"], {})) is None]
        violations = order_violations(self.items)
        high_late = [(a, b) for a, b in violations if a["high"] and not b["high"]]
        ended = [self.docs[i].get("endedMs") or 0 for i in self.ids]
        total = (max(ended) / 1000 - self.t0) if self.all_terminal and ended else None
        ideal = math.ceil(m / max(1, q)) * args.duration
        status, quota = self.emulator.control("GET", "quota")
        refused = quota.get("refused") if status == 200 and isinstance(quota, dict) else None
        assert self.calls is not None
        self.calls.fetch()
        refused_in_log = sum(c["endpoint"] == "acquire" and c["code"] == 406 for c in self.calls.calls)
        self.figures.update(
            created=len(self.ids),
            quota=q,
            maxLiveTasks=self.samples["liveTasks"],
            maxQuotaInUse=self.samples["quotaInUse"],
            maxAdmissionQueue=self.samples["queue"],
            maxAdmissionSlotsUsed=self.samples["slots"],
            emulator406=refused,
            emulator406InLog=refused_in_log,
            everQueued=queued,
            maxQueuePosition=max(self.positions.values(), default=None) if self.has_position else None,
            queuePositionSnapshots=self.position_snapshots,
            queuePositionSnapshotsOutOfOrder=self.position_disorder if self.has_position else None,
            orderViolations=len(violations),
            highLate=len(high_late) if self.priority else None,
            neverRecorded=len(never),
            totalSeconds=rnd(total),
            idealSeconds=ideal,
            totalOverIdeal=rnd(None if total is None else total / ideal, 2),
            terminalStates=dict(Counter(self.docs.get(i, {}).get("state") for i in self.ids)),
        )
        self.notes.extend(f"out of order: {describe(a, b)}" for a, b in violations[:8])
        self.row("recordings created", f"{len(self.ids)}/{m}", f"{m}", len(self.ids) == m)
        self.row(
            "max live tasks in the emulator",
            self.samples["liveTasks"],
            f"<= {q}",
            (self.samples["liveTasks"] or 0) <= q,
        )
        self.row("max quota use (tasks + resources)", self.samples["quotaInUse"], f"<= {q}")
        self.row("406 vendor_over_load (emulator)", refused, "0 ideally")
        self.row("ever queued / max queuePosition", f"{queued} / {show(self.figures['maxQueuePosition'])}")
        self.row(
            "queuePosition polls out of order",
            f"{show(self.figures['queuePositionSnapshotsOutOfOrder'])} of {self.position_snapshots}",
        )
        self.row(
            "max admission queue / slots (metrics)",
            f"{show(self.samples['queue'])} / {show(self.samples['slots'])}",
        )
        left = sum(i["left"] is not None for i in self.items)
        self.row("queue order: pairs out of order", len(violations), "0", left > 0 and not violations)
        self.row("  high after an earlier normal", show(self.figures["highLate"]), "0")
        self.row("never recorded", len(never), "0", not never)
        self.row("total / ideal (s)", f"{show(rnd(total))} / {ideal}", "", self.all_terminal)
        self.row("total ÷ ideal", self.figures["totalOverIdeal"])
        self.common_checks()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/fleet.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=1000, help="part A: recordings at once (0: skip)")
    parser.add_argument("--hold", type=float, default=120.0, help="part A: seconds all are held recording")
    parser.add_argument("--quota-recordings", type=int, default=150, help="part B: recordings (0: skip)")
    parser.add_argument("--quota", type=int, default=50, help="part B: concurrency quota")
    parser.add_argument("--duration", type=int, default=30, help="part B: maxDurationSeconds of each")
    parser.add_argument("--high", type=int, default=5, help="part B: the last this many are priority high")
    parser.add_argument("--rate-limit", type=int, default=10, help="Agora requests/s (emulator and service)")
    parser.add_argument(
        "--workers", type=int, default=max(2, os.cpu_count() or 1), help="worker processes (default: cores)"
    )
    parser.add_argument("--read-timeout", type=float, default=10.0, help="AGORA_READ_TIMEOUT_SECONDS")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start-timeout", type=float, default=0.0, help="seconds (0: from N and the rate)")
    parser.add_argument("--stop-timeout", type=float, default=0.0, help="seconds (0: from N and the rate)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, soak._interrupt)
    started = time.time()
    parts: list[Part] = []
    if args.recordings > 0:
        parts.append(Fleet(args))
    if args.quota_recordings > 0:
        parts.append(Quota(args))
    results: dict[str, Any] = {}
    interrupted = False
    for part in parts:
        try:
            part.run()
        except KeyboardInterrupt:
            part.notes.append("interrupted")
            interrupted = True
        except Exception as exc:
            traceback.print_exc()
            part.notes.append(f"not run to the end: {type(exc).__name__}: {str(exc)[:300]}")
            part.checks["ran to the end"] = False
        finally:
            part.stop()
        part.table()
        results[part.name] = part.summary()
        if interrupted:
            break
    ok = bool(parts) and not interrupted and all(r["ok"] for r in results.values())
    summary = {"ok": ok, "wallSeconds": round(time.time() - started, 1), "args": vars(args), **results}
    print("\n== JSON summary ==")
    print(json.dumps(summary, default=str))
    return 130 if interrupted else (0 if ok else 1)


if __name__ == "__main__":
    sys.exit(main())
