"""The previous release queued steps as ``workers.orchestrator.advance``; jobs already queued under that
name still run. New steps are queued as ``workers.jobs.advance_recording`` (see :mod:`workers.recordings`).
"""

from __future__ import annotations

from workers.recordings.runner import advance

__all__ = ["advance"]
