"""Worker throughput: callbacks applied per second by one `rq worker` process, against RQ's no-op baseline.

All passes run in this one process tree against the same redis-server (append-only file on, flushed between
passes):

* no-op: N no-op jobs (``os.getpid``) drained by ``rq worker --burst -w rq.worker.SimpleWorker``;
* callbacks: BENCH_EVENTS signed-and-accepted NCS callbacks, stored through the receiver's own Inbox exactly
  as the web process stores them, drained by the Procfile's worker class in burst mode; afterwards every
  event must be applied exactly once.

With BENCH_RECORDINGS = N (1,000; see ``bench/fleetseed.py``) the callbacks go round-robin over N sessions
(a fleet's sids and channels, steady-state events, sequence increasing per session), twice:

* **without recordings**: those sessions belong to no recording;
* **with recordings**: N live recordings seeded first (``recording``, one confirmed session each, next query
  an hour away), every session one of theirs, so each drain wakes the orchestration step of every recording
  it touched, and the burst ends only once those steps ran too. Afterwards: steps run, and no Agora call
  (its address is an unused port: ``acr:hist:agora`` and the worker log must show none).

The ratio is with / without. BENCH_RECORDINGS=0 runs the old callbacks alone (sessions of 10 lifecycle events
on 500 channels). Each burst's process start-up and shut-down is measured with an empty queue and subtracted.
Target (issue 4): at least 1,000 applied callbacks/s per worker process. Knobs: BENCH_EVENTS (20000),
BENCH_NOOPS (3000). Output: a line per pass, then one JSON summary line; exit 1 when a step called Agora
or none ran.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from rq import Queue

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fleetseed import RECORDINGS, audit, callback, seed, service_env, unseeded  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from workers.core import schema  # noqa: E402
from workers.ncs.inbox import Inbox, install_drain_templates  # noqa: E402

EVENTS = int(os.environ.get("BENCH_EVENTS", "20000"))
NOOPS = int(os.environ.get("BENCH_NOOPS", "3000"))
LIFECYCLE = [30, 40, 43, 44, 42, 4, 33, 41, 31, 11]
BIN = Path(sys.executable).parent
TARGET = 1000


def burst(command: list[str], env: dict[str, str], log: Path | None = None) -> float:
    started = time.perf_counter()
    with open(log or os.devnull, "ab") as out:
        subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=out, stderr=subprocess.STDOUT)
    return time.perf_counter() - started


def lifecycle_callbacks(count: int) -> list[tuple[str, str, bytes]]:
    """(noticeId, cname, raw body) for ``count`` callbacks: sessions of 10 events on 500 channels."""
    items = []
    for n in range(count):
        session, step = divmod(n, len(LIFECYCLE))
        cname, sid = f"room{session % 500}", f"sid{session:08d}"
        body = {
            "noticeId": f"bench-{n}",
            "productId": 3,
            "eventType": LIFECYCLE[step],
            "notifyMs": 1_700_000_000_000 + n,
            "payload": {
                "cname": cname,
                "uid": "527841",
                "sid": sid,
                "sequence": step,
                "sendts": 1_700_000_000_000 + n,
                "serviceType": 0,
                "details": {"msgName": "bench", "status": 0},
            },
        }
        items.append((f"bench-{n}", cname, json.dumps(body, separators=(",", ":")).encode()))
    return items


def fleet_callbacks(count: int, sessions: int) -> list[tuple[str, str, bytes]]:
    """(noticeId, cname, raw body) for ``count`` callbacks round-robin over a fleet's ``sessions`` sessions."""
    fleet = unseeded(sessions)
    items = []
    for n in range(count):
        live = fleet[n % sessions]
        items.append(
            (f"bench-{n}", live.cname, callback(f"bench-{n}", live, n // sessions, 1_700_000_000_000 + n))
        )
    return items


def main() -> int:
    started = time.time()
    workdir = Path(tempfile.mkdtemp(prefix="acr-bench-worker-"))
    server = RedisServer(workdir / "redis", appendonly=True)
    server.start()
    store = redis.Redis.from_url(server.url)
    env = {
        **os.environ,
        "REDIS_URL": server.url,
        "APP_ENV": "production",
        "SECRET_KEY": "bench-secret-key-0123456789abcdef-0123",
        "AGORA_NCS_SECRETS": "bench",
        "LOG_LEVEL": "WARNING",
        **service_env(RECORDINGS),
    }
    simple = [
        str(BIN / "rq"),
        "worker",
        "--burst",
        "-w",
        "rq.worker.SimpleWorker",
        "--url",
        server.url,
        schema.DEFAULT_QUEUE,
    ]
    ours = [
        str(BIN / "rq"),
        "worker",
        "--burst",
        "-c",
        "workers.rq_config",
        "-w",
        "workers.worker.RecordingWorker",
    ]

    def callbacks_pass(label: str, items: list[tuple[str, str, bytes]], seeded: bool) -> dict[str, Any]:
        """Store ``items`` through the Inbox (after seeding the fleet when ``seeded``), then time one burst."""
        store.flushall()
        install_drain_templates(store)
        fleet = seed(store, env, RECORDINGS) if seeded else []
        inbox = Inbox(store, 7 * 24 * 3600)
        for notice_id, cname, raw in items:
            inbox.accept(notice_id, cname, raw)
        log = workdir / f"worker-{label}.log"
        elapsed = burst(ours, env, log) - empty_ours
        applied = int(store.hget(schema.STATS, "applied") or 0)
        if applied != len(items):
            raise RuntimeError(f"{label}: applied {applied} of {len(items)} callbacks")
        result: dict[str, Any] = {
            "pass": label,
            "events": len(items),
            "rate": round(len(items) / max(elapsed, 1e-6)),
        }
        if seeded:
            result.update(audit(store, fleet, log.read_text(errors="replace")))
        return result

    try:
        empty_simple = burst(simple, env)
        queue = Queue(schema.DEFAULT_QUEUE, connection=store)
        with store.pipeline() as pipe:
            for _ in range(NOOPS):
                queue.enqueue("os.getpid", result_ttl=0, pipeline=pipe)
            pipe.execute()
        baseline = NOOPS / max(burst(simple, env) - empty_simple, 1e-6)
        install_drain_templates(store)
        empty_ours = burst(ours, env)
        if RECORDINGS:
            items = fleet_callbacks(EVENTS, RECORDINGS)
            passes = [callbacks_pass("without", items, False), callbacks_pass("with", items, True)]
        else:
            passes = [callbacks_pass("lifecycle", lifecycle_callbacks(EVENTS), False)]
    finally:
        server.stop()
    print(f"rq SimpleWorker, no-op jobs:        {baseline:8.0f} jobs/s   ({NOOPS} jobs)")
    for result in passes:
        where = f"{RECORDINGS} sessions, {result['pass']} recordings" if RECORDINGS else "lifecycle sessions"
        print(
            f"RecordingWorker, callbacks applied: {result['rate']:8.0f} events/s ({EVENTS} events on {where}, "
            f"each applied once)"
        )
    last = passes[-1]
    summary: dict[str, Any] = {
        "events": EVENTS,
        "recordings": RECORDINGS,
        "noop_jobs_per_s": round(baseline),
        "target_events_per_s": TARGET,
        "met": last["rate"] >= TARGET,
        "passes": passes,
    }
    valid = True
    if RECORDINGS:
        without, with_recordings = passes
        summary["ratio"] = round(with_recordings["rate"] / max(without["rate"], 1), 3)
        extra = EVENTS / with_recordings["rate"] - EVENTS / without["rate"]
        print(
            f"with recordings: {with_recordings['steps']} steps on {with_recordings['recordings_stepped']} of "
            f"{RECORDINGS} recordings ({with_recordings['recording']} still recording, ~{extra * 1000 / max(with_recordings['steps'], 1):.1f} ms "
            f"per step); Agora requests {with_recordings['agora_requests']}, log lines "
            f"{with_recordings['agora_log_lines']}; dead letters {with_recordings['dead_letters']}"
        )
        print(f"with / without recordings: {summary['ratio']:.2f}")
        valid = not with_recordings["agora_requests"] and not with_recordings["agora_log_lines"]
        valid = valid and with_recordings["steps"] > 0
        summary["valid"] = valid
    print(
        f"ratio {last['rate'] / baseline:.1f}x the no-op job rate; target >= {TARGET} events/s: "
        f"{'met' if last['rate'] >= TARGET else 'NOT met'}"
    )
    summary["wallSeconds"] = round(time.time() - started, 1)
    print("\n== JSON summary ==")
    print(json.dumps(summary))
    return 0 if valid else 1


if __name__ == "__main__":
    sys.exit(main())
