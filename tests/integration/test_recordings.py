"""Recording bookkeeping: order-independent manifest and end decisions, uid rotation, the shared rate limit, the sweep."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.agora import ratelimit
from workers.agora.ratelimit import MARGIN_MS, RateLimiter
from workers.core import schema
from workers.core.config import Settings
from workers.ncs.envelope import parse_event
from workers.ncs.files import FileEntry, files_from_event, merge_file
from workers.ncs.reducer import apply_event
from workers.recordings.model import Recording, decode, encode, recorder_uid
from workers.recordings.store import trim_listing

SID = "sid-prop"
NAMES = ["a.m3u8", "a_0.mp4", "b.m3u8", "shot.jpg"]


def envelope(sequence: int, event_type: int, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "noticeId": f"n-{sequence}-{event_type}",
        "productId": 3,
        "eventType": event_type,
        "notifyMs": 1_700_000_000_000 + sequence,
        "payload": {
            "cname": "c",
            "uid": "5",
            "sid": SID,
            "sequence": sequence,
            "sendts": 1_700_000_000_000 + sequence,
            "details": details,
        },
    }


file_item = st.builds(
    lambda name, track, start: {"fileName": name, "trackType": track, "sliceStartTime": start},
    st.sampled_from(NAMES),
    st.sampled_from([None, "audio", "video", "audio_and_video"]),
    st.one_of(st.none(), st.integers(1_600_000_000_000, 1_700_000_000_000)),
)
event_spec = st.one_of(
    st.builds(lambda n: (4, {"fileList": n}), st.sampled_from(NAMES)),
    st.builds(lambda items: (31, {"fileList": items, "status": 0}), st.lists(file_item, max_size=3)),
    st.builds(lambda items: (32, {"fileList": items, "status": 0}), st.lists(file_item, max_size=3)),
    st.builds(lambda n: (45, {"fileName": n}), st.sampled_from(NAMES)),
    st.builds(
        lambda items, code: (71, {"code": code, "fileList": items}),
        st.lists(file_item, max_size=2),
        st.sampled_from([0, 1, 2, 4]),
    ),
    st.builds(lambda status: (11, {"exitStatus": status}), st.sampled_from([0, 1])),
    st.just((72, {"limitType": "WebGL"})),
    st.builds(lambda uid: (12, {"newUid": uid}), st.integers(1, 2**32 - 1)),
    st.builds(lambda p: (33, {"progress": p}), st.integers(0, 10000)),
    st.just((40, {"status": 0})),
)


def summarise(events: list[dict[str, Any]]) -> tuple[Any, Any]:
    """The end decision and the manifest a stream of stored callbacks leads to (the session's reduced state,
    which is what the orchestration reads)."""
    state = None
    for item in events:
        state = apply_event(state, parse_event(msgspec.json.encode(item), 0))
    assert state is not None
    return state.ended, {name: msgspec.to_builtins(entry) for name, entry in state.files.items()}


@settings(max_examples=150, deadline=None)
@given(st.lists(event_spec, min_size=1, max_size=12), st.randoms(use_true_random=False), st.data())
def test_shuffled_and_duplicated_callbacks_reach_the_in_order_result(
    specs: list[Any], rng: Any, data: st.DataObject
) -> None:
    """Any permutation of a session's callbacks, with any of them repeated, gives the same end decision and
    the same file manifest as the in-order stream."""
    in_order = [envelope(i, event_type, details) for i, (event_type, details) in enumerate(specs)]
    repeats = data.draw(st.lists(st.sampled_from(in_order), max_size=6))
    scrambled = in_order + repeats
    rng.shuffle(scrambled)
    assert summarise(scrambled) == summarise(in_order)


def test_uploaded_beats_backed_up_beats_recorded() -> None:
    """A file keeps its best reported status, whatever arrives later."""
    events = [
        {"sid": "s", "eventType": 31, "details": {"fileList": [{"fileName": "x.m3u8"}]}},
        {"sid": "s", "eventType": 4, "details": {"fileList": "x.m3u8"}},
        {
            "sid": "s",
            "eventType": 32,
            "details": {"fileList": [{"fileName": "x.m3u8"}, {"fileName": "y.m3u8"}]},
        },
    ]
    files: dict[str, FileEntry] = {}
    for event in events:
        for entry in files_from_event(event["sid"], event["eventType"], event["details"]):
            merge_file(files, entry)
    assert (files["x.m3u8"].status, files["y.m3u8"].status) == ("uploaded", "backed_up")


def test_recorder_uid_rotation_stays_valid() -> None:
    """Rotated uids are new, and stay integers within 1..2^32-1."""
    for base in ("1", "527841", str(2**32 - 1)):
        uids = [recorder_uid(base, i) for i in range(20)]
        assert uids[0] == base and len(set(uids)) == 20
        assert all(1 <= int(u) <= 2**32 - 1 for u in uids)


def age_window(connection: redis.Redis, app_id: str, ms: float) -> None:
    """Time passing for the rate limit: every slot in the App ID's window is ``ms`` older."""
    key = schema.rate_limit(app_id)
    for member, score in connection.zrange(key, 0, -1, withscores=True):
        connection.zadd(key, {member: score - ms})


