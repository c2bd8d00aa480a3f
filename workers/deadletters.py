"""Dead letters: everything that failed for good, in one capped Redis stream, and how each is retried.

The stream :data:`~workers.core.schema.DEAD_LETTERS` (``acr:dead``, at most :data:`MAXLEN` entries, the oldest go
first) holds one entry per failure, with ``kind``, ``reason``, ``at`` (ms) and what a retry needs, never a
secret (reasons are redacted; notification bodies were redacted before they were built):

==============  =====================================================  ============================================
kind            written when                                           a retry
==============  =====================================================  ============================================
``callback``    a stored callback cannot be parsed or applied          accepts the body again through the inbox
                (``b``: the raw body, ``id``: its inbox entry,         (its noticeId forgotten at the door first)
                ``partition``)
``drain_job``   a drain job raised (``partition``, ``job``)            wakes the partition: drains are idempotent
``step_job``    an orchestration step raised (``recording``, ``job``)  wakes the recording
``notification`` a notification ran out of retries (``webhookId``,     redelivers it with the same ``webhook-id``
                ``recording``, ``type``, ``b``: the body)
==============  =====================================================  ============================================

Stream entries cannot change, so "retried" is kept beside them in the hash :data:`schema.DEAD_LETTERS_RETRIED` (entry id -> when
and how often), trimmed with the stream. Every retry, redelivery and session rebuild is written on the
affected recording's timeline (:func:`append_timeline`).

``rebuild_session`` re-applies a session's stored callbacks with the pure reducer
(:func:`workers.ncs.reducer.apply_event`) and writes the state only if it differs: idempotent, and the same state
as the live drains reached (the reducer is commutative and idempotent), as long as no callback was trimmed
over ``SESSION_MAX_EVENTS``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import msgspec
import redis

from workers.core import schema
from workers.core.deadletters import KINDS, MAXLEN, NotRetryableError, add, exception_reason, now_ms
from workers.core.errors import EventError
from workers.core.redact import redact, redact_text
from workers.ncs.envelope import decode_envelope, parse_event
from workers.ncs.inbox import Inbox
from workers.ncs.inbox import wake as wake_partition
from workers.ncs.reducer import SessionState, apply_event, encode_state, notice_id_of
from workers.recordings.model import RECORDING_ID
from workers.recordings.store import append_timeline
from workers.recordings.timers import wake as wake_recording

log = logging.getLogger(__name__)

#: The dead letters' whole interface, with what it re-exports of :mod:`workers.core.deadletters` and
#: :mod:`workers.recordings.store`.
__all__ = [
    "add",
    "append_timeline",
    "DeadLetter",
    "ENTRY_ID",
    "exception_reason",
    "get",
    "iso",
    "KINDS",
    "list_entries",
    "MAX_LIST",
    "MAX_LIST_SCAN",
    "MAX_PENDING_LOOKED_AT",
    "MAXLEN",
    "NotRetryableError",
    "now_ms",
    "rebuild_session",
    "Rebuilt",
    "record_job_failure",
    "recording_of_sid",
    "retry",
    "sessions_since",
    "since",
]

#: Dead-letter ids are stream ids; anything else is unknown (404) and never reaches Redis.
ENTRY_ID = re.compile(r"[0-9]{1,15}-[0-9]{1,10}")
MAX_LIST = 200
#: A listing request looks at no more entries than this; a filter that skips more answers a cursor.
MAX_LIST_SCAN = 1000
#: A retried drain job names the recordings of at most this many pending callbacks on their timelines.
MAX_PENDING_LOOKED_AT = 1000


_SID = re.compile(r"(?:task:)?[A-Za-z0-9_-]{1,128}")


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_job_failure(connection: redis.Redis, job: Any, *exc_info: Any) -> str | None:
    """Dead-letter a failed RQ job of ours (drain, step, notification); others are left to RQ. Never raises."""
    try:
        function = schema.OLD_JOB_PATHS.get(job.func_name, job.func_name)
        args = tuple(job.args or ())
    except Exception:  # noqa: BLE001 (a job that cannot be deserialised is not ours to judge)
        return None
    reason = "job failed: " + exception_reason(exc_info)
    try:
        if function == schema.JOB_DRAIN and args and isinstance(args[0], int):
            return add(connection, "drain_job", reason, partition=args[0], job=job.id)
        if function == schema.JOB_STEP and args and isinstance(args[0], str):
            entry_id = add(connection, "step_job", reason, recording=args[0], job=job.id)
            append_timeline(
                connection,
                args[0],
                {"kind": "dead_letter", "what": "step job failed", "deadLetter": entry_id, "reason": reason},
            )
            return entry_id
        if function == schema.JOB_NOTIFY and len(args) >= 2 and isinstance(args[0], str):
            from workers.recordings.notify import dead_letter_fields

            return add(connection, "notification", reason, **dead_letter_fields(args[0], str(args[1])))
    except redis.RedisError as exc:
        log.error("dead letter not written", extra={"job_id": job.id, "error": type(exc).__name__})
    return None


# -- reading ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetter:
    id: str
    fields: dict[str, bytes]
    retried: dict[str, Any] | None

    @property
    def kind(self) -> str:
        # Entries written before dead letters had kinds were all unparseable callbacks.
        return self.text("kind") or "callback"

    def text(self, name: str) -> str | None:
        value = self.fields.get(name)
        return None if value is None else value.decode("utf-8", "replace")

    def number(self, name: str) -> int | None:
        value = self.text(name)
        return int(value) if value is not None and value.lstrip("-").isdigit() else None

    @property
    def at_ms(self) -> int:
        return self.number("at") or int(self.id.split("-", 1)[0])

    def view(self) -> dict[str, Any]:
        """The entry as the API and the CLI show it (redacted; never the raw body of a notification)."""
        body = self.fields.get("b")
        notice_id = None
        if self.kind == "callback" and body is not None:
            try:
                notice_id = decode_envelope(body).notice_id
            except EventError:
                notice_id = None
        retried = None
        if self.retried is not None:
            retried = {
                "atMs": self.retried["atMs"],
                "at": iso(self.retried["atMs"]),
                "times": self.retried["times"],
            }
        return {
            "id": self.id,
            "kind": self.kind,
            "reason": redact_text(self.text("reason") or ""),
            "atMs": self.at_ms,
            "at": iso(self.at_ms),
            "partition": self.number("partition"),
            "recordingId": self.text("recording"),
            "webhookId": self.text("webhookId"),
            "type": self.text("type"),
            "noticeId": notice_id,
            "jobId": self.text("job"),
            "body": _shown_body(body) if self.kind == "callback" else None,
            "retried": retried,
        }


def _shown_body(raw: bytes | None) -> Any:
    """A callback body for an operator: its JSON redacted, or its redacted text (cut) when it is not JSON."""
    if raw is None:
        return None
    try:
        return redact(msgspec.json.decode(raw))
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return redact_text(raw[:4096].decode("utf-8", "replace"))


def _decode_fields(fields: dict[bytes, bytes]) -> dict[str, bytes]:
    return {k.decode(): v for k, v in fields.items()}


def _retried_marks(connection: redis.Redis, ids: list[str]) -> list[dict[str, Any] | None]:
    if not ids:
        return []
    marks = cast(list[bytes | None], connection.hmget(schema.DEAD_LETTERS_RETRIED, ids))
    return [None if m is None else msgspec.json.decode(m) for m in marks]


def get(connection: redis.Redis, entry_id: str) -> DeadLetter | None:
    """One dead letter, or None (also for an id that is not a stream id)."""
    if not ENTRY_ID.fullmatch(entry_id):
        return None
    found = cast(
        list[tuple[bytes, dict[bytes, bytes]]], connection.xrange(schema.DEAD_LETTERS, entry_id, entry_id)
    )
    if not found:
        return None
    (mark,) = _retried_marks(connection, [entry_id])
    return DeadLetter(id=entry_id, fields=_decode_fields(found[0][1]), retried=mark)


def list_entries(
    connection: redis.Redis, *, kind: str | None = None, limit: int = 50, cursor: str | None = None
) -> tuple[list[DeadLetter], str | None]:
    """Newest first, optionally of one kind; ``cursor`` is the id to continue below. Looks at no more than
    :data:`MAX_LIST_SCAN` entries: a filter that skips more answers a shorter page and a cursor."""
    found: list[DeadLetter] = []
    if cursor is not None and _stream_id(cursor) == (0, 0):
        return found, None  # nothing comes before the first possible id (Redis refuses "(0-0")
    upper = "+" if cursor is None else "(" + cursor
    scanned = 0
    while True:
        batch = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            connection.xrevrange(schema.DEAD_LETTERS, max=upper, min="-", count=100),
        )
        if not batch:
            return found, None
        marks = _retried_marks(connection, [entry_id.decode() for entry_id, _ in batch])
        for (raw_id, fields), mark in zip(batch, marks, strict=True):
            scanned += 1
            entry = DeadLetter(id=raw_id.decode(), fields=_decode_fields(fields), retried=mark)
            upper = "(" + entry.id
            if kind is None or entry.kind == kind:
                found.append(entry)
                if len(found) == limit:
                    return found, entry.id
            if scanned >= MAX_LIST_SCAN:
                return found, entry.id


def since(connection: redis.Redis, since_ms: int, kind: str | None = None) -> Iterator[DeadLetter]:
    """Every dead letter written at or after ``since_ms``, oldest first."""
    lower = f"{since_ms}-0"
    while True:
        batch = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            connection.xrange(schema.DEAD_LETTERS, min=lower, max="+", count=200),
        )
        if not batch:
            return
        marks = _retried_marks(connection, [entry_id.decode() for entry_id, _ in batch])
        for (raw_id, fields), mark in zip(batch, marks, strict=True):
            entry = DeadLetter(id=raw_id.decode(), fields=_decode_fields(fields), retried=mark)
            if kind is None or entry.kind == kind:
                yield entry
        lower = "(" + batch[-1][0].decode()


# -- retrying -----------------------------------------------------------------------------------------------


def retry(
    connection: redis.Redis,
    entry_id: str,
    inbox: Inbox,
    *,
    notify_url: str,
    scale: float = 1.0,
    retention_seconds: int | None = None,
) -> dict[str, Any] | None:
    """Retry one dead letter (see the module docstring); None when there is none with this id.
    NotRetryableError when it cannot be retried. The entry stays, marked retried."""
    entry = get(connection, entry_id)
    if entry is None:
        return None
    recordings: list[str] = []
    what: dict[str, Any] = {}
    if entry.kind == "callback":
        raw = entry.fields.get("b", b"")
        try:
            envelope = decode_envelope(raw)
        except EventError as exc:
            raise NotRetryableError(f"the stored body is not an NCS envelope: {exc}") from None
        connection.delete(schema.seen(envelope.notice_id))  # the door remembers it; let it in once more
        inbox.accept(envelope.notice_id, envelope.routing_key(), raw)
        sid = envelope.payload.get("sid")
        recordings = _recordings_of_sids(connection, [sid] if isinstance(sid, str) else [])
        what = {"noticeId": envelope.notice_id}
    elif entry.kind == "drain_job":
        partition = entry.number("partition")
        if partition is None or not 0 <= partition < schema.PARTITIONS:
            raise NotRetryableError("the dead letter names no inbox partition")
        recordings = _recordings_of_sids(connection, _pending_sids(connection, partition))
        wake_partition(connection, partition)
        what = {"partition": partition}
    elif entry.kind == "step_job":
        recording_id = entry.text("recording") or ""
        if not RECORDING_ID.fullmatch(recording_id) or not connection.exists(schema.recording(recording_id)):
            raise NotRetryableError(f"recording {recording_id!r} is gone")
        wake_recording(connection, recording_id)
        recordings = [recording_id]
    elif entry.kind == "notification":
        from workers.recordings.notify import redeliver

        webhook_id = entry.text("webhookId") or ""
        record = redeliver(
            connection,
            webhook_id,
            notify_url=notify_url,
            scale=scale,
            fallback=entry.fields,
            **({} if retention_seconds is None else {"retention_seconds": retention_seconds}),
        )
        if record is None:
            raise NotRetryableError(f"notification {webhook_id!r} is gone")
        what = {"webhookId": webhook_id}
    else:
        raise NotRetryableError(f"unknown kind {entry.kind!r}")
    mark = _mark_retried(connection, entry)
    for recording_id in recordings:
        append_timeline(
            connection,
            recording_id,
            {
                "kind": "operator",
                "what": "dead letter retried",
                "deadLetter": entry.id,
                "deadLetterKind": entry.kind,
                **what,
            },
        )
    log.info("dead letter retried", extra={"dead_letter": entry.id, "kind": entry.kind})
    return DeadLetter(id=entry.id, fields=entry.fields, retried=mark).view()


def _mark_retried(connection: redis.Redis, entry: DeadLetter) -> dict[str, Any]:
    mark = {"atMs": now_ms(), "times": (entry.retried or {}).get("times", 0) + 1}
    connection.hset(schema.DEAD_LETTERS_RETRIED, entry.id, msgspec.json.encode(mark))
    if (
        int(connection.hlen(schema.DEAD_LETTERS_RETRIED)) > MAXLEN
    ):  # drop the marks of entries the stream trimmed away
        oldest = cast(list[tuple[bytes, Any]], connection.xrange(schema.DEAD_LETTERS, count=1))
        if oldest:
            first = _stream_id(oldest[0][0].decode())
            gone = [
                k
                for k in cast(list[bytes], connection.hkeys(schema.DEAD_LETTERS_RETRIED))
                if _stream_id(k.decode()) < first
            ]
            if gone:
                connection.hdel(schema.DEAD_LETTERS_RETRIED, *gone)
    return mark


def _stream_id(text: str) -> tuple[int, int]:
    millis, _, seq = text.partition("-")
    return int(millis), int(seq or 0)


def _pending_sids(connection: redis.Redis, partition: int) -> list[str]:
    """Sids of the callbacks a partition has not applied yet (at most :data:`MAX_PENDING_LOOKED_AT`)."""
    cursor = connection.get(schema.inbox_cursor(partition))
    start = "-" if not isinstance(cursor, bytes) else "(" + cursor.decode()
    entries = cast(
        list[tuple[bytes, dict[bytes, bytes]]],
        connection.xrange(schema.inbox(partition), min=start, count=MAX_PENDING_LOOKED_AT),
    )
    sids: list[str] = []
    for _, fields in entries:
        try:
            sid = decode_envelope(fields.get(b"b", b"")).payload.get("sid")
        except EventError:
            continue
        if isinstance(sid, str) and sid not in sids:
            sids.append(sid)
    return sids


def _recordings_of_sids(connection: redis.Redis, sids: Iterable[str]) -> list[str]:
    valid = [s for s in sids if _SID.fullmatch(s)]
    if not valid:
        return []
    owners = cast(list[bytes | None], connection.mget([schema.recording_of_sid(s) for s in valid]))
    return sorted({o.decode() for o in owners if isinstance(o, bytes)})


def recording_of_sid(connection: redis.Redis, sid: str) -> str | None:
    found = _recordings_of_sids(connection, [sid])
    return found[0] if found else None


# -- rebuilding sessions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rebuilt:
    sid: str
    events: int
    changed: bool
    recording_id: str | None
    status: str | None

    def view(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "events": self.events,
            "changed": self.changed,
            "recordingId": self.recording_id,
            "status": self.status,
        }


def rebuild_session(connection: redis.Redis, sid: str) -> Rebuilt | None:
    """Re-apply a session's stored callbacks to rebuild its state; writes only what differs (idempotent).
    None for an unknown sid. Runs under WATCH of the session's keys: a drain committing meanwhile makes it
    read again, so it never overwrites what the drain wrote."""
    if not _SID.fullmatch(sid):
        return None
    watched = (schema.session(sid), schema.session_order(sid), schema.session_events(sid))
    while True:
        with connection.pipeline() as pipe:
            try:
                pipe.watch(*watched)  # type: ignore[no-untyped-call]
                held = cast(bytes | None, pipe.hget(schema.session(sid), "state"))
                if held is None:
                    return None
                members = cast(list[bytes], pipe.zrange(schema.session_order(sid), 0, -1))
                ids = [notice_id_of(m.decode()) for m in members]
                values = cast(list[bytes | None], pipe.hmget(schema.session_events(sid), ids)) if ids else []
                state: SessionState | None = None
                count = 0
                for value in values:
                    if value is None:
                        continue
                    received, _, raw = value.partition(b"\n")
                    try:
                        state = apply_event(state, parse_event(raw, int(received)))
                    except (EventError, ValueError):
                        continue
                    count += 1
                changed = state is not None and encode_state(state) != held
                pipe.multi()
                if changed and state is not None:
                    pipe.hset(schema.session(sid), "state", encode_state(state))
                pipe.execute()
            except redis.WatchError:
                continue
        break
    recording_id = recording_of_sid(connection, sid)
    if recording_id is not None:
        append_timeline(
            connection,
            recording_id,
            {"kind": "operator", "what": "session rebuilt", "sid": sid, "events": count, "changed": changed},
        )
        if changed:
            wake_recording(connection, recording_id)
    return Rebuilt(
        sid=sid,
        events=count,
        changed=changed,
        recording_id=recording_id,
        status=state.status if state is not None else None,
    )


def sessions_since(connection: redis.Redis, since_ms: int | None) -> Iterator[str]:
    """Sids with a callback at or after ``since_ms`` (every known sid without it), oldest activity first."""
    lower: float | str = "-inf" if since_ms is None else since_ms
    offset = 0
    while True:
        batch = cast(
            list[bytes],
            connection.zrangebyscore(schema.SESSIONS_INDEX, lower, "+inf", start=offset, num=500),
        )
        yield from (member.decode() for member in batch)
        if len(batch) < 500:
            return
        offset += len(batch)
