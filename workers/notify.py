"""Alias, kept for one release: the previous release queued notification attempts as
``workers.notify.send_notification``, and their retries wait up to 3 h in RQ's scheduled registry. New
attempts are queued as :data:`workers.core.schema.JOB_NOTIFY`; the code is in :mod:`workers.recordings.notify`."""

from __future__ import annotations

from workers.jobs import send_notification

__all__ = ["send_notification"]
