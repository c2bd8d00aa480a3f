"""Bounded work: what reading a long session costs, before and after the reduced state kept its files.

One session with N callbacks (default 5,000, the retention cap; a 71-minute individual recording reports
about that many) is stored through the real inbox and drain. Then, in this one process against one
redis-server:

* baseline (the former path): ``read_session`` — every stored callback fetched and parsed — and the step's
  evidence computed from the parsed events, as every orchestration step did;
* now: ``read_states`` — one field per session — which is what a step reads now.
* ``GET /v1/sessions/{sid}``'s read: formerly ``read_session`` (every callback parsed to count them), now
  ``read_summary`` (the state and ``HLEN``).

Reported as milliseconds per read and as the ratio baseline / now. Knobs: BENCH_CALLBACKS (5000).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.redis_server import RedisServer  # noqa: E402
from workers.core import schema  # noqa: E402
from workers.jobs import drain_batch  # noqa: E402
from workers.ncs.envelope import parse_event  # noqa: E402
from workers.ncs.files import files_from_event  # noqa: E402
from workers.ncs.inbox import Inbox  # noqa: E402
from workers.ncs.reducer import apply_event  # noqa: E402
from workers.ncs.store import read_session, read_states, read_summary  # noqa: E402
from workers.recordings.runner import facts_of  # noqa: E402

CALLBACKS = int(os.environ.get("BENCH_CALLBACKS", "5000"))
SID = "b" * 32


def envelope(index: int) -> dict[str, Any]:
    event_type = (43, 44, 4, 33, 45)[index % 5]
    details: dict[str, Any] = {"msgName": "x", "streamUid": "7", "state": 1}
    if event_type == 4:
        details = {"fileList": f"{SID}_room__uid_s_{index}__uid_e_video.m3u8"}
    elif event_type == 45:
        details = {"fileName": f"{SID}_room_{index}.jpg"}
    return {
        "noticeId": f"bounded-{index}",
        "productId": 3,
        "eventType": event_type,
        "notifyMs": 1_700_000_000_000 + index,
        "payload": {
            "cname": "room",
            "uid": "527841",
            "sid": SID,
            "sequence": index,
            "sendts": 1_700_000_000_000 + index,
            "details": details,
        },
    }


def timed(function: Any, rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        function()
    return (time.perf_counter() - started) / rounds * 1000


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(Path(directory))
        server.start()
        try:
            connection = redis.Redis.from_url(server.url)
            inbox = Inbox(connection, 3600)
            for index in range(CALLBACKS):
                inbox.accept(f"bounded-{index}", "room", msgspec.json.encode(envelope(index)))
            while drain_batch(
                connection, schema.partition_of("room"), max_events=CALLBACKS, retention_seconds=3600
            ):
                pass

            def before() -> None:
                view = read_session(connection, SID)
                assert view is not None
                for event in view.events:
                    files_from_event(SID, event["eventType"], event.get("details") or {})

            def after() -> None:
                facts_of(read_states(connection, [SID])[SID])

            state = read_states(connection, [SID])[SID]
            view = read_session(connection, SID)
            assert view is not None and len(view.events) == CALLBACKS
            rebuilt = None
            for raw_event in view.events:
                rebuilt = apply_event(rebuilt, parse_event(json.dumps(_as_envelope(raw_event)).encode(), 0))
            assert rebuilt is not None and rebuilt.files == state.files  # same files either way
            before_ms = timed(before, 5)
            after_ms = timed(after, 200)
            get_before_ms = timed(lambda: read_session(connection, SID), 5)
            get_after_ms = timed(lambda: read_summary(connection, SID), 200)
            print(
                json.dumps(
                    {
                        "callbacks": CALLBACKS,
                        "files": len(state.files),
                        "step_evidence_before_ms": round(before_ms, 2),
                        "step_evidence_after_ms": round(after_ms, 3),
                        "ratio": round(before_ms / after_ms, 1),
                        "get_session_before_ms": round(get_before_ms, 2),
                        "get_session_after_ms": round(get_after_ms, 3),
                        "get_session_ratio": round(get_before_ms / get_after_ms, 1),
                    }
                )
            )
        finally:
            server.stop()


def _as_envelope(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "noticeId": event["noticeId"],
        "productId": 3,
        "eventType": event["eventType"],
        "notifyMs": event.get("notifyMs") or 0,
        "payload": {k: event.get(k) for k in ("cname", "uid", "sid", "sequence", "sendts", "details")},
    }


if __name__ == "__main__":
    main()
