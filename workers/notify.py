"""Alias of :func:`workers.jobs.send_notification` under the path the previous release queued notification
attempts as (their retries wait up to 3 h in RQ's scheduled registry). This release still queues attempts
under it (:data:`workers.core.schema.JOB_NOTIFY_QUEUED`), so that during a rolling deploy a worker of either
release can run them; the next release queues :data:`workers.core.schema.JOB_NOTIFY` and keeps this alias one
release more. The code is in :mod:`workers.recordings.notify`."""

from __future__ import annotations

from workers.jobs import send_notification

__all__ = ["send_notification"]
