"""The recording state machine: states, desired states, session outcomes, and every legal transition.

A recording's ``state`` says what is true; ``desired`` says what the app server wants. The orchestration
(:mod:`workers.recordings.decide`) moves one toward the other, and every change of state goes through
:func:`transition`, which finds the edge in :data:`TRANSITIONS` or raises :class:`IllegalTransitionError`.
The README's "Recording states" table is generated from the same table and checked by a test.

States:

- ``pending``: accepted through the API, nothing asked of Agora yet;
- ``queued``: waiting for capacity: the App ID's concurrency quota (``AGORA_MAX_RECORDERS``,
  ``AGORA_MAX_WEB_RECORDERS``) is taken, or Agora answered acquire with 406 ``vendor_over_load``; recordings
  leave the queue by priority, then in creation order (:mod:`workers.recordings.admission`);
- ``starting``: acquire/start sent, or a session waits to be confirmed by ``query`` (status 4/5), or a task
  Agora may be running is being found out (an ambiguous start);
- ``recording``: Agora confirmed a running session;
- ``paused``: the app server paused it: a web recording's page is on hold (``onhold`` through ``update``);
  an individual or mix recording's session was stopped, and resuming starts a new one;
- ``stopping``: a stop is wanted (the app server, ``maxDurationSeconds``) and a session still runs;
- ``uploading``: no session runs any more; files wait for their upload result (31/32);
- ``completed``: every session ended and every file is uploaded (or nothing was recorded);
- ``backed_up``: every session ended, Agora holds some files in its backup (32 / ``backuped``);
- ``upload_unconfirmed``: every session ended, but some files' upload was never confirmed (no 31/32 within
  ``UPLOAD_STUCK_SECONDS``, or their session died); the files in doubt are listed;
- ``failed``: Agora refused the recording for good, or the retry/restart budget ran out.

The last four are terminal: nothing moves a recording out of them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class State(enum.StrEnum):
    """What is true of a recording."""

    PENDING = "pending"
    QUEUED = "queued"
    STARTING = "starting"
    RECORDING = "recording"
    PAUSED = "paused"
    STOPPING = "stopping"
    UPLOADING = "uploading"
    COMPLETED = "completed"
    BACKED_UP = "backed_up"
    UPLOAD_UNCONFIRMED = "upload_unconfirmed"
    FAILED = "failed"


TERMINAL = frozenset({State.COMPLETED, State.BACKED_UP, State.UPLOAD_UNCONFIRMED, State.FAILED})


class Desired(enum.StrEnum):
    """What the app server wants."""

    RECORDING = "recording"
    PAUSED = "paused"
    STOPPED = "stopped"


class SessionOutcome(enum.StrEnum):
    """How one Agora session (acquire + start) stands or ended."""

    RUNNING = "running"  # confirmed by query
    STOPPED = "stopped"  # our stop was answered (200, 49, 404)
    EXITED = "exited"  # ended by itself, normally: idle exit, web maxRecordingHour
    EXITED_ABNORMALLY = "exited_abnormally"  # 11 with exitStatus 1, web 71 with another code, 72
    DIED = "died"  # query (or stop) answered 404 beyond the HA window, no callback saying it ended
    NOTHING_RECORDED = "nothing_recorded"  # stop answered 435
    NOT_STARTED = "not_started"  # no task came of it (start refused, resource spent, never confirmed)
    START_FAILED = "start_failed"  # Agora rejected the start for good


class Cause(enum.StrEnum):
    """Why a recording changed state (kept on the timeline with the transition)."""

    START_REQUESTED = "start requested"
    OVER_QUOTA = "the concurrency quota is taken"
    ADMITTED = "capacity freed"
    AGORA_FULL = "Agora answered 406 vendor_over_load"
    PAUSED = "paused by the app server"
    RESUMED = "resumed by the app server"
    CONFIRMED = "query confirmed the session"
    RESTART = "restarting after the session ended abnormally"
    REJECTED = "Agora rejected the recording"
    BUDGET_EXHAUSTED = "retry or restart budget exhausted"
    STOP_REQUESTED = "stop requested"
    STOPPED_BEFORE_START = "stopped before any session ran"
    SESSION_OVER = "no session runs any more"
    UPLOADED = "every file uploaded"
    NOTHING_RECORDED = "nothing was recorded"
    BACKED_UP = "Agora holds files in its backup"
    UPLOAD_UNCONFIRMED = "upload never confirmed"


@dataclass(frozen=True)
class Edge:
    """One legal transition and the notification it sends to the app server (if any)."""

    source: State
    target: State
    cause: Cause
    notification: str | None = None


S, C = State, Cause
_FINISH = (
    (S.COMPLETED, C.UPLOADED, "recording.completed"),
    (S.COMPLETED, C.NOTHING_RECORDED, "recording.completed"),
    (S.BACKED_UP, C.BACKED_UP, "recording.backed_up"),
    (S.UPLOAD_UNCONFIRMED, C.UPLOAD_UNCONFIRMED, "recording.upload_unconfirmed"),
)

#: Every legal transition. ``recording.started`` becomes ``recording.restarted`` after a restart (once the
#: recording was announced as started), and ``recording.resumed`` for the first session after a resume.
TRANSITIONS: tuple[Edge, ...] = (
    Edge(S.PENDING, S.STARTING, C.START_REQUESTED),
    Edge(S.PENDING, S.QUEUED, C.OVER_QUOTA),
    Edge(S.PENDING, S.PAUSED, C.PAUSED, "recording.paused"),
    Edge(S.PENDING, S.COMPLETED, C.STOPPED_BEFORE_START, "recording.completed"),
    Edge(S.PENDING, S.FAILED, C.REJECTED, "recording.failed"),
    Edge(S.QUEUED, S.STARTING, C.ADMITTED),
    Edge(S.QUEUED, S.PAUSED, C.PAUSED, "recording.paused"),
    Edge(S.QUEUED, S.COMPLETED, C.STOPPED_BEFORE_START, "recording.completed"),
    Edge(S.QUEUED, S.FAILED, C.BUDGET_EXHAUSTED, "recording.failed"),
    # a recording that ran before (a restart, a resume) waits here after a 406: it ends as one starting does
    Edge(S.QUEUED, S.RECORDING, C.CONFIRMED, "recording.started"),
    Edge(S.QUEUED, S.STOPPING, C.STOP_REQUESTED),
    Edge(S.QUEUED, S.UPLOADING, C.SESSION_OVER),
    Edge(S.QUEUED, S.FAILED, C.REJECTED, "recording.failed"),
    *(Edge(S.QUEUED, target, cause, note) for target, cause, note in _FINISH),
    Edge(S.STARTING, S.QUEUED, C.AGORA_FULL),
    Edge(S.STARTING, S.PAUSED, C.PAUSED, "recording.paused"),
    Edge(S.STARTING, S.RECORDING, C.CONFIRMED, "recording.started"),
    Edge(S.STARTING, S.FAILED, C.REJECTED, "recording.failed"),
    Edge(S.STARTING, S.FAILED, C.BUDGET_EXHAUSTED, "recording.failed"),
    Edge(S.STARTING, S.STOPPING, C.STOP_REQUESTED),
    Edge(S.STARTING, S.COMPLETED, C.STOPPED_BEFORE_START, "recording.completed"),
    Edge(S.STARTING, S.UPLOADING, C.SESSION_OVER),
    *(Edge(S.STARTING, target, cause, note) for target, cause, note in _FINISH),
    Edge(S.RECORDING, S.STARTING, C.RESTART),
    Edge(S.RECORDING, S.PAUSED, C.PAUSED, "recording.paused"),
    Edge(S.RECORDING, S.STOPPING, C.STOP_REQUESTED),
    Edge(S.RECORDING, S.UPLOADING, C.SESSION_OVER),
    Edge(S.RECORDING, S.FAILED, C.BUDGET_EXHAUSTED, "recording.failed"),
    *(Edge(S.RECORDING, target, cause, note) for target, cause, note in _FINISH),
    Edge(S.PAUSED, S.STARTING, C.RESUMED),
    Edge(S.PAUSED, S.STARTING, C.RESTART),
    Edge(S.PAUSED, S.RECORDING, C.RESUMED, "recording.resumed"),
    Edge(S.PAUSED, S.STOPPING, C.STOP_REQUESTED),
    Edge(S.PAUSED, S.UPLOADING, C.SESSION_OVER),
    Edge(S.PAUSED, S.FAILED, C.REJECTED, "recording.failed"),
    Edge(S.PAUSED, S.FAILED, C.BUDGET_EXHAUSTED, "recording.failed"),
    *(Edge(S.PAUSED, target, cause, note) for target, cause, note in _FINISH),
    Edge(S.STOPPING, S.UPLOADING, C.SESSION_OVER),
    Edge(S.STOPPING, S.FAILED, C.REJECTED, "recording.failed"),
    Edge(S.STOPPING, S.FAILED, C.BUDGET_EXHAUSTED, "recording.failed"),
    *(Edge(S.STOPPING, target, cause, note) for target, cause, note in _FINISH),
    *(Edge(S.UPLOADING, target, cause, note) for target, cause, note in _FINISH),
)

_INDEX: dict[tuple[State, State, Cause], Edge] = {(e.source, e.target, e.cause): e for e in TRANSITIONS}


class IllegalTransitionError(RuntimeError):
    """A transition that is not in :data:`TRANSITIONS`: a bug in the orchestration."""


def edge(source: State, target: State, cause: Cause) -> Edge:
    """The table's edge for this change; raises IllegalTransitionError when there is none."""
    found = _INDEX.get((source, target, cause))
    if found is None:
        raise IllegalTransitionError(f"{source} -> {target} ({cause.value}) is not a legal transition")
    return found


def transitions_markdown() -> str:
    """The transitions table as Markdown (the README's copy is checked against it)."""
    lines = ["| from | to | cause | notification |", "|---|---|---|---|"]
    for e in TRANSITIONS:
        note = f"`{e.notification}`" if e.notification else ""
        lines.append(f"| `{e.source}` | `{e.target}` | {e.cause.value} | {note} |")
    return "\n".join(lines)
