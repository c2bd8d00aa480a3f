"""Agora's answers, read leniently (``docs/agora.md`` §3.4-§3.8).

Numbers may come as strings (``"status": "5"``), booleans as ``"true"``, file names as ``fileName`` or
``filename``, ``fileList`` as one playlist name (``fileListMode: "string"``) or a list of objects
(``"json"``), and web mode reports through ``extensionServiceState``. Anything unreadable becomes ``None``
rather than an exception: the raw answer is always kept in ``raw``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workers.core.coerce import as_int

RUNNING_STATUSES = (4, 5)


def as_bool(value: object) -> bool | None:
    """A boolean from a bool, ``"true"``/``"false"`` or 0/1, else ``None``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return None


def as_str(value: object) -> str | None:
    """A string, or a number rendered as one, else ``None``."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


@dataclass(frozen=True)
class RecordedFile:
    """One file Agora reports (a playlist, an MP4, a web recording file)."""

    file_name: str
    track_type: str | None = None
    uid: str | None = None
    mixed_all_user: bool | None = None
    is_playable: bool | None = None
    slice_start_time: int | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready, Agora's field names."""
        return {
            "fileName": self.file_name,
            "trackType": self.track_type,
            "uid": self.uid,
            "mixedAllUser": self.mixed_all_user,
            "isPlayable": self.is_playable,
            "sliceStartTime": self.slice_start_time,
        }


def parse_files(value: object) -> list[RecordedFile]:
    """``fileList`` in any documented shape: a playlist name, ``;``-separated names, or a list of objects."""
    if isinstance(value, str):
        return [RecordedFile(name.strip()) for name in value.split(";") if name.strip()]
    files = []
    if isinstance(value, list):
        for item in value:
            if isinstance(item, str) and item:
                files.append(RecordedFile(item))
                continue
            if not isinstance(item, dict):
                continue
            name = as_str(item.get("fileName")) or as_str(item.get("filename"))
            if not name:
                continue
            files.append(
                RecordedFile(
                    file_name=name,
                    track_type=as_str(item.get("trackType")),
                    uid=as_str(item.get("uid")),
                    mixed_all_user=as_bool(item.get("mixedAllUser")),
                    is_playable=as_bool(item.get("isPlayable")),
                    slice_start_time=as_int(item.get("sliceStartTime")),
                )
            )
    return files


@dataclass(frozen=True)
class ServiceState:
    """One entry of web mode's ``extensionServiceState``."""

    service_name: str
    state: str | None = None
    onhold: bool | None = None
    uploading_status: str | None = None
    files: list[RecordedFile] = field(default_factory=list)
    outputs: list[dict[str, str | None]] = field(default_factory=list)


def parse_service_states(value: object) -> list[ServiceState]:
    """``extensionServiceState[]`` of query and stop answers in web mode."""
    states = []
    for item in value if isinstance(value, list) else ():
        if not isinstance(item, dict):
            continue
        payload = item.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        outputs = []
        for output in payload.get("outputs") or ():
            if isinstance(output, dict):
                outputs.append(
                    {"rtmpUrl": as_str(output.get("rtmpUrl")), "status": as_str(output.get("status"))}
                )
        states.append(
            ServiceState(
                service_name=as_str(item.get("serviceName")) or "",
                state=as_str(payload.get("state")),
                onhold=as_bool(payload.get("onhold")),
                uploading_status=as_str(payload.get("uploadingStatus")),
                files=parse_files(payload.get("fileList")),
                outputs=outputs,
            )
        )
    return states


@dataclass(frozen=True)
class Answer:
    """What every successful answer carries."""

    raw: dict[str, Any]
    request_id: str | None

    @property
    def resource_id(self) -> str | None:
        """``resourceId`` of the answer."""
        return as_str(self.raw.get("resourceId"))

    @property
    def sid(self) -> str | None:
        """``sid`` of the answer (absent from acquire, and from start's 201/7)."""
        return as_str(self.raw.get("sid")) or None

    @property
    def cname(self) -> str | None:
        """``cname`` of the answer."""
        return as_str(self.raw.get("cname"))

    @property
    def uid(self) -> str | None:
        """``uid`` of the answer."""
        return as_str(self.raw.get("uid"))

    @property
    def server_response(self) -> dict[str, Any]:
        """``serverResponse`` (empty when absent or malformed)."""
        value = self.raw.get("serverResponse")
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class RecordingReport(Answer):
    """A query or stop answer: status, files, and web-mode service states."""

    @property
    def status(self) -> int | None:
        """``serverResponse.status`` (§1.7); 4 and 5 mean running."""
        return as_int(self.server_response.get("status"))

    @property
    def running(self) -> bool:
        """Agora's own test for "the recording started": status 4 or 5, or a web recorder in progress."""
        if self.status in RUNNING_STATUSES:
            return True
        return any(
            s.service_name == "web_recorder_service" and s.state == "inProgress" for s in self.services
        )

    @property
    def file_list_mode(self) -> str | None:
        """``"string"`` or ``"json"``."""
        return as_str(self.server_response.get("fileListMode"))

    @property
    def slice_start_time(self) -> int | None:
        """Recording start, Unix ms (individual mode)."""
        return as_int(self.server_response.get("sliceStartTime"))

    @property
    def services(self) -> list[ServiceState]:
        """Web mode's ``extensionServiceState``."""
        return parse_service_states(self.server_response.get("extensionServiceState"))

    @property
    def files(self) -> list[RecordedFile]:
        """Every file named in the answer, whichever shape it came in."""
        files = parse_files(self.server_response.get("fileList"))
        for service in self.services:
            files.extend(service.files)
        return files

    @property
    def uploading_status(self) -> str | None:
        """``uploaded``, ``backuped`` or ``unknown`` (stop answers; web mode reports it per service)."""
        value = as_str(self.server_response.get("uploadingStatus"))
        if value:
            return value
        for service in self.services:
            if service.uploading_status:
                return service.uploading_status
        return None
