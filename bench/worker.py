"""Worker throughput: callbacks applied per second by one `rq worker` process, against RQ's no-op baseline.

Both run in this one process tree against the same redis-server (append-only file on):

* baseline: N no-op jobs (``os.getpid``) drained by ``rq worker --burst -w rq.worker.SimpleWorker``;
* service: N signed-and-accepted NCS callbacks (lifecycle events of many sessions on many channels, stored
  through the receiver's own Inbox, exactly as the web process stores them) drained by the Procfile's worker
  class in burst mode; afterwards every event must be applied exactly once.

Each burst's process start-up and shut-down is measured with an empty queue and subtracted. Target (issue 4):
at least 1,000 applied callbacks/s per worker process. Knobs: BENCH_EVENTS (20000), BENCH_NOOPS (3000).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from rq import Queue

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.redis_server import RedisServer  # noqa: E402
from workers import keys  # noqa: E402
from workers.inbox import Inbox, install_drain_templates  # noqa: E402

EVENTS = int(os.environ.get("BENCH_EVENTS", "20000"))
NOOPS = int(os.environ.get("BENCH_NOOPS", "3000"))
LIFECYCLE = [30, 40, 43, 44, 42, 4, 33, 41, 31, 11]
BIN = Path(sys.executable).parent


def burst(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(
        command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - started


def callbacks(count: int) -> list[tuple[str, str, bytes]]:
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


def main() -> int:
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
    }
    try:
        simple = [
            str(BIN / "rq"),
            "worker",
            "--burst",
            "-w",
            "rq.worker.SimpleWorker",
            "--url",
            server.url,
            "default",
        ]
        empty_simple = burst(simple, env)
        queue = Queue("default", connection=store)
        with store.pipeline() as pipe:
            for _ in range(NOOPS):
                queue.enqueue("os.getpid", result_ttl=0, pipeline=pipe)
            pipe.execute()
        baseline = NOOPS / max(burst(simple, env) - empty_simple, 1e-6)

        ours = [
            str(BIN / "rq"),
            "worker",
            "--burst",
            "-c",
            "workers.rq_config",
            "-w",
            "workers.worker.RecordingWorker",
        ]
        install_drain_templates(store)
        empty_ours = burst(ours, env)
        store.flushall()
        install_drain_templates(store)
        inbox = Inbox(store, 7 * 24 * 3600)
        for notice_id, cname, raw in callbacks(EVENTS):
            inbox.accept(notice_id, cname, raw)
        elapsed = burst(ours, env) - empty_ours
        applied = int(store.hget(keys.STATS, "applied") or 0)
        if applied != EVENTS:
            raise RuntimeError(f"applied {applied} of {EVENTS} callbacks")
        rate = EVENTS / max(elapsed, 1e-6)
    finally:
        server.stop()
    print(f"rq SimpleWorker, no-op jobs:        {baseline:8.0f} jobs/s   ({NOOPS} jobs)")
    print(f"RecordingWorker, callbacks applied: {rate:8.0f} events/s ({EVENTS} events, each applied once)")
    print(
        f"ratio {rate / baseline:.1f}x the no-op job rate; target >= 1000 events/s: {'met' if rate >= 1000 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