class SteppedTime:
    """Stands for the ``time`` module of :mod:`workers.agora.ratelimit`: ``sleep`` moves the App ID's window
    (:func:`age_window`) and a clock of its own instead of waiting."""

    def __init__(self, connection: redis.Redis, app_id: str) -> None:
        self.connection, self.app_id = connection, app_id
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        age_window(self.connection, self.app_id, seconds * 1000)


def test_rate_limit_is_a_sliding_window_shared_by_clients(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two limiters on one App ID share 5 requests per window; the refused get a wait until the oldest
    expires, and ``take`` sleeps that long (on a stepped clock) and then gets the slot."""
    first, second = RateLimiter(redis_client, "app-x", 5), RateLimiter(redis_client, "app-x", 5)
    answers = [limiter.try_take() for limiter in (first, second) * 5]
    assert answers.count(0) == 5
    assert all(0 < wait <= 1001 + MARGIN_MS for wait in answers if wait)
    other_app = RateLimiter(redis_client, "app-y", 5)
    assert other_app.try_take() == 0
    clock = SteppedTime(redis_client, "app-x")
    monkeypatch.setattr(ratelimit, "time", clock)
    assert first.take(max_wait_seconds=2.0)
    assert 0.5 < sum(clock.slept) < 1.8 and len(clock.slept) == 1


def test_stored_recording_round_trips() -> None:
    """The stored form decodes to the same recording."""

    recording = Recording(
        id="rec_1", cname="c", mode="mix", uid="5", request={"storageConfig": {}}, created_ms=1, updated_ms=2
    )
    assert decode(encode(recording)) == recording


def test_finished_recordings_expire_and_leave_the_index(
    redis_client: redis.Redis, settings: Settings
) -> None:
    """A step that finds a recording terminal saves it with the session retention as TTL and no timer; the
    listing trim drops index entries older than that."""
    from workers.agora import AgoraClient, HostPlan
    from workers.recordings.runner import Runner

    runner = Runner(
        redis_client,
        settings,
        AgoraClient(
            app_id="a", customer_id="i", customer_secret="s", hosts=HostPlan.single("http://127.0.0.1:9")
        ),
    )
    recording = Recording(
        id="rec_done",
        cname="c",
        mode="mix",
        uid="5",
        request={},
        created_ms=1,
        updated_ms=1,
        state="completed",
    )
    redis_client.set(schema.recording("rec_done"), encode(recording))
    redis_client.zadd(schema.ACTIVE_RECORDINGS, {"rec_done": 1})
    redis_client.zadd(schema.TIMERS, {"rec_done": 1})
    assert runner.advance("rec_done") == "completed"
    assert 0 < redis_client.ttl(schema.recording("rec_done")) <= settings.session_retention_seconds
    assert redis_client.zscore(schema.ACTIVE_RECORDINGS, "rec_done") is None
    assert redis_client.zscore(schema.TIMERS, "rec_done") is None
    now = int(time.time() * 1000)
    old = (now - settings.session_retention_seconds * 1000 - 2 * 86_400_000) * 1000
    redis_client.zadd(
        schema.RECORDINGS_INDEX, {"rec_ancient": old, "rec_long_running": old + 1, "rec_recent": now * 1000}
    )
    redis_client.set(schema.recording("rec_long_running"), b"{}")  # created long ago, still there
    assert trim_listing(redis_client, settings.session_retention_seconds, now) == 1
    assert redis_client.zrange(schema.RECORDINGS_INDEX, 0, -1) == [b"rec_long_running", b"rec_recent"]


def test_polls_leave_part_of_the_rate_budget_to_starts_and_stops(redis_client: redis.Redis) -> None:
    """Tiers in one window: polls fill it to 70%, changes to 80%, starts and stops to 100%."""
    limiter = RateLimiter(redis_client, "app-share", 10)
    assert [limiter.try_take("poll") for _ in range(7)] == [0] * 7
    assert limiter.try_take("poll") > 0
    assert limiter.try_take("change") == 0
    assert limiter.try_take("change") > 0
    assert [limiter.try_take("start") for _ in range(2)] == [0] * 2
    assert limiter.try_take("start") > 0
    assert limiter.try_take("stop") > 0


def test_a_waiting_stop_makes_starts_yield(redis_client: redis.Redis) -> None:
    """Once a stop found the window full, starts leave it the last tenth until it got through; with no stop
    waiting, starts use the whole window."""
    fast = RateLimiter(redis_client, "app-yield", 10)
    assert [fast.try_take("start") for _ in range(9)] == [0] * 9
    assert fast.try_take("start") == 0  # no stop waits: the tenth goes to a start
    busy = RateLimiter(redis_client, "app-yield-2", 10)
    assert [busy.try_take("start") for _ in range(10)] == [0] * 10
    wait = busy.try_take("stop")
    assert wait > 0  # full: the stop waits, and says so
    age_window(
        redis_client, "app-yield-2", 1000 + MARGIN_MS + 1
    )  # every slot taken so far has left the window
    # while the stop waits, starts fill 9 of the 10 slots: the last is the stop's
    while busy.try_take("start") == 0:
        pass
    assert len(redis_client.zrange(schema.rate_limit("app-yield-2"), 0, -1)) == 9
    assert busy.try_take("stop") == 0  # the room left is the stop's


def test_a_waiting_start_makes_acquires_yield(redis_client: redis.Redis) -> None:
    """A recording under way (its start or confirming query waiting) goes before a new one acquires: while a
    start waits, acquires fill 60 % of the window; otherwise all of it."""
    free = RateLimiter(redis_client, "app-acq", 10)
    assert [free.try_take("acquire") for _ in range(10)] == [0] * 10
    busy = RateLimiter(redis_client, "app-acq-2", 10)
    assert [busy.try_take("acquire") for _ in range(10)] == [0] * 10
    wait = busy.try_take("start")
    assert wait > 0
    age_window(redis_client, "app-acq-2", 1000 + MARGIN_MS + 1)  # every slot taken so far has left the window
    while busy.try_take("acquire") == 0:
        pass
    assert len(redis_client.zrange(schema.rate_limit("app-acq-2"), 0, -1)) == 6
    assert [busy.try_take("start") for _ in range(4)] == [0] * 4


def test_polls_yield_to_a_waiting_acquire_but_keep_their_floor(redis_client: redis.Redis) -> None:
    """While a new recording waits to acquire, routine polls fill only 40 % of the window (what watching a
    large fleet every 270 s needs); otherwise 70 %."""
    limiter = RateLimiter(redis_client, "app-poll", 10)
    assert [limiter.try_take("acquire") for _ in range(10)] == [0] * 10
    wait = limiter.try_take("acquire")
    assert wait > 0
    age_window(redis_client, "app-poll", 1000 + MARGIN_MS + 1)  # every slot taken so far has left the window
    while limiter.try_take("poll") == 0:
        pass
    assert len(redis_client.zrange(schema.rate_limit("app-poll"), 0, -1)) == 4
    assert limiter.try_take("acquire") == 0
