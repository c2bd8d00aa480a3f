"""The drain: how accepted callbacks become session state.

:func:`drain_partition` applies a partition's accepted events to their sessions, exactly once in effect:

* it reads the events after the partition's cursor, plans every session change purely, then writes the
  changes **and** advances the cursor in one MULTI/EXEC, under WATCH of the cursor. A drain killed
  part-way has written nothing; two drains racing on one partition cannot both commit a batch.
* its first act clears the partition's "drain queued" flag, so an event accepted while it runs queues the
  next drain; the worker's periodic sweep re-wakes a partition whose backlog went stale (see
  :class:`workers.worker.RecordingWorker`).
* a body that no longer parses, or that cannot be applied to its session, is moved to the dead-letter
  stream with its reason instead of blocking the partition; the events after it are applied. Events
  without ``sid`` (other products, console test events) go to a capped stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

import redis

from workers.core import deadletters, schema
from workers.core.config import Settings
from workers.core.errors import EventError
from workers.core.measure import record_applied
from workers.ncs.envelope import NcsEvent, parse_event
from workers.ncs.inbox import backlogged_partitions, wake
from workers.ncs.store import SessionUpdate, plan_updates, write_updates

log = logging.getLogger(__name__)

BATCH_SIZE = 500
#: A drain hands over to a fresh job after this long, so one busy channel cannot hold a worker forever.
DRAIN_TIME_BUDGET_SECONDS = 20.0
#: After its own partition, a drain helps with other partitions' backlogs for at most this long.
HELP_BUDGET_SECONDS = 2.0
UNROUTED_MAXLEN = 10_000


@dataclass(frozen=True)
class Seen:
    """A session that just got callbacks: its sid, channel and the recorder uids they carry."""

    sid: str
    cname: str | None
    uids: frozenset[str]


#: What a drain tells about each committed batch: the sessions that got new events (the worker wires
#: :func:`workers.recordings.routing.wake_recordings` here, so callbacks wake their recordings).
OnSeen = Callable[[redis.Redis, Iterable[Seen]], object]


def drain_partition(connection: redis.Redis, partition: int, settings: Settings, on_seen: OnSeen) -> int:
    """Apply every pending event of one inbox partition, then help with the other partitions' backlogs;
    return how many entries it consumed.

    Each partition has at most one drain job queued, and RQ costs a few milliseconds per job, so with many
    busy partitions an event would wait for every other partition's job before its own. Helping (drains are
    safe to run concurrently: each batch commits under WATCH of its partition's cursor) applies it with the
    first job that runs; the helped partition's own job then finds little or nothing left.
    """
    connection.delete(schema.inbox_queued(partition))
    started = time.monotonic()
    consumed = _drain_until_empty(connection, partition, settings, on_seen, started)
    helped = 0
    for other in backlogged_partitions(connection):
        if time.monotonic() - started > HELP_BUDGET_SECONDS:
            break
        if other != partition:
            helped += _drain_until_empty(connection, other, settings, on_seen, started)
    log.info(
        "drain finished",
        extra={
            "partition": partition,
            "consumed": consumed,
            "helped": helped,
            "ms": round((time.monotonic() - started) * 1000),
        },
    )
    return consumed + helped


def _drain_until_empty(
    connection: redis.Redis, partition: int, settings: Settings, on_seen: OnSeen, started: float
) -> int:
    """Drain batches of one partition until it is empty, or until the job's time budget is spent (then a
    fresh job is queued for the rest, so one busy channel cannot hold a worker forever)."""
    consumed = 0
    while True:
        count = drain_batch(
            connection,
            partition,
            on_seen=on_seen,
            max_events=settings.session_max_events,
            retention_seconds=settings.session_retention_seconds,
        )
        consumed += count
        if count == 0:
            return consumed
        if time.monotonic() - started > DRAIN_TIME_BUDGET_SECONDS:
            wake(connection, partition)
            return consumed


def drain_batch(
    connection: redis.Redis,
    partition: int,
    *,
    on_seen: OnSeen,
    max_events: int,
    retention_seconds: int,
    batch_size: int = BATCH_SIZE,
) -> int:
    """Apply up to ``batch_size`` events after the cursor; return how many stream entries were consumed.

    Returns 0 when nothing is pending. A concurrent drain that committed first makes this one re-read.
    """
    stream, cursor_key = schema.inbox(partition), schema.inbox_cursor(partition)
    while True:
        with connection.pipeline() as pipe:
            try:
                pipe.watch(cursor_key)  # type: ignore[no-untyped-call]
                cursor = cast(bytes | None, pipe.get(cursor_key))
                start = "-" if cursor is None else "(" + cursor.decode()
                entries = cast(
                    list[tuple[bytes, dict[bytes, bytes]]], pipe.xrange(stream, min=start, count=batch_size)
                )
                if not entries:
                    return 0
                routed, unrouted, dead = _parse_entries(entries)
                updates = _plan(connection, routed, max_events, dead, entries)
                last_id = entries[-1][0]
                pipe.multi()
                added = write_updates(pipe, updates, retention_seconds)
                for event in unrouted:
                    pipe.xadd(
                        schema.UNROUTED,
                        {"n": event.notice_id, "b": event.raw, "r": event.received_ms},
                        maxlen=UNROUTED_MAXLEN,
                    )
                for entry_id, raw, reason in dead:
                    deadletters.write(pipe, "callback", reason, id=entry_id, b=raw, partition=partition)
                pipe.set(cursor_key, last_id)
                pipe.hincrby(schema.STATS, "applied", added)
                pipe.hincrby(schema.STATS, "dropped_duplicates", sum(u.duplicates for u in updates))
                pipe.execute()
            except redis.WatchError:
                continue  # another drain advanced the cursor: re-read from where it left off
        connection.xtrim(stream, minid=last_id, approximate=True)
        record_applied(connection, entries)  # accepted-to-applied histogram for /metrics
        # Callbacks are hints for the orchestration: the recordings owning these sessions take a look.
        on_seen(
            connection,
            [
                Seen(
                    sid=u.sid,
                    cname=u.state.cname if u.state is not None else None,
                    uids=frozenset(e.uid for e in u.added if e.uid),
                )
                for u in updates
                if u.added
            ],
        )
        return len(entries)


def _parse_entries(
    entries: list[tuple[bytes, dict[bytes, bytes]]],
) -> tuple[list[NcsEvent], list[NcsEvent], list[tuple[bytes, bytes, str]]]:
    """Split a batch into events with a session, events without one, and dead letters: whatever cannot be
    parsed, for any reason, is set aside with its reason instead of failing the batch (and every drain after
    it: a poison callback must never block its partition)."""
    routed: list[NcsEvent] = []
    unrouted: list[NcsEvent] = []
    dead: list[tuple[bytes, bytes, str]] = []
    for entry_id, fields in entries:
        raw = fields.get(b"b", b"")
        try:
            event = parse_event(raw, int(entry_id.split(b"-", 1)[0]))
        except EventError as exc:
            dead.append((entry_id, raw, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 (anything else a body can provoke is a dead letter too)
            log.warning("ncs event unparsable", extra={"entry": entry_id.decode(), "error": repr(exc)[:200]})
            dead.append((entry_id, raw, _reason(exc)))
            continue
        (routed if event.sid is not None else unrouted).append(event)
    return routed, unrouted, dead


def _plan(
    connection: redis.Redis,
    routed: list[NcsEvent],
    max_events: int,
    dead: list[tuple[bytes, bytes, str]],
    entries: list[tuple[bytes, dict[bytes, bytes]]],
) -> list[SessionUpdate]:
    """Plan the batch; if planning fails, find the events it cannot apply (each tried after those already
    accepted, in order), add them to ``dead`` and plan the others. Redis errors are not the events' fault:
    they propagate, and the batch is retried by the next drain."""
    try:
        return plan_updates(connection, routed, max_events)
    except redis.RedisError:
        raise
    except Exception:  # noqa: BLE001
        log.warning("ncs batch could not be planned; looking for the events at fault", exc_info=True)
    entry_of = {fields.get(b"b", b""): entry_id for entry_id, fields in entries}
    accepted: list[NcsEvent] = []
    for event in routed:
        try:
            plan_updates(connection, [*accepted, event], max_events)
        except redis.RedisError:
            raise
        except Exception as exc:  # noqa: BLE001
            dead.append((entry_of.get(event.raw, b"%d-0" % event.received_ms), event.raw, _reason(exc)))
            continue
        accepted.append(event)
    return plan_updates(connection, accepted, max_events)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"cannot apply: {type(exc).__name__}: {text[:500]}"
