"""Every function RQ runs, and the only module whose functions are queued. RQ stores each job's function as a
dotted path in Redis (:data:`workers.core.schema.JOB_DRAIN`, ``JOB_STEP``, ``JOB_NOTIFY``). Each function is a
thin entry point: it finds its Redis connection and settings, and hands over to the package that does the
work.

Jobs queued by the previous release under other paths still run through thin aliases of these functions,
kept for one release: ``workers.orchestrator.advance`` and ``workers.notify.send_notification``
(notification retries wait up to 3 h in RQ's scheduled registry). Notifications are still queued under the
latter during this release (``schema.JOB_NOTIFY_QUEUED``: a rolling deploy runs both releases' workers).
"""

from __future__ import annotations

import redis
from rq import get_current_job

from workers.core.config import current_settings
from workers.ncs import drain
from workers.recordings import notify, runner
from workers.recordings.routing import wake_recordings


def _connection() -> redis.Redis:
    job = get_current_job()
    if job is not None:
        return job.connection
    return redis.Redis.from_url(current_settings().redis_url)


def drain_partition(partition: int) -> int:
    """Apply one inbox partition's accepted callbacks to their sessions (:mod:`workers.ncs.drain`), and wake
    the recordings they concern; returns how many entries it consumed."""
    return drain.drain_partition(_connection(), partition, current_settings(), wake_recordings)


def drain_batch(
    connection: redis.Redis,
    partition: int,
    *,
    max_events: int,
    retention_seconds: int,
    batch_size: int = drain.BATCH_SIZE,
) -> int:
    """One batch of :func:`drain_partition` (for callers that drain by hand: tests, benchmarks)."""
    return drain.drain_batch(
        connection,
        partition,
        on_seen=wake_recordings,
        max_events=max_events,
        retention_seconds=retention_seconds,
        batch_size=batch_size,
    )


def advance_recording(recording_id: str) -> str:
    """One orchestration step for a recording (:mod:`workers.recordings.runner`)."""
    return runner.advance(recording_id)


def send_notification(
    message_id: str, body: str, attempt: int, scale: float = 1.0, series: int | None = None
) -> bool:
    """One delivery attempt of a notification to the app server (:mod:`workers.recordings.notify`)."""
    return notify.send_notification(message_id, body, attempt, scale, series)
