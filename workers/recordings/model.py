"""Recordings: what the app server asked for, the Agora sessions it took, and the files it produced.

The states, desired states and session outcomes are in :mod:`workers.recordings.machine`. A recording is
stored as one JSON document (``acr:rec:<id>``); ``public()`` is what the API and notifications show.

The file manifest is a pure, order-independent function of everything reported (callbacks 4, 31, 32, 45, 71
and query/stop answers): each file keeps its best status (uploaded > backed_up > recorded).
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Literal

import msgspec

from workers.agora.bodies import Mode
from workers.core.redact import redact
from workers.ncs.files import FileEntry
from workers.recordings.machine import TERMINAL, Desired, SessionOutcome, State

Priority = Literal["high", "normal"]
PRIORITIES: tuple[Priority, ...] = ("high", "normal")


class AgoraSession(msgspec.Struct, kw_only=True):
    """One acquire + start attempt (one resourceId, one recorder uid), and what became of it.

    ``start_sent`` counts start requests sent with this resourceId; ``ambiguous`` is True while a start may
    have created a task whose sid we do not know (a timeout, a 5xx, 206/65, a step killed after sending it,
    or 201/7 "already started" without a sid). Such a session is never given up before it is resolved.
    """

    resource_id: str
    uid: str
    acquired_ms: int
    sid: str | None = None
    start_sent: int = 0
    start_in_flight: bool = False  # written before start is sent; cleared when its answer is saved
    start_unresolved: bool = False  # a start answered ambiguously (timeout, 5xx, 65, 62)
    sid_unknown: bool = False  # a task may run (7; 53 or a refusal after our ambiguous start)
    started_ms: int | None = None
    confirmed_ms: int | None = None
    ended_ms: int | None = None
    outcome: SessionOutcome | None = None
    status: int | None = None  # last serverResponse.status seen
    failover_uid: str | None = None
    missing_since_ms: int | None = None  # first of a run of 404s (watched without a gap)
    first_missing_ms: int | None = None  # first 404 since the last answer that found the task
    next_query_ms: int | None = None  # the next query is due then (every live session has one)
    query_failures: int = 0
    fatal_error: str | None = None  # the fatal error (1, errorLevel 5) already reacted to
    exit_seen_ms: int | None = None  # callbacks first said it ended normally (settle window starts)
    stop_wanted: bool = False  # a stray or unconfirmed task to stop, although the recording goes on
    retry_stop_at_ms: int | None = None
    stop_refusals: int = 0
    upload_status: str | None = None  # stop's uploadingStatus: uploaded | backed_up | None
    adopted: bool = False  # its sid was learnt from callbacks, not from start's answer
    onhold: bool = False  # web: the page is on hold (started so, or set through update)
    given_up: bool = False  # ended without learning its task's sid: that task may still run (uid stays)

    @property
    def ambiguous(self) -> bool:
        """A start may have created a task whose sid we do not know."""
        return self.sid is None and (self.start_in_flight or self.start_unresolved or self.sid_unknown)

    @property
    def live(self) -> bool:
        """Not known to have ended."""
        return self.ended_ms is None

    def end(self, outcome: SessionOutcome, now: int) -> None:
        """Mark it ended (once)."""
        if self.ended_ms is None:
            self.ended_ms, self.outcome = now, outcome
            self.start_in_flight = self.start_unresolved = self.sid_unknown = False
            self.next_query_ms = None

    def public(self) -> dict[str, Any]:
        """The API view."""
        return {
            "resourceId": self.resource_id,
            "sid": self.sid,
            "uid": self.failover_uid or self.uid,
            "originalUid": self.uid,
            "acquiredMs": self.acquired_ms,
            "startedMs": self.started_ms,
            "confirmedMs": self.confirmed_ms,
            "endedMs": self.ended_ms,
            "outcome": self.outcome,
            "serviceStatus": self.status,
            "adopted": self.adopted,
        }


class Recording(msgspec.Struct, kw_only=True):
    """A recording as stored in Redis (``acr:rec:<id>``); ``public()`` is what the API shows."""

    id: str
    cname: str
    mode: Mode
    uid: str
    request: dict[str, Any]  # the start clientRequest (may hold storage keys and a token: never shown)
    scene: int = 0
    max_duration_seconds: int | None = None
    max_restarts: int = 5
    priority: Priority = "normal"
    created_ms: int
    updated_ms: int
    desired: Desired = Desired.RECORDING
    state: State = State.PENDING
    reason: str | None = None
    fail_reason: str | None = None  # set when the recording must end failed once no task runs
    start_attempts: int = 0
    failures_in_row: int = 0
    capacity_waits: int = 0  # 406 answers in a row (the backoff while Agora's quota is taken)
    restarts: int = 0
    admitted: bool = False  # holds one of the App ID's recorder slots (workers.recordings.admission)
    pauses: int = 0  # pause requests taken so far (each pause and resume is notified once)
    paused_announced: bool = False  # recording.paused was the last of paused/resumed sent
    uid_index: int = 0
    retry_at_ms: int | None = None
    stop_at_ms: int | None = None
    ended_ms: int | None = None
    stopped_ms: int | None = None  # when the stop was decided (API, max duration, normal end)
    sessions: list[AgoraSession] = msgspec.field(default_factory=list)
    files: dict[str, FileEntry] = msgspec.field(default_factory=dict)
    files_in_doubt: list[str] = msgspec.field(default_factory=list)
    last_error: dict[str, Any] | None = None
    pending_changes: list[dict[str, Any]] = msgspec.field(default_factory=list)
    #: sids found in callbacks on our channel and uid that Agora said are of none of our resources (1003)
    foreign_sids: list[str] = msgspec.field(default_factory=list)
    notified: list[str] = msgspec.field(default_factory=list)
    last_upload_change_ms: int | None = None
    wake_at_ms: int | None = None  # the one pending timer (also in the timer index)
    version: int = 0  # saves so far

    @property
    def current(self) -> AgoraSession | None:
        """The newest live session that is meant to record (not one being stopped as a stray)."""
        for session in reversed(self.sessions):
            if session.live and not session.stop_wanted:
                return session
        return None

    @property
    def live_sessions(self) -> list[AgoraSession]:
        """Every session not known to have ended (normally at most one)."""
        return [s for s in self.sessions if s.live]

    @property
    def terminal(self) -> bool:
        """No more work will be done for it."""
        return self.state in TERMINAL

    @property
    def holds_capacity(self) -> bool:
        """It counts against the concurrency quota: wanted (recording or paused), or a task may still run."""
        return not self.terminal and (self.desired != Desired.STOPPED or bool(self.live_sessions))

    def public(self, queue_position: int | None = None) -> dict[str, Any]:
        """The API view: never a storage key or a token."""
        files = sorted(self.files.values(), key=lambda f: (f.slice_start_time or 0, f.name))
        current = self.current
        return {
            "id": self.id,
            "cname": self.cname,
            "mode": self.mode,
            "uid": self.uid,
            "state": self.state,
            "desiredState": self.desired,
            "reason": redact(self.reason),
            "attempts": self.start_attempts,
            "restarts": self.restarts,
            "createdMs": self.created_ms,
            "updatedMs": self.updated_ms,
            "endedMs": self.ended_ms,
            "maxDurationSeconds": self.max_duration_seconds,
            "maxRestarts": self.max_restarts,
            "priority": self.priority,
            "queuePosition": queue_position if self.state == State.QUEUED else None,
            "stopAtMs": self.stop_at_ms,
            "currentSession": current.public() if current else None,
            "sessions": [s.public() for s in self.sessions],
            "files": [f.public() for f in files],
            "backedUpFiles": [f.name for f in files if f.status == "backed_up"],
            "filesInDoubt": list(self.files_in_doubt),
            "uploadStuck": self.state == State.UPLOAD_UNCONFIRMED,
            "lastError": redact(self.last_error),
            "nextWakeMs": self.wake_at_ms,
            "config": public_config(self.request),
        }


def public_config(value: Any) -> Any:
    """A request as the API and notifications show it: redacted by rule (:mod:`workers.core.redact`), same shape,
    every credential-like field ``"***"``, URLs without userinfo, query, fragment or RTMP stream key."""
    return redact(value)


#: Recording ids as :func:`new_id` makes them; anything else names no recording (checked before it names a key).
RECORDING_ID = re.compile(r"rec_[0-9a-f]{20}")


def new_id() -> str:
    """A recording id: ``rec_`` and 20 random hex digits."""
    return "rec_" + secrets.token_hex(10)


def recorder_uid(base: str, index: int) -> str:
    """The recorder uid for the ``index``-th rotation (Agora: use another uid after repeated failures)."""
    value = (int(base) - 1 + index * 7919) % (2**32 - 1) + 1
    return str(value)


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Recording)


def encode(recording: Recording) -> bytes:
    """Stored form."""
    return _ENCODER.encode(recording)


def decode(raw: bytes) -> Recording:
    """From the stored form."""
    return _DECODER.decode(raw)
