"""Accepted -> visible: how long after the receiver's 200 a callback shows in its session, at a steady rate.

Runs the Procfile's web and worker lines (tests/stack.py) against a redis-server with AOF on, posts signed
callbacks at BENCH_RATE per second (500) for BENCH_SECONDS (20), one new session per callback, and watches
Redis for each session to appear (pipelined EXISTS every 5 ms). Latency = first seen - the 200 answer.
Design target: p99 under 250 ms at 500 callbacks/s sustained.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.factories import signed_headers  # noqa: E402
from tests.stack import Stack  # noqa: E402
from workers import keys  # noqa: E402

RATE = int(os.environ.get("BENCH_RATE", "500"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "20"))
SECRET = "bench-latency-secret"


def body(n: int) -> bytes:
    return json.dumps(
        {
            "noticeId": f"lat-{n}",
            "productId": 3,
            "eventType": 40,
            "notifyMs": int(time.time() * 1000),
            "payload": {"cname": f"room{n % 200}", "uid": "527841", "sid": f"lat-sid-{n}", "sequence": 0,
                        "sendts": int(time.time() * 1000), "serviceType": 1, "details": {"msgName": "recorder_started", "status": 0}},
        },
        separators=(",", ":"),
    ).encode()  # fmt: skip


def main() -> int:
    stack = Stack(
        Path(tempfile.mkdtemp(prefix="acr-bench-latency-")),
        {"AGORA_NCS_SECRETS": SECRET, "API_TOKENS": "latency-api-token-0123456789", "LOG_LEVEL": "WARNING"},
    )
    stack.start()
    store = redis.Redis.from_url(stack.redis.url)
    accepted: dict[int, float] = {}
    seen: dict[int, float] = {}
    lock = threading.Lock()
    local = threading.local()
    done = threading.Event()

    def post(n: int) -> None:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        raw = body(n)
        response = session.post(
            stack.url + "/webhooks/agora", data=raw, headers=signed_headers(raw, SECRET), timeout=10
        )
        if response.status_code == 200:
            with lock:
                accepted[n] = time.perf_counter()

    def watch() -> None:
        while not done.is_set() or len(seen) < len(accepted):
            with lock:
                pending = [n for n in accepted if n not in seen]
            if pending:
                pipe = store.pipeline(transaction=False)
                for n in pending:
                    pipe.exists(keys.session(f"lat-sid-{n}"))
                now = time.perf_counter()
                for n, present in zip(pending, pipe.execute(), strict=True):
                    if present:
                        seen[n] = now
            if done.is_set() and time.perf_counter() - finished_at > 30:
                break
            time.sleep(0.005)

    finished_at = float("inf")
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=32) as pool:
            start = time.perf_counter()
            for n in range(RATE * SECONDS):
                due = start + n / RATE
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(post, n)
        finished_at = time.perf_counter()
        done.set()
        watcher.join()
    finally:
        stack.stop()
    latencies = sorted((seen[n] - accepted[n]) * 1000 for n in seen if n in accepted)
    lost = len(accepted) - len(seen)
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(
        f"{len(accepted)} callbacks accepted at {RATE}/s for {SECONDS} s; {len(latencies)} seen applied, {lost} not seen"
    )
    print(
        f"accepted -> visible: p50 {statistics.median(latencies):.1f} ms  p99 {p99:.1f} ms  max {latencies[-1]:.1f} ms"
    )
    print(f"target p99 < 250 ms: {'met' if p99 < 250 and not lost else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
