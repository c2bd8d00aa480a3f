"""The NCS inbox: how an accepted callback becomes durable and reaches a worker, in one atomic Redis step.

Events are spread over :data:`~workers.keys.PARTITIONS` Redis streams by channel name, so every event of a
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

import hashlib
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

import redis
from rq.job import Job
from rq.queue import Queue

from workers import keys
from workers.errors import StoreUnavailableError

DRAIN_FUNCTION = "workers.jobs.drain_partition"
DRAIN_JOB_TIMEOUT = 300
DRAIN_FAILURE_TTL = 7 * 24 * 3600
#: How long a "drain job queued" flag may stand without the job starting before a new one may be created.
QUEUED_FLAG_TTL = 120
#: A partition whose oldest unapplied event is older than this is woken by the sweep, queued flag or not.
STALE_BACKLOG_MS = 10_000
_JOB_ID_PREFIX = "acr-drain-"

# Creates a drain job from the partition's template and pushes it on RQ's queue, as Queue.enqueue would.
# Expects: tpl_key, queue_key, queues_key, seq_key, job_key_prefix, enqueued_at.
_ENQUEUE_DRAIN_LUA = """
local function enqueue_drain(tpl_key, queue_key, queues_key, seq_key, job_key_prefix, enqueued_at)
  local job_id = '""" + _JOB_ID_PREFIX + """' .. redis.call('INCR', seq_key)
  local job_key = job_key_prefix .. job_id
  redis.call('HSET', job_key, unpack(redis.call('HGETALL', tpl_key)))
  redis.call('HSET', job_key, 'status', 'queued', 'created_at', enqueued_at, 'enqueued_at', enqueued_at)
  redis.call('RPUSH', queue_key, job_id)
  redis.call('SADD', queues_key, queue_key)
  return job_id
end
"""

# KEYS: seen, stream, queued flag, job template, rq queue, rq queues set, job sequence, stats
# ARGV: dedupe ttl, notice id, raw body, enqueued_at, rq job key prefix, queued flag ttl
ACCEPT_LUA = (
    _ENQUEUE_DRAIN_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[8], 'duplicate', 1)
  return 0
end
if redis.call('EXISTS', KEYS[4]) == 0 then
  return -1
end
redis.call('XADD', KEYS[2], '*', 'n', ARGV[2], 'b', ARGV[3])
if redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[6]) then
  enqueue_drain(KEYS[4], KEYS[5], KEYS[6], KEYS[7], ARGV[5], ARGV[4])
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
redis.call('HINCRBY', KEYS[8], 'accepted', 1)
return 1
"""
)

# Wakes a partition unconditionally (the sweep found a stale backlog). Same KEYS 3-7 as ACCEPT_LUA.
# KEYS: queued flag, job template, rq queue, rq queues set, job sequence; ARGV: enqueued_at, prefix, flag ttl
WAKE_LUA = (
    _ENQUEUE_DRAIN_LUA
    + """
if redis.call('EXISTS', KEYS[2]) == 0 then
  return -1
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[3])
return enqueue_drain(KEYS[2], KEYS[3], KEYS[4], KEYS[5], ARGV[2], ARGV[1])
"""
)

_ACCEPT_SHA = hashlib.sha1(ACCEPT_LUA.encode()).hexdigest()


