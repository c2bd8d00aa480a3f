"""Alias, kept for one release: the release before last queued steps as ``workers.orchestrator.advance``.
New steps are queued as :data:`workers.core.schema.JOB_STEP`."""

from __future__ import annotations

from workers.jobs import advance_recording as advance

__all__ = ["advance"]
