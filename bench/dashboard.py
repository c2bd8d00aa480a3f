"""Dashboard pages' server time with 10,000 recordings stored (issue 11: under 200 ms each).

Starts its own redis-server, stores BENCH_RECORDINGS (10,000) recordings through the store (a third of them
rewritten as completed, a tenth as failed, the rest left pending; 20 with sessions, files, Agora calls, state
changes and applied callbacks, and 200 dead letters), then signs in with Flask's test client and times
BENCH_REQUESTS (50) requests of each page in-process (the server's time: routing, Redis reads, rendering; no
network). Prints median and p95 per page.

    .venv/bin/python bench/dashboard.py
"""

from __future__ import annotations

import dataclasses
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.dashboard import login, seed_recording  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.service import API_TOKEN, NCS_SECRET, with_default_storage  # noqa: E402
from webhook_service import create_app  # noqa: E402
from workers import deadletters  # noqa: E402
from workers.core import schema  # noqa: E402
from workers.core.config import Settings  # noqa: E402
from workers.recordings.machine import State  # noqa: E402
from workers.recordings.model import decode, encode  # noqa: E402
from workers.recordings.store import RecordingSpec, create_recording  # noqa: E402

RECORDINGS = int(os.environ.get("BENCH_RECORDINGS", "10000"))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "50"))


def store(connection: redis.Redis, settings: Settings) -> list[str]:
    rng = random.Random(11)
    ids = []
    for n in range(RECORDINGS - 20):
        spec = msgspec.convert(
            {"cname": f"room-{n % 500}", "mode": rng.choice(["mix", "individual"])}, RecordingSpec
        )
        ids.append(create_recording(connection, settings, spec)[0].id)
    raws = connection.mget([schema.recording(i) for i in ids])
    pipe = connection.pipeline(transaction=False)
    for raw in raws:
        assert isinstance(raw, bytes)
        recording = decode(raw)
        roll = rng.random()
        if roll < 0.33:
            recording.state = State.COMPLETED
        elif roll < 0.43:
            recording.state = State.FAILED
        else:
            continue
        pipe.set(schema.recording(recording.id), encode(recording))
        pipe.zrem(schema.ACTIVE_RECORDINGS, recording.id)
    pipe.execute()
    return ids


def timed(client: object, path: str) -> tuple[float, float]:
    samples = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        answer = client.get(path)  # type: ignore[attr-defined]
        samples.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, (path, answer.status_code)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)]


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(Path(directory))
        server.start()
        try:
            connection = redis.Redis.from_url(server.url)
            settings = with_default_storage(
                Settings(
                    redis_url=server.url,
                    environment="test",
                    ncs_secrets=(NCS_SECRET,),
                    api_tokens=(API_TOKEN,),
                )
            )
            settings = dataclasses.replace(settings, log_level="WARNING")
            app = create_app(settings)
            client = app.test_client()
            started = time.perf_counter()
            store(connection, settings)
            rich = [seed_recording(connection, settings, cname=f"rich-{n}", client=client) for n in range(20)]
            for n in range(200):
                deadletters.add(connection, "drain_job", f"bench failure {n}", partition=n % 16)
            print(
                f"stored {connection.zcard(schema.RECORDINGS_INDEX)} recordings "
                f"in {time.perf_counter() - started:.1f} s; timing {REQUESTS} requests per page"
            )
            assert login(client).status_code == 303
            pages = [
                ("recordings (newest 50)", "/dashboard/"),
                ("recordings, state=failed", "/dashboard/?state=failed"),
                ("recordings, cname=room-7", "/dashboard/?cname=room-7"),
                ("recordings, page 2", None),
                ("recording detail (2 sessions, 16 events)", f"/dashboard/recordings/{rich[0]}"),
                ("dead letters (200)", "/dashboard/dead-letters"),
                ("notifications", "/dashboard/notifications"),
                ("system", "/dashboard/system"),
            ]
            first = client.get("/dashboard/").data.decode()
            cursor = first.split("cursor=", 1)[1].split('"', 1)[0]
            print(f"{'page':45} {'median ms':>10} {'p95 ms':>8}")
            for label, path in pages:
                median, p95 = timed(client, path or f"/dashboard/?cursor={cursor}")
                print(f"{label:45} {median:10.1f} {p95:8.1f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
