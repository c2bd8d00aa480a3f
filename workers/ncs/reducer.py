"""A recording session (one Agora ``sid``) as its callbacks describe it: a pure, order-independent reducer.

NCS delivers callbacks late, twice or never (``docs/agora.md`` §1.5), so the session state is defined
as a function of the *set* of events seen, not of their arrival order:

* every component keeps the value of the event that is greatest by ``(sequence, sendts, eventType, value)``,
  so a late event never moves the session backwards and any permutation ends in the same state;
* ``session_exit`` (11) is sticky: once seen, the session is ``exited`` whatever arrives later;
* upload results (31 uploaded, 32 backuped) are sticky over progress reports;
* the files reported (:mod:`workers.ncs.files`), the recorder uids seen and whether a web recorder ended
  abnormally (72, or 71 with a code other than 0/1) are merged into the state as they arrive, so reading what
  a session says costs one read, not a parse of its whole timeline;
* counts are not stored; they are derived from the timeline.

Applying the same event twice gives the same state (the reducer is idempotent), which is what lets the
drain job be re-run after a crash without double counting.
"""

from __future__ import annotations

from typing import Any

import msgspec

from workers.core.coerce import as_int
from workers.ncs.envelope import NcsEvent
from workers.ncs.files import FileEntry, files_from_event, merged

#: (sequence, sendts, eventType, value): missing numbers are -1.
OrderKey = tuple[int, int, int, str]
NO_KEY: OrderKey = (-2, -2, -2, "")

#: The session status an event implies, by eventType (productId 3).
STATUS_BY_EVENT: dict[int, str] = {
    30: "started",
    40: "started",
    70: "started",
    4: "recording",
    42: "recording",
    43: "recording",
    44: "recording",
    45: "recording",
    12: "failover",
    41: "stopping",
    71: "stopping",
    72: "stopping",
}

#: Cloud recording service status (event 3 ``details.status``, query ``serverResponse.status``), §1.7.
STATUS_BY_SERVICE_STATUS: dict[int, str] = {
    0: "starting",
    1: "starting",
    2: "starting",
    3: "starting",
    4: "recording",
    5: "recording",
    6: "stopping",
    7: "stopping",
    8: "stopping",
    20: "failed",
}

EVENT_SESSION_EXIT = 11
EVENT_FAILOVER = 12
EVENT_STATUS_UPDATE = 3
EVENT_ERROR = 1
UPLOAD_BY_EVENT = {30: "uploading", 33: "uploading", 31: "uploaded", 32: "backed_up"}
STICKY_UPLOADS = ("uploaded", "backed_up")
EVENT_WEB_STOPPED = 71
EVENT_WEB_CAPABILITY_LIMIT = 72
NORMAL_WEB_STOP_CODES = (0, 1)  # 71: stopped by the user, maxRecordingHour reached
#: States written before the files, uids and abnormal-end flag were kept have version 0.
STATE_VERSION = 1


class SessionState(msgspec.Struct, frozen=True, kw_only=True):
    """What the callbacks of one sid say; ``status`` is the reported one (``exited`` wins)."""

    sid: str
    cname: str | None = None
    uid: str | None = None
    uid_key: OrderKey = NO_KEY
    failover_uid: str | None = None
    failover_key: OrderKey = NO_KEY
    phase: str | None = None
    phase_key: OrderKey = NO_KEY
    exited: bool = False
    exit_status: int | None = None
    exit_key: OrderKey = NO_KEY
    service_status: int | None = None
    service_status_key: OrderKey = NO_KEY
    upload: str | None = None
    upload_key: OrderKey = NO_KEY
    upload_progress: int | None = None
    last_error: dict[str, Any] | None = None
    error_key: OrderKey = NO_KEY
    first_sendts: int | None = None
    last_sendts: int | None = None
    uids: tuple[str, ...] = ()  # every recorder uid the callbacks carried, sorted
    abnormal_end: bool = False  # 72, or 71 with a code other than 0/1
    files: dict[str, FileEntry] = msgspec.field(default_factory=dict)
    version: int = 0

    @property
    def ended(self) -> str | None:
        """``exited`` (a normal end), ``exited_abnormally``, or None while the callbacks say it runs."""
        if self.abnormal_end:
            return "exited_abnormally"
        if self.exited:
            return "exited_abnormally" if self.exit_status == 1 else "exited"
        return None

    @property
    def recorder_uid(self) -> str | None:
        """The uid recording now: the newest failover's ``newUid``, else the uid the callbacks carry."""
        return self.failover_uid or self.uid

    @property
    def status(self) -> str:
        if self.exited:
            return "exited"
        return self.phase or "unknown"

    def summary(self) -> dict[str, Any]:
        """The public view (no ordering keys)."""
        return {
            "sid": self.sid,
            "cname": self.cname,
            "uid": self.recorder_uid,
            "status": self.status,
            "exitStatus": self.exit_status,
            "serviceStatus": self.service_status,
            "upload": self.upload,
            "uploadProgress": self.upload_progress,
            "lastError": self.last_error,
            "firstSendts": self.first_sendts,
            "lastSendts": self.last_sendts,
        }


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(SessionState)


