"""Wake-ups: exactly one pending timer per recording, served by every worker, and wake-ups that never stack.

RQ's own scheduler runs in one process that holds a lock; when that process is killed or loses Redis, delayed
jobs wait until another worker takes the lock over (a minute or more). Recordings do not depend on it:

* every non-terminal recording has exactly one entry in the :data:`~workers.core.schema.TIMERS` sorted set (its id,
  scored with the due time in ms). Each step replaces it, in the same atomic save, with the time it next
  needs a look (:mod:`workers.recordings.store`), so wake-ups never stack;
* every worker claims due timers twice a second (:func:`fire_due`): one script moves each due entry a lease
  ahead (if the step never runs, the timer fires again) and sets the recording's "queued" flag; only when the
  flag was not set is a step job queued. A step clears the flag first thing, so a wake-up while it runs
  queues the next step. The flag holds the queued job's id: when a due recording's flag names a job that
  is gone (lost with a killed worker, or with the last second of writes of a crashed Redis) or that started
  without clearing it, a new job is queued at once instead of after the flag's TTL;
* callbacks and API commands wake a recording at once through the same flag (:func:`wake`).

Times come from Redis (``TIME``), so workers on several machines agree on what is due.
"""

from __future__ import annotations

import logging
import secrets
from typing import cast

import redis
from rq import Queue
from rq.job import Job

from workers.core import schema, scripts

log = logging.getLogger(__name__)

#: A claimed timer fires again after this long if its step never ran (job lost, worker killed).
LEASE_MS = 60_000
#: The "queued" flag expires after this long, so a lost job cannot silence a recording for good.
QUEUED_TTL_MS = LEASE_MS
CLAIM_BATCH = 200
#: How often one sweep reads the due timers again when a racing worker claimed the whole batch it read.
CLAIM_ROUNDS = 3
#: A due recording whose step is queued already is looked at again this soon (is its job still there?).
RECHECK_MS = 5000

#: The longest one Agora call may take: ``AgoraClient.worst_case_seconds()`` with the longest read timeout
#: the settings allow (5 hosts x (3.05 s + 15 s) + 16 s of pauses = 106 s); the runner refuses a client
#: that could take longer.
WORST_CALL_SECONDS = 110.0
#: The recording lock outlasts the worst Agora call; it is extended before every call.
LOCK_TTL_MS = 150_000
#: The RQ job timeout of one step outlasts its worst case: MAX_CALLS_PER_STEP calls of at most
#: WORST_CALL_SECONDS each, a second of rate-limit wait before each, and the Redis work around them.
MAX_CALLS_PER_STEP = 4
STEP_JOB_TIMEOUT = 600


def enqueue_step(connection: redis.Redis, recording_id: str, job_id: str | None = None) -> None:
    """Queue one step job (callers hold the recording's "queued" flag, which names the job)."""
    Queue(schema.DEFAULT_QUEUE, connection=connection).enqueue(
        schema.JOB_STEP,
        recording_id,
        job_id=job_id,
        job_timeout=STEP_JOB_TIMEOUT,
        result_ttl=0,
        failure_ttl=7 * 86400,
    )


def _job_id() -> str:
    return "acr-step-" + secrets.token_hex(10)


def wake(connection: redis.Redis, recording_id: str) -> bool:
    """Queue a step for the recording now, unless one is queued already; True if one was queued."""
    job_id = _job_id()
    if not connection.set(schema.recording_queued(recording_id), job_id, nx=True, px=QUEUED_TTL_MS):
        return False
    enqueue_step(connection, recording_id, job_id)
    return True


def fire_due(connection: redis.Redis, limit: int = CLAIM_BATCH) -> list[str]:
    """Claim every due timer (up to ``limit``) and queue a step for each recording not queued already, or
    whose queued job was lost."""
    claimed: list[bytes] = []
    held: list[bytes] = []
    for _ in range(CLAIM_ROUNDS):
        due = cast(list[bytes], scripts.DUE_TIMERS(connection, keys=[schema.TIMERS], args=[limit]))
        if not due:
            break
        claimed, held = cast(
            list[list[bytes]],
            scripts.CLAIM_TIMERS(
                connection,
                keys=[schema.TIMERS, schema.STATS, *(schema.recording_queued(i.decode()) for i in due)],
                args=[LEASE_MS, QUEUED_TTL_MS, RECHECK_MS, *due],
            ),
        )
        # Another worker claimed this whole batch between the read and the claim: with a backlog (after an
        # outage) the next due timers are there, read them again rather than wait for the next tick.
        if claimed or held or len(due) < limit:
            break
    fired = [i.decode() for i in claimed]
    lost = _lost_jobs(connection, [i.decode() for i in held])
    for recording_id in fired + lost:
        job_id = _job_id()
        connection.set(schema.recording_queued(recording_id), job_id, px=QUEUED_TTL_MS)
        enqueue_step(connection, recording_id, job_id)
    if lost:
        log.warning("lost step jobs queued again", extra={"count": len(lost)})
    return fired + lost


#: A queued flag younger than this may name a job still being written: never called lost.
LOST_AFTER_MS = 3000


def _lost_jobs(connection: redis.Redis, recording_ids: list[str]) -> list[str]:
    """Of these recordings (due, flag set), those whose flagged job no longer waits in the queue."""
    if not recording_ids:
        return []
    pipe = connection.pipeline(transaction=False)
    for recording_id in recording_ids:
        pipe.get(schema.recording_queued(recording_id))
        pipe.pttl(schema.recording_queued(recording_id))
    answers = pipe.execute()
    candidates: list[tuple[str, str]] = []
    for index, recording_id in enumerate(recording_ids):
        value, ttl = answers[2 * index], answers[2 * index + 1]
        if not isinstance(value, bytes) or value == b"claimed" or QUEUED_TTL_MS - int(ttl) < LOST_AFTER_MS:
            continue
        candidates.append((recording_id, value.decode()))
    if not candidates:
        return []
    pipe = connection.pipeline(transaction=False)
    for _, job_id in candidates:
        pipe.hget(Job.key_for(job_id), "status")
    statuses = pipe.execute()
    return [
        recording_id
        for (recording_id, _), status in zip(candidates, statuses, strict=True)
        if status != b"queued"
    ]


def soon(connection: redis.Redis, recording_id: str, delay_ms: int) -> None:
    """Bring the recording's timer forward to ``delay_ms`` from now (never later than it is)."""
    seconds, micros = connection.time()
    connection.zadd(schema.TIMERS, {recording_id: seconds * 1000 + micros // 1000 + delay_ms}, lt=True)


def rearm_missing(connection: redis.Redis) -> list[str]:
    """Give a timer (due now) to every active recording that has none (a safety net; normally empty)."""
    missing = [
        m.decode() for m in cast(list[bytes], connection.zdiff([schema.ACTIVE_RECORDINGS, schema.TIMERS]))
    ]
    if missing:
        seconds, micros = connection.time()
        now = seconds * 1000 + micros // 1000
        connection.zadd(schema.TIMERS, dict.fromkeys(missing, now), nx=True)
        log.warning("recordings without a timer re-armed", extra={"count": len(missing)})
    return missing


def record_max(connection: redis.Redis, name: str, value: int) -> None:
    """Keep the largest ``value`` seen under ``name`` in the stats hash (timer lateness, step duration)."""
    scripts.KEEP_MAX(connection, keys=[schema.STATS], args=[name, value])
