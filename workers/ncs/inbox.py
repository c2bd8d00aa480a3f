"""The NCS inbox: how an accepted callback becomes durable and reaches a worker, in one atomic Redis step.

Events are spread over :data:`~workers.core.schema.PARTITIONS` Redis streams by channel name, so every event of a
channel (all sessions of its recordings) is applied by one drain at a time, in order. Accepting an event is
one Lua script, one round trip:

1. ``noticeId`` already seen: count a duplicate, write nothing, answer 0.
2. Otherwise append the raw body to the partition's stream; if no drain job is queued for the partition,
   create one (an RQ job copied from a template that RQ itself serialised, pushed onto RQ's queue exactly
   as ``Queue.enqueue`` does); set the dedupe marker **last**, so an error part-way leaves no marker and
   Agora's retry is accepted; answer 1.

The script runs atomically (a crash cannot leave half of it in the AOF), so an acknowledged event is both
stored and visible to workers. Workers keep a per-partition cursor (see :mod:`workers.jobs`); a periodic
sweep re-wakes partitions whose backlog went stale (a worker killed mid-drain).

The web process calls :meth:`Inbox.accept` on every callback. It talks to Redis through one redis-py
``Connection`` per thread rather than through the client, whose per-command bookkeeping costs more than
the rest of the request (measured in ``bench/README.md``).
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from datetime import UTC, datetime
from typing import Any

import hiredis
import redis
from rq.job import Job
from rq.queue import Queue

from workers.core import schema, scripts
from workers.core.errors import StoreUnavailableError

DRAIN_JOB_TIMEOUT = 300
DRAIN_FAILURE_TTL = 7 * 24 * 3600
#: How long a "drain job queued" flag may stand without the job starting before a new one may be created.
QUEUED_FLAG_TTL = 120
#: A partition whose oldest unapplied event is older than this is woken by the sweep, queued flag or not.
STALE_BACKLOG_MS = 10_000
_JOB_ID_PREFIX = "acr-drain-"


def new_job_id() -> str:
    """A drain job id, random (80 bits) so that it is unique across threads, forks and hosts; the accept script
    uses it only when it creates a job."""
    return _JOB_ID_PREFIX + secrets.token_hex(10)


def rq_timestamp(moment: datetime | None = None) -> str:
    """A time in RQ's own serialised format (``rq.utils.utcformat``)."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Clock:
    """``rq_timestamp()`` for now, formatting the date part once a second (it is on every callback's path)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:  # a benign race between threads: both write the same value
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"


def install_drain_templates(connection: redis.Redis) -> None:
    """Store, for every partition, the RQ job that drains it, serialised by RQ itself (idempotent)."""
    pipe = connection.pipeline(transaction=False)
    for partition in range(schema.PARTITIONS):
        job = Job.create(
            schema.JOB_DRAIN,
            args=(partition,),
            connection=connection,
            id=f"acr-drain-template-{partition}",
            timeout=DRAIN_JOB_TIMEOUT,
            result_ttl=0,
            failure_ttl=DRAIN_FAILURE_TTL,
            description=f"drain NCS inbox partition {partition}",
        )
        job.origin = schema.NCS_QUEUE
        template = schema.drain_job_template(partition)
        pipe.delete(template)
        pipe.hset(template, mapping=job.to_dict())
    try:
        pipe.execute()
    except redis.RedisError as exc:
        raise StoreUnavailableError(f"could not install drain job templates: {type(exc).__name__}") from exc


def _rq_keys() -> tuple[str, str, str]:
    """RQ's queue key, set of queues, and job key prefix, taken from RQ's classes."""
    return (
        Queue.redis_queue_namespace_prefix + schema.NCS_QUEUE,
        Queue.redis_queues_keys,
        Job.redis_job_namespace_prefix,
    )


class _Pending:
    """One event waiting for the group commit that stores it."""

    __slots__ = ("args", "done", "lead", "result")

    def __init__(self, args: tuple[str, int, bytes]) -> None:
        self.args = args
        self.done = threading.Event()
        self.lead = False  # set when this waiter is handed the job of committing the next group
        self.result: int | StoreUnavailableError = -2


class Inbox:
    """Accepts NCS events into Redis for the threads of one process (not shared across fork).

    Group commit: the first thread to arrive commits every event queued so far in one script call while the
    others wait; when it is done it hands the next group to one of the waiters. Under load one round trip
    carries many callbacks; alone, a callback costs one round trip, as without batching.
    """

    MAX_GROUP = 128

    def __init__(self, connection: redis.Redis, dedupe_ttl_seconds: int) -> None:
        self._redis = connection
        self._dedupe_ttl = dedupe_ttl_seconds
        self._queue_key, self._queues_key, self._job_prefix = _rq_keys()
        #: Per partition: its stream, drain job template and "drain queued" flag (named once, by the schema).
        self._partition_keys = [
            (schema.inbox(p), schema.drain_job_template(p), schema.inbox_queued(p))
            for p in range(schema.PARTITIONS)
        ]
        self._clock = _Clock()
        self._lock = threading.Lock()
        self._waiting: list[_Pending] = []
        self._committing = False
        self._conn: Any = None
        self._pid = -1
        timeout = connection.connection_pool.connection_kwargs.get("socket_timeout") or 5.0
        self._wait_timeout = 2 * float(timeout) + 1

    def accept(self, notice_id: str, routing_key: str, raw: bytes) -> bool:
        """Store one event durably and make it visible to workers; True if new, False if a duplicate.

        Raises StoreUnavailableError when Redis did not take it; nothing is then acknowledged.
        """
        item = _Pending((notice_id, schema.partition_of(routing_key), raw))
        with self._lock:
            self._waiting.append(item)
            lead = not self._committing
            self._committing = True
        if not lead:
            if not item.done.wait(self._wait_timeout):
                with self._lock:  # leave the queue, unless a committer took or promoted us meanwhile
                    abandoned = item in self._waiting and not item.lead
                    if abandoned:
                        self._waiting.remove(item)
                if abandoned:
                    raise StoreUnavailableError("timed out waiting for the group commit")
                item.done.wait()
            lead = item.lead
        if lead:
            self._commit_groups()
        result = item.result
        if isinstance(result, StoreUnavailableError):
            raise result
        if result not in (0, 1):
            raise StoreUnavailableError(f"event not stored (answer {result})")
        return result == 1

    def _commit_groups(self) -> None:
        """Commit the waiting events, then hand leadership to a waiter (or give it up)."""
        with self._lock:
            group, self._waiting = self._waiting[: self.MAX_GROUP], self._waiting[self.MAX_GROUP :]
        try:
            results: list[Any] = self._store(group)
            if (
                -1 in results
            ):  # Redis lost the job templates (flushed, restarted empty): reinstall, retry those
                install_drain_templates(self._redis)
                retry = [item for item, result in zip(group, results, strict=True) if result == -1]
                retried = iter(self._store(retry))
                results = [next(retried) if result == -1 else result for result in results]
            for item, result in zip(group, results, strict=True):
                item.result = result
        except StoreUnavailableError as exc:
            for item in group:
                item.result = exc
        finally:
            for item in group:
                item.done.set()
            with self._lock:
                if self._waiting:
                    successor = self._waiting[0]
                    successor.lead = True
                    successor.done.set()
                else:
                    self._committing = False

    def _store(self, group: list[_Pending]) -> list[Any]:
        keys: list[Any] = [self._queue_key, self._queues_key, schema.STATS]
        args: list[Any] = [self._dedupe_ttl, self._clock.now(), QUEUED_FLAG_TTL]
        # At most one drain job per partition can be created by one call (the queued flag is set with NX):
        # one candidate id per partition of the group.
        job_ids: dict[int, tuple[str, str]] = {}
        for item in group:
            notice_id, partition, raw = item.args
            job = job_ids.get(partition)
            if job is None:
                job_id = new_job_id()
                job = job_ids[partition] = (job_id, self._job_prefix + job_id)
            keys.append(schema.seen(notice_id))
            keys += self._partition_keys[partition]
            keys.append(job[1])
            args += [notice_id, raw, job[0]]
        command: list[Any] = ["EVALSHA", scripts.ACCEPT.sha, len(keys), *keys, *args]
        conn = self._connection()
        try:
            try:
                conn.send_packed_command([hiredis.pack_command(tuple(command))])
                results = conn.read_response()
            except redis.exceptions.NoScriptError:
                # Redis restarted or flushed its script cache: EVAL sends the text and caches it again.
                command[:2] = ["EVAL", scripts.ACCEPT.source]
                conn.send_packed_command([hiredis.pack_command(tuple(command))])
                results = conn.read_response()
        except redis.RedisError as exc:
            conn.disconnect()
            raise StoreUnavailableError(f"Redis did not take the events: {type(exc).__name__}") from exc
        except BaseException:
            conn.disconnect()  # state of the connection unknown: never reuse it half-read
            raise
        if not isinstance(results, list) or len(results) != len(group):
            raise StoreUnavailableError(f"unexpected answer from the accept script: {results!r}")
        return results

    def _connection(self) -> Any:
        """The connection of this process (one committer at a time uses it), made after any fork."""
        if self._pid != os.getpid():
            pool = self._redis.connection_pool
            self._conn = pool.connection_class(**pool.connection_kwargs)
            self._pid = os.getpid()
        return self._conn


def wake(connection: redis.Redis, partition: int) -> str | None:
    """Queue a drain job for ``partition`` even if one seems queued; return its id (None without templates)."""
    queue_key, queues_key, job_prefix = _rq_keys()
    job_id = new_job_id()
    result = scripts.WAKE_PARTITION(
        connection,
        keys=[
            schema.inbox_queued(partition),
            schema.drain_job_template(partition),
            queue_key,
            queues_key,
            job_prefix + job_id,
        ],
        args=[rq_timestamp(), QUEUED_FLAG_TTL, job_id],
    )
    if result == -1:
        install_drain_templates(connection)
        return wake(connection, partition)
    return result.decode() if isinstance(result, bytes) else str(result)


def stale_partitions(connection: redis.Redis, now_ms: int | None = None) -> list[int]:
    """Partitions holding an event older than STALE_BACKLOG_MS that no drain has applied yet."""
    return backlogged_partitions(connection, STALE_BACKLOG_MS, now_ms)


def backlogged_partitions(
    connection: redis.Redis, older_than_ms: int = -1, now_ms: int | None = None
) -> list[int]:
    """Partitions holding an unapplied event older than ``older_than_ms`` (default: any unapplied event)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    cursors = connection.mget([schema.inbox_cursor(p) for p in range(schema.PARTITIONS)])
    pipe = connection.pipeline(transaction=False)
    for partition, cursor in enumerate(cursors):
        start = "-" if cursor is None else "(" + (cursor.decode() if isinstance(cursor, bytes) else cursor)
        pipe.xrange(schema.inbox(partition), min=start, count=1)
    stale = []
    for partition, entries in enumerate(pipe.execute()):
        if entries:
            oldest = _stream_id(entries[0][0])
            if oldest is not None and now_ms - oldest[0] > older_than_ms:
                stale.append(partition)
    return stale


def _stream_id(value: bytes | str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    millis, _, seq = text.partition("-")
    return int(millis), int(seq or 0)
