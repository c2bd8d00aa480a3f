"""Recordings: what the app server asked for, the Agora sessions it took, and the files it produced.

States (``state``), each with its cause kept on the timeline:

- ``pending``: accepted through the API, nothing asked of Agora yet;
- ``starting``: acquire/start sent or a session is waiting to be confirmed by ``query`` (status 4/5);
- ``recording``: Agora confirmed a running session;
- ``stopping``: stop asked (by the app server or at ``maxDurationSeconds``), Agora's stop not answered yet;
- ``uploading``: no session runs any more; some files are not yet reported uploaded;
- ``completed``: every session ended and every file is uploaded (or nothing was recorded);
- ``backed_up``: every session ended, but Agora holds some files in its backup (event 32 /
  ``uploadingStatus: backuped``); it forwards them later. The files concerned are listed;
- ``failed``: Agora refused the recording for good, or the retry/restart budget ran out (``reason`` says which).

``completed``, ``backed_up`` and ``failed`` are terminal. ``desired`` is what the app server wants
(``recording`` until stopped), the state is what is true; the orchestration moves one toward the other.

The file manifest is a pure, order-independent function of everything reported (callbacks 4, 31, 32, 45, 71
and query/stop answers): each file keeps its best status (uploaded > backed_up > recorded).
"""

from __future__ import annotations

import secrets
from typing import Any

import msgspec

from workers.agora.bodies import Mode
from workers.agora.responses import parse_files
from workers.sessions import SessionState

STATES = ("pending", "starting", "recording", "stopping", "uploading", "completed", "backed_up", "failed")
TERMINAL = ("completed", "backed_up", "failed")
FILE_RANK = {"recorded": 1, "backed_up": 2, "uploaded": 3}


class AgoraSession(msgspec.Struct, kw_only=True):
    """One acquire + start attempt, and what became of it."""

    resource_id: str
    uid: str
    acquired_ms: int
    sid: str | None = None
    started_ms: int | None = None
    confirmed_ms: int | None = None
    ended_ms: int | None = None
    outcome: str | None = (
        None  # running | stopped | exited | exited_abnormally | died | not_started | start_failed
    )
    status: int | None = None  # last serverResponse.status seen
    failover_uid: str | None = None
    missing_since_ms: int | None = None  # first of a run of 404s
    next_query_ms: int | None = None  # no query before this (callback wake-ups only absorb hints)

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
        }


