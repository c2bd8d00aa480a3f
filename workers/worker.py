"""The RQ worker class of the ``worker`` process: RQ's in-process worker, recording timers, inbox sweep.

``SimpleWorker`` runs jobs in the worker process instead of forking for each one (forking costs more than
a whole batch of events). Between jobs, and at least every ``TIMER_INTERVAL_SECONDS`` when idle, every worker
claims the recordings' due timers (:mod:`workers.recordings.timers`), so timers keep firing whichever worker
dies. Every ``SWEEP_INTERVAL_SECONDS`` it also looks for inbox partitions whose oldest unapplied event has
gone stale (its drain was killed, or its job was lost) and queues a fresh drain for them (duplicates are
harmless: drains commit under WATCH of the partition cursor), gives a timer to any active recording without
one, and restarts RQ's scheduler process (notification retries) when it died or its lock is free again,
instead of waiting for RQ's ten-minute maintenance.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from rq.worker import SimpleWorker

from workers.core.config import current_settings
from workers.deadletters import record_job_failure
from workers.ncs.inbox import install_drain_templates, stale_partitions, wake
from workers.recordings.admission import reconcile
from workers.recordings.runner import UNRELEASED, release_pending
from workers.recordings.store import trim_listing, trim_sessions_index
from workers.recordings.timers import fire_due, rearm_missing

log = logging.getLogger(__name__)

SWEEP_INTERVAL_SECONDS = 5
TIMER_INTERVAL_SECONDS = 0.5


class RecordingWorker(SimpleWorker):
    """An in-process RQ worker that also re-wakes stale inbox partitions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._last_sweep = 0.0
        self._last_timers = 0.0

    @property
    def dequeue_timeout(self) -> int:
        # Wake from the blocking dequeue every second: an idle worker serves the timers.
        return 1

    @property
    def should_run_maintenance_tasks(self) -> bool:
        return super().should_run_maintenance_tasks or self._sweep_due() or self._timers_due()

    def _sweep_due(self) -> bool:
        return time.monotonic() - self._last_sweep >= SWEEP_INTERVAL_SECONDS

    def _timers_due(self) -> bool:
        return time.monotonic() - self._last_timers >= TIMER_INTERVAL_SECONDS

    def run_maintenance_tasks(self) -> None:
        if super().should_run_maintenance_tasks:
            self._survive_redis_loss("maintenance", super().run_maintenance_tasks)
        if self._timers_due():
            if UNRELEASED:
                self._survive_redis_loss("lock release", release_pending, self.connection)
            self.fire_timers()
        if self._sweep_due():
            self.sweep_inbox()
            self._survive_redis_loss("timer re-arm", rearm_missing, self.connection)
            retention = current_settings().session_retention_seconds
            self._survive_redis_loss("listing trim", trim_listing, self.connection, retention)
            self._survive_redis_loss("sessions index trim", trim_sessions_index, self.connection, retention)
            self._survive_redis_loss("admission reconcile", reconcile, self.connection)
            self.revive_scheduler()

    def fire_timers(self) -> list[str]:
        """Queue a step for every recording whose timer is due."""
        self._last_timers = time.monotonic()
        try:
            return fire_due(self.connection)
        except redis.RedisError as exc:
            log.warning("timer claim failed", extra={"error": type(exc).__name__})
            return []

    def revive_scheduler(self) -> None:
        """RQ's scheduler process (delayed notification retries) dies on a Redis restart, and a killed
        worker's lock only frees after its TTL; RQ itself retries only every ten minutes."""
        scheduler = self.scheduler
        if scheduler is None:
            return
        process = scheduler._process  # noqa: SLF001 (RQ keeps it private; its own maintenance reads it)
        if process is not None and process.is_alive():
            return
        self._survive_redis_loss("scheduler restart", scheduler.acquire_locks, auto_start=True)

    # RQ's loop quits on a Redis error raised outside its dequeue retry (while finishing a job, on a
    # heartbeat, a suspension check). A worker should ride out a Redis restart instead: what a failed job
    # did not commit stays in the inbox for the next drain.
    def execute_job(self, job: Any, queue: Any) -> None:
        self._survive_redis_loss("job bookkeeping", super().execute_job, job, queue)

    def heartbeat(self, *args: Any, **kwargs: Any) -> None:
        self._survive_redis_loss("heartbeat", super().heartbeat, *args, **kwargs)

    def check_for_suspension(self, burst: bool) -> None:
        self._survive_redis_loss("suspension check", super().check_for_suspension, burst)

    def _survive_redis_loss(self, what: str, step: Any, *args: Any, **kwargs: Any) -> None:
        try:
            step(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            log.error("redis lost during worker step", extra={"step": what, "error": type(exc).__name__})
            time.sleep(1)

    def handle_exception(self, job: Any, *exc_info: Any) -> None:
        """A job that raised is a dead letter (drain, step, notification: :mod:`workers.deadletters`)."""
        super().handle_exception(job, *exc_info)
        record_job_failure(self.connection, job, *exc_info)

    def bootstrap(self, *args: Any, **kwargs: Any) -> None:
        super().bootstrap(*args, **kwargs)
        install_drain_templates(self.connection)

    def sweep_inbox(self, now_ms: int | None = None) -> list[int]:
        """Queue a drain for every partition with a stale backlog; return those partitions."""
        self._last_sweep = time.monotonic()
        try:
            stale = stale_partitions(self.connection, now_ms)
            for partition in stale:
                job_id = wake(self.connection, partition)
                log.warning("stale inbox partition woken", extra={"partition": partition, "job_id": job_id})
        except redis.RedisError as exc:
            log.warning("inbox sweep failed", extra={"error": type(exc).__name__})
            return []
        return stale
