"""The shared rate limit under a burst: several processes, hundreds of calls at once, no 429 from Agora."""

from __future__ import annotations

import multiprocessing
from typing import Any

import redis

from tests.support.emulated import control, make_client, start_emulator
from workers.agora import AgoraApiError
from workers.agora.ratelimit import RateLimiter

PROCESSES = 8
CALLS_EACH = 40
QPS = 50


def _burst(redis_url: str, base: str, calls: int, ready: Any, go: Any) -> None:
    connection = redis.Redis.from_url(redis_url)
    limiter = RateLimiter(connection, "burst-app", QPS)
    client = make_client(base)
    client.before_send = limiter.fresh  # as the runner wires it: the slot is stamped when the request leaves
    ready.release()
    go.wait()
    for index in range(calls):
        while not limiter.take(max_wait_seconds=5.0):
            pass
        try:
            client.query(f"res{index}", f"sid{index}", "mix")
        except AgoraApiError:
            pass  # 404 or 1001: what matters is whether Agora counted it over the limit


def test_hundreds_of_calls_from_several_processes_get_no_429(
    redis_client: redis.Redis, redis_server: Any
) -> None:
    """320 calls from 8 processes released at once through one limit of 50/s: Agora (the emulator, counting
    arrivals per real second) refuses none. (Checked to fail without a margin: 11 refused; with the 50 ms
    margin but without stamping the slot again at send, on a host loaded by another benchmark: 6 refused.)"""
    emulator, base = start_emulator(rate_limit=QPS)  # the same test against 10/s would take 40 s
    try:
        context = multiprocessing.get_context("spawn")
        ready, go = context.Semaphore(0), context.Event()
        workers = [
            context.Process(target=_burst, args=(redis_server.url, base, CALLS_EACH, ready, go))
            for _ in range(PROCESSES)
        ]
        for worker in workers:
            worker.start()
        for _ in workers:
            assert ready.acquire(timeout=30)
        go.set()
        for worker in workers:
            worker.join(60)
            assert worker.exitcode == 0
        counts = control(base, "GET", "state")["rateLimit"]
        assert control(base, "GET", "state")["requests"] == PROCESSES * CALLS_EACH
        assert counts["limited"] == 0, counts
        assert counts["maxInOneSecond"] <= QPS
    finally:
        emulator.close()