class FileEntry(msgspec.Struct, kw_only=True):
    """One file of the manifest."""

    name: str
    sid: str
    status: str  # recorded | backed_up | uploaded
    track_type: str | None = None
    uid: str | None = None
    slice_start_time: int | None = None
    source: str = ""  # what last improved it: an event type or an API answer

    def public(self) -> dict[str, Any]:
        """The API view."""
        return {
            "fileName": self.name,
            "sid": self.sid,
            "status": self.status,
            "trackType": self.track_type,
            "uid": self.uid,
            "sliceStartTime": self.slice_start_time,
            "source": self.source,
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
    created_ms: int
    updated_ms: int
    desired: str = "recording"
    state: str = "pending"
    reason: str | None = None
    start_attempts: int = 0
    failures_in_row: int = 0
    restarts: int = 0
    uid_index: int = 0
    retry_at_ms: int | None = None
    stop_at_ms: int | None = None
    ended_ms: int | None = None
    sessions: list[AgoraSession] = msgspec.field(default_factory=list)
    files: dict[str, FileEntry] = msgspec.field(default_factory=dict)
    last_error: dict[str, Any] | None = None
    pending_changes: list[dict[str, Any]] = msgspec.field(default_factory=list)
    notified: list[str] = msgspec.field(default_factory=list)
    upload_stuck: bool = False
    last_upload_change_ms: int | None = None

    @property
    def current(self) -> AgoraSession | None:
        """The newest session, if it has not ended."""
        if self.sessions and self.sessions[-1].ended_ms is None:
            return self.sessions[-1]
        return None

    @property
    def terminal(self) -> bool:
        """No more work will be done for it."""
        return self.state in TERMINAL

    def public(self) -> dict[str, Any]:
        """The API view: never a storage key or a token."""
        files = sorted(self.files.values(), key=lambda f: (f.slice_start_time or 0, f.name))
        return {
            "id": self.id,
            "cname": self.cname,
            "mode": self.mode,
            "uid": self.uid,
            "state": self.state,
            "desiredState": self.desired,
            "reason": self.reason,
            "attempts": self.start_attempts,
            "restarts": self.restarts,
            "createdMs": self.created_ms,
            "updatedMs": self.updated_ms,
            "endedMs": self.ended_ms,
            "maxDurationSeconds": self.max_duration_seconds,
            "stopAtMs": self.stop_at_ms,
            "currentSession": self.current.public() if self.current else None,
            "sessions": [s.public() for s in self.sessions],
            "files": [f.public() for f in files],
            "backedUpFiles": [f.name for f in files if f.status == "backed_up"],
            "uploadStuck": self.upload_stuck,
            "lastError": self.last_error,
            "config": public_config(self.request),
        }


SECRET_FIELDS = ("accessKey", "secretKey", "stsToken", "token", "secret")


def public_config(value: Any) -> Any:
    """A request with every secret field removed (not masked: absent)."""
    if isinstance(value, dict):
        return {k: public_config(v) for k, v in value.items() if k not in SECRET_FIELDS}
    if isinstance(value, list):
        return [public_config(v) for v in value]
    return value


def new_id() -> str:
    """A recording id: ``rec_`` and 20 random hex digits."""
    return "rec_" + secrets.token_hex(10)


def recorder_uid(base: str, index: int) -> str:
    """The recorder uid for the ``index``-th rotation (Agora: use another uid after repeated failures)."""
    value = (int(base) - 1 + index * 7919) % (2**32 - 1) + 1
    return str(value)


def merge_file(files: dict[str, FileEntry], entry: FileEntry) -> bool:
    """Add or improve a file (uploaded > backed_up > recorded); commutative; True if something changed."""
    held = files.get(entry.name)
    if held is None:
        files[entry.name] = entry
        return True
    changed = False
    held_rank, rank = FILE_RANK.get(held.status, 0), FILE_RANK.get(entry.status, 0)
    if rank > held_rank or (rank == held_rank and entry.source < held.source):
        changed = (held.status, held.source) != (entry.status, entry.source)
        held.status, held.source = entry.status, entry.source
    for name in (
        "track_type",
        "uid",
        "slice_start_time",
    ):  # the smallest value reported: order does not matter
        values = [v for v in (getattr(held, name), getattr(entry, name)) if v is not None]
        if values and min(values) != getattr(held, name):
            setattr(held, name, min(values))
            changed = True
    return changed


def files_from_event(sid: str, event_type: int, details: dict[str, Any]) -> list[FileEntry]:
    """The files one callback reports (4 playlist, 31 uploaded, 32 backed up, 45 screenshot, 71 web files)."""
    status = {31: "uploaded", 32: "backed_up"}.get(event_type, "recorded")
    source = str(event_type)
    if event_type == 4:
        reported = parse_files(details.get("fileList"))
    elif event_type == 45:
        reported = parse_files([{"fileName": details.get("fileName")}])
    elif event_type in (31, 32, 71):
        reported = parse_files(details.get("fileList"))
    else:
        return []
    return [
        FileEntry(
            name=f.file_name,
            sid=sid,
            status=status,
            track_type=f.track_type,
            uid=f.uid,
            slice_start_time=f.slice_start_time,
            source=source,
        )
        for f in reported
    ]


NORMAL_WEB_STOP_CODES = (0, 1)  # 71: user stopped, max_recording_hour


def ended_outcome(state: SessionState, events: list[dict[str, Any]]) -> str | None:
    """How a session ended according to its callbacks: ``exited`` (normal: idle exit, web max hours),
    ``exited_abnormally`` (11 with exitStatus 1, web 71 with another code, 72), or None (still running).

    A function of the set of callbacks, so any order and any duplicates give the same answer."""
    for event in events:
        details = event.get("details") or {}
        if event["eventType"] == 72:
            return "exited_abnormally"
        if event["eventType"] == 71 and details.get("code") not in NORMAL_WEB_STOP_CODES:
            return "exited_abnormally"
    if state.exited:
        return "exited_abnormally" if state.exit_status == 1 else "exited"
    return None


def manifest(events: list[dict[str, Any]]) -> dict[str, FileEntry]:
    """The file manifest a set of callbacks describes (each: ``sid``, ``eventType``, ``details``)."""
    files: dict[str, FileEntry] = {}
    for event in events:
        for entry in files_from_event(event["sid"], event["eventType"], event.get("details") or {}):
            merge_file(files, entry)
    return files


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Recording)


def encode(recording: Recording) -> bytes:
    """Stored form."""
    return _ENCODER.encode(recording)


def decode(raw: bytes) -> Recording:
    """From the stored form."""
    return _DECODER.decode(raw)