def encode_state(state: SessionState) -> bytes:
    return _ENCODER.encode(state)


def decode_state(raw: bytes) -> SessionState:
    return _DECODER.decode(raw)


def apply_event(state: SessionState | None, event: NcsEvent) -> SessionState:
    """The session after ``event``; commutative, idempotent, and never moves a component backwards."""
    if event.sid is None:
        raise ValueError("an event without sid belongs to no session")
    current = state if state is not None else SessionState(sid=event.sid)
    changes: dict[str, Any] = {}
    seq = -1 if event.sequence is None else event.sequence
    ts = -1 if event.sendts is None else event.sendts

    def newer(value: str, held: OrderKey) -> OrderKey | None:
        key = (seq, ts, event.event_type, value)
        return key if key > held else None

    if event.cname is not None and (current.cname is None or event.cname < current.cname):
        changes["cname"] = event.cname
    if event.uid is not None and (key := newer(event.uid, current.uid_key)):
        changes.update(uid=event.uid, uid_key=key)
    # After an HA failover the old uid's duplicates may still arrive (§1.5): the newest newUid wins.
    new_uid = event.details.get("newUid") if event.event_type == EVENT_FAILOVER else None
    if new_uid is not None and (key := newer(str(new_uid), current.failover_key)):
        changes.update(failover_uid=str(new_uid), failover_key=key)

    phase = STATUS_BY_EVENT.get(event.event_type)
    if event.event_type == EVENT_STATUS_UPDATE:
        service_status = as_int(event.details.get("status"))
        if service_status is not None:
            phase = STATUS_BY_SERVICE_STATUS.get(service_status)
            if key := newer(str(service_status), current.service_status_key):
                changes.update(service_status=service_status, service_status_key=key)
    if phase is not None and (key := newer(phase, current.phase_key)):
        changes.update(phase=phase, phase_key=key)

    if event.event_type == EVENT_SESSION_EXIT:
        exit_status = as_int(event.details.get("exitStatus"))
        if key := newer(str(exit_status), current.exit_key):
            changes.update(exited=True, exit_status=exit_status, exit_key=key)

    upload = UPLOAD_BY_EVENT.get(event.event_type)
    if upload is not None:
        held_sticky = current.upload in STICKY_UPLOADS
        sticky = upload in STICKY_UPLOADS
        if sticky > held_sticky or (sticky == held_sticky and newer(upload, current.upload_key)):
            changes.update(upload=upload, upload_key=(seq, ts, event.event_type, upload))
        progress = as_int(event.details.get("progress"))
        if progress is not None and (current.upload_progress is None or progress > current.upload_progress):
            changes["upload_progress"] = progress

    if event.event_type == EVENT_ERROR:
        error = {k: event.details.get(k) for k in ("module", "errorLevel", "errorCode", "errorMsg")}
        if key := newer(_ENCODER.encode(error).decode(), current.error_key):
            changes.update(last_error=error, error_key=key)

    if event.uid is not None and event.uid not in current.uids:
        changes["uids"] = tuple(sorted({*current.uids, event.uid}))
    web_code = as_int(event.details.get("code"))
    if not current.abnormal_end and (
        event.event_type == EVENT_WEB_CAPABILITY_LIMIT
        or (event.event_type == EVENT_WEB_STOPPED and web_code not in NORMAL_WEB_STOP_CODES)
    ):
        changes["abnormal_end"] = True
    reported = files_from_event(event.sid, event.event_type, event.details)
    if reported:
        files = dict(current.files)
        for entry in reported:
            better = merged(files.get(entry.name), entry)
            if better != files.get(entry.name):
                files[entry.name] = better
        if files != current.files:
            changes["files"] = files
    if current.version != STATE_VERSION:
        changes["version"] = STATE_VERSION

    if event.sendts is not None:
        if current.first_sendts is None or event.sendts < current.first_sendts:
            changes["first_sendts"] = event.sendts
        if current.last_sendts is None or event.sendts > current.last_sendts:
            changes["last_sendts"] = event.sendts
    return msgspec.structs.replace(current, **changes) if changes else current


def semantic_key(event: NcsEvent) -> str | None:
    """Identity of an event beyond its noticeId: a redundant copy has the same uid, sequence and type."""
    if event.sequence is None:
        return None
    return f"{event.uid or ''}:{event.sequence}:{event.event_type}"


def timeline_member(event: NcsEvent) -> str:
    """A sorted-set member whose lexical order is the timeline order (sequence, sendts, noticeId)."""
    seq = max(event.sequence if event.sequence is not None else -1, -1) + 1
    ts = max(event.sendts if event.sendts is not None else 0, 0)
    return f"{seq:010d}{ts:015d}:{event.notice_id}"


def notice_id_of(member: str) -> str:
    return member.split(":", 1)[1]