def rq_timestamp(moment: datetime | None = None) -> str:
    """A time in RQ's own serialised format (``rq.utils.utcformat``)."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def install_drain_templates(connection: redis.Redis) -> None:
    """Store, for every partition, the RQ job that drains it, serialised by RQ itself (idempotent)."""
    pipe = connection.pipeline(transaction=False)
    for partition in range(keys.PARTITIONS):
        job = Job.create(
            DRAIN_FUNCTION,
            args=(partition,),
            connection=connection,
            id=f"acr-drain-template-{partition}",
            timeout=DRAIN_JOB_TIMEOUT,
            result_ttl=0,
            failure_ttl=DRAIN_FAILURE_TTL,
            description=f"drain NCS inbox partition {partition}",
        )
        job.origin = keys.NCS_QUEUE
        template = keys.drain_job_template(partition)
        pipe.delete(template)
        pipe.hset(template, mapping=job.to_dict())
    try:
        pipe.execute()
    except redis.RedisError as exc:
        raise StoreUnavailableError(f"could not install drain job templates: {type(exc).__name__}") from exc


def _rq_keys() -> tuple[str, str, str]:
    """RQ's queue key, set of queues, and job key prefix, taken from RQ's classes."""
    return (
        Queue.redis_queue_namespace_prefix + keys.NCS_QUEUE,
        Queue.redis_queues_keys,
        Job.redis_job_namespace_prefix,
    )


class Inbox:
    """Accepts NCS events into Redis; safe to share between the threads of one process (not across fork)."""

    def __init__(self, connection: redis.Redis, dedupe_ttl_seconds: int) -> None:
        self._redis = connection
        self._dedupe_ttl = dedupe_ttl_seconds
        self._local = threading.local()
        self._queue_key, self._queues_key, self._job_prefix = _rq_keys()

    def accept(self, notice_id: str, routing_key: str, raw: bytes) -> bool:
        """Store one event durably and make it visible to workers; True if new, False if a duplicate.

        Raises StoreUnavailableError when Redis does not answer; nothing is then acknowledged.
        """
        partition = keys.partition_of(routing_key)
        command = (
            "EVALSHA",
            _ACCEPT_SHA,
            8,
            keys.seen(notice_id),
            keys.inbox(partition),
            keys.inbox_queued(partition),
            keys.drain_job_template(partition),
            self._queue_key,
            self._queues_key,
            keys.DRAIN_JOB_SEQUENCE,
            keys.STATS,
            self._dedupe_ttl,
            notice_id,
            raw,
            rq_timestamp(),
            self._job_prefix,
            QUEUED_FLAG_TTL,
        )
        result = self._execute(command)
        if result == -1:  # Redis lost the templates (flushed or restarted empty): reinstall, then retry once
            install_drain_templates(self._redis)
            result = self._execute(command)
        if result not in (0, 1):
            raise StoreUnavailableError(f"unexpected answer from the accept script: {result!r}")
        return result == 1

    def _connection(self) -> Any:
        """This thread's own connection, made after any fork."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            pool = self._redis.connection_pool
            local.conn = pool.connection_class(**pool.connection_kwargs)
            local.pid = os.getpid()
        return local.conn

    def _execute(self, command: tuple[Any, ...]) -> Any:
        conn = self._connection()
        try:
            try:
                conn.send_command(*command)
                return conn.read_response()
            except redis.exceptions.NoScriptError:
                # Redis restarted or flushed its script cache: EVAL sends the text and caches it again.
                conn.send_command("EVAL", ACCEPT_LUA, *command[2:])
                return conn.read_response()
        except redis.RedisError as exc:
            conn.disconnect()
            raise StoreUnavailableError(f"Redis did not take the event: {type(exc).__name__}") from exc
        except BaseException:
            conn.disconnect()  # state of the connection unknown: never reuse it half-read
            raise

    def close(self) -> None:
        """Close this thread's connection (other threads' close when they exit)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.disconnect()


def wake(connection: redis.Redis, partition: int) -> str | None:
    """Queue a drain job for ``partition`` even if one seems queued; return its id (None without templates)."""
    queue_key, queues_key, job_prefix = _rq_keys()
    script = connection.register_script(WAKE_LUA)
    result = script(
        keys=[
            keys.inbox_queued(partition),
            keys.drain_job_template(partition),
            queue_key,
            queues_key,
            keys.DRAIN_JOB_SEQUENCE,
        ],
        args=[rq_timestamp(), job_prefix, QUEUED_FLAG_TTL],
    )
    if result == -1:
        install_drain_templates(connection)
        return wake(connection, partition)
    return result.decode() if isinstance(result, bytes) else str(result)


def stale_partitions(connection: redis.Redis, now_ms: int | None = None) -> list[int]:
    """Partitions holding an event older than STALE_BACKLOG_MS that no drain has applied yet."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    cursors = connection.mget([keys.inbox_cursor(p) for p in range(keys.PARTITIONS)])
    pipe = connection.pipeline(transaction=False)
    for partition, cursor in enumerate(cursors):
        start = "-" if cursor is None else "(" + (cursor.decode() if isinstance(cursor, bytes) else cursor)
        pipe.xrange(keys.inbox(partition), min=start, count=1)
    stale = []
    for partition, entries in enumerate(pipe.execute()):
        if entries:
            oldest = _stream_id(entries[0][0])
            if oldest is not None and now_ms - oldest[0] > STALE_BACKLOG_MS:
                stale.append(partition)
    return stale


def _stream_id(value: bytes | str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    millis, _, seq = text.partition("-")
    return int(millis), int(seq or 0)
