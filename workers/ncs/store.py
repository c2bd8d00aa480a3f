"""Sessions in Redis: each sid's state, its timeline of raw events, and the reads the API makes.

Per sid (keys in :mod:`workers.core.schema`):

* ``session``: hash with ``state`` (the encoded :class:`~workers.ncs.reducer.SessionState`), ``duplicates``
  (redundant copies dropped) and ``updatedMs``;
* ``events``: hash noticeId -> ``<receivedMs>\\n<raw body>``, the body exactly as Agora sent it;
* ``order``: sorted set whose lexical order is the timeline order (sequence, sendts, noticeId);
* ``semantic``: hash ``uid:sequence:eventType`` -> noticeId, to recognise a redundant copy under a new noticeId.

All four expire ``SESSION_RETENTION_SECONDS`` after the last event; the timeline keeps at most
``SESSION_MAX_EVENTS`` events (the earliest go first).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import redis
from redis.client import Pipeline

from workers.core import schema
from workers.core.errors import EventError
from workers.ncs.envelope import NcsEvent, parse_event
from workers.ncs.reducer import (
    STATE_VERSION,
    SessionState,
    apply_event,
    decode_state,
    encode_state,
    notice_id_of,
    semantic_key,
    timeline_member,
)


@dataclass
class SessionUpdate:
    """What one batch does to one session: the new state, the events it adds and the copies it drops."""

    sid: str
    state: SessionState | None
    stored_count: int
    added: list[NcsEvent] = field(default_factory=list)
    duplicates: int = 0
    trimmed: list[str] = field(default_factory=list)  # timeline members to drop (over the cap)


def plan_updates(connection: redis.Redis, events: Iterable[NcsEvent], max_events: int) -> list[SessionUpdate]:
    """Read what the sessions hold now and decide, purely, what the batch changes (no writes)."""
    by_sid: dict[str, list[NcsEvent]] = {}
    for event in events:
        assert event.sid is not None
        by_sid.setdefault(event.sid, []).append(event)
    sids = list(by_sid)
    pipe = connection.pipeline(transaction=False)
    for sid in sids:
        batch = by_sid[sid]
        pipe.hget(schema.session(sid), "state")
        pipe.hlen(schema.session_events(sid))
        pipe.hmget(schema.session_events(sid), [e.notice_id for e in batch])
        pipe.hmget(schema.session_semantic(sid), [semantic_key(e) or "" for e in batch])
    replies = pipe.execute()

    updates = []
    for index, sid in enumerate(sids):
        raw_state, stored_count, stored_ids, stored_semantic = replies[4 * index : 4 * index + 4]
        batch = by_sid[sid]
        known_ids = {e.notice_id for e, hit in zip(batch, stored_ids, strict=True) if hit is not None}
        known_semantic = {
            semantic_key(e) for e, hit in zip(batch, stored_semantic, strict=True) if hit is not None
        }
        update = SessionUpdate(
            sid=sid, state=None if raw_state is None else decode_state(raw_state), stored_count=stored_count
        )
        for event in sorted(batch, key=lambda e: e.order_key):
            semantic = semantic_key(event)
            if event.notice_id in known_ids or (semantic is not None and semantic in known_semantic):
                update.duplicates += 1
                continue
            known_ids.add(event.notice_id)
            if semantic is not None:
                known_semantic.add(semantic)
            update.state = apply_event(update.state, event)
            update.added.append(event)
        overflow = update.stored_count + len(update.added) - max_events
        if overflow > 0:
            update.trimmed = _earliest_members(connection, sid, update.added, overflow)
        updates.append(update)
    return updates


def _earliest_members(connection: redis.Redis, sid: str, added: Sequence[NcsEvent], count: int) -> list[str]:
    """The ``count`` earliest timeline members once ``added`` joins the stored timeline."""
    members = cast(list[bytes], connection.zrange(schema.session_order(sid), 0, count - 1))
    stored = [m.decode() for m in members]
    return sorted(stored + [timeline_member(e) for e in added])[:count]


def write_updates(pipe: Pipeline, updates: Iterable[SessionUpdate], retention_seconds: int) -> int:
    """Queue the writes of ``updates`` on a MULTI pipeline; return how many events they add."""
    now_ms = int(time.time() * 1000)
    added_total = 0
    for update in updates:
        sid = update.sid
        session_key = schema.session(sid)
        if update.duplicates:
            pipe.hincrby(session_key, "duplicates", update.duplicates)
        if not update.added:
            continue
        assert update.state is not None
        added_total += len(update.added)
        pipe.hset(session_key, mapping={"state": encode_state(update.state), "updatedMs": now_ms})
        pipe.hset(
            schema.session_events(sid),
            mapping={e.notice_id: b"%d\n%s" % (e.received_ms, e.raw) for e in update.added},
        )
        pipe.zadd(schema.session_order(sid), {timeline_member(e): 0 for e in update.added})
        semantic = {key: e.notice_id for e in update.added if (key := semantic_key(e)) is not None}
        if semantic:
            pipe.hset(schema.session_semantic(sid), mapping=cast(Mapping[Any, Any], semantic))
        if update.trimmed:
            pipe.zrem(schema.session_order(sid), *update.trimmed)
            pipe.hdel(schema.session_events(sid), *[notice_id_of(m) for m in update.trimmed])
        for key in (
            session_key,
            schema.session_events(sid),
            schema.session_order(sid),
            schema.session_semantic(sid),
        ):
            pipe.expire(key, retention_seconds)
        pipe.zadd(schema.SESSIONS_INDEX, {sid: now_ms})
    return added_total


@dataclass(frozen=True)
class SessionView:
    """A session as the API shows it."""

    state: SessionState
    duplicates: int
    events: list[dict[str, Any]]


def read_session(connection: redis.Redis, sid: str) -> SessionView | None:
    """The session and its timeline in order, or None if the sid is unknown (or expired)."""
    pipe = connection.pipeline(transaction=False)
    pipe.hmget(schema.session(sid), ["state", "duplicates"])
    pipe.zrange(schema.session_order(sid), 0, -1)
    (raw_state, duplicates), members = pipe.execute()
    if raw_state is None:
        return None
    notice_ids = [notice_id_of(m.decode()) for m in members]
    stored = connection.hmget(schema.session_events(sid), notice_ids) if notice_ids else []
    events = []
    for value in stored:
        if value is None:  # trimmed between the two reads
            continue
        received, _, raw = cast(bytes, value).partition(b"\n")
        try:
            events.append(parse_event(raw, int(received)).to_dict())
        except EventError:  # stored by an older release that accepted it (e.g. nested too deeply)
            continue
    return SessionView(state=decode_state(raw_state), duplicates=int(duplicates or 0), events=events)


@dataclass(frozen=True)
class SessionSummary:
    """A session without its timeline: its reduced state and counts, in one round trip."""

    state: SessionState
    duplicates: int
    events: int


def read_summary(connection: redis.Redis, sid: str) -> SessionSummary | None:
    """The session's state and how many callbacks it holds, without reading them (O(1))."""
    pipe = connection.pipeline(transaction=False)
    pipe.hmget(schema.session(sid), ["state", "duplicates"])
    pipe.hlen(schema.session_events(sid))
    (raw_state, duplicates), count = pipe.execute()
    if raw_state is None:
        return None
    return SessionSummary(state=decode_state(raw_state), duplicates=int(duplicates or 0), events=int(count))


def read_states(connection: redis.Redis, sids: Sequence[str]) -> dict[str, SessionState]:
    """The reduced state of each known sid, in one round trip (what the orchestration reads every step: its
    cost does not grow with the number of callbacks). A state written by an older release, without the
    files and uids, is rebuilt once from the session's stored callbacks."""
    if not sids:
        return {}
    pipe = connection.pipeline(transaction=False)
    for sid in sids:
        pipe.hget(schema.session(sid), "state")
    states: dict[str, SessionState] = {}
    for sid, raw in zip(sids, pipe.execute(), strict=True):
        if raw is None:
            continue
        state = decode_state(raw)
        if state.version != STATE_VERSION:
            state = _rebuilt(connection, sid) or state
        states[sid] = state
    return states


def _rebuilt(connection: redis.Redis, sid: str) -> SessionState | None:
    members = cast(list[bytes], connection.zrange(schema.session_order(sid), 0, -1))
    notice_ids = [notice_id_of(m.decode()) for m in members]
    state: SessionState | None = None
    for value in connection.hmget(schema.session_events(sid), notice_ids) if notice_ids else []:
        if value is not None:
            received, _, raw = cast(bytes, value).partition(b"\n")
            state = apply_event(state, parse_event(raw, int(received)))
    return state
