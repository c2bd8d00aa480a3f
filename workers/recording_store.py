"""Creating recordings, handing them commands, listing them: what the web process may do to a recording.

The web never rewrites a recording a worker may be advancing: it creates new ones, and for existing ones it
appends a command (stop, update, layout) to ``acr:rec:<id>:commands`` and queues ``advance``, which applies
the commands under the recording's lock. So an API call and a worker never lose each other's changes.
"""

from __future__ import annotations

import secrets
import time
from datetime import timedelta
from typing import Any, cast

import msgspec
import redis
from rq import Queue

from workers import keys
from workers.agora import (
    AgoraRequestError,
    StartClientRequest,
    UpdateClientRequest,
    UpdateLayoutClientRequest,
    from_json_dict,
)
from workers.agora.bodies import MODES, Mode, check_cname, check_uid, storage_from_settings
from workers.config import Settings
from workers.recordings import Recording, decode, encode, new_id

IDEMPOTENCY_TTL = 24 * 3600
MAX_LIST = 200


def commands_key(recording_id: str) -> str:
    """Commands for a recording, oldest first (list of JSON objects)."""
    return f"{keys.recording(recording_id)}:commands"


class RecordingSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/recordings``."""

    cname: str
    mode: str
    uid: str | None = None
    token: str | None = None
    recordingConfig: dict[str, Any] | None = None  # noqa: N815 (the API's JSON names)
    recordingFileConfig: dict[str, Any] | None = None  # noqa: N815
    snapshotConfig: dict[str, Any] | None = None  # noqa: N815
    web: dict[str, Any] | None = None
    storage: dict[str, Any] | None = None
    maxDurationSeconds: int | None = None  # noqa: N815


def api_field(field: str) -> str:
    """An Agora wire path as the API's field name (``clientRequest.storageConfig.x`` -> ``storage.x``)."""
    field = field.removeprefix("clientRequest.").removeprefix("clientRequest")
    if field.startswith("storageConfig"):
        return "storage" + field.removeprefix("storageConfig")
    if field.startswith("extensionServiceConfig"):
        rest = field.split(".serviceParam", 1)
        return "web" + (rest[1] if len(rest) == 2 else "")
    return field or "body"


def build_request(spec: RecordingSpec, settings: Settings) -> tuple[dict[str, Any], int]:
    """The start ``clientRequest`` and the acquire scene for a spec; AgoraRequestError names the API field."""
    if spec.mode not in MODES:
        raise AgoraRequestError("mode", f"must be one of {', '.join(MODES)}")
    mode: Mode = spec.mode  # narrowed by the membership test above
    check_cname("cname", spec.cname, mode)
    if spec.uid is not None:
        check_uid("uid", spec.uid)
    if spec.maxDurationSeconds is not None and spec.maxDurationSeconds < 1:
        raise AgoraRequestError("maxDurationSeconds", "must be at least 1")
    storage = spec.storage
    if storage is None:
        default = storage_from_settings(settings)
        if default is None:
            raise AgoraRequestError("storage", "no storage given and no AGORA_STORAGE_* default configured")
        storage = default.to_json()
    request: dict[str, Any] = {"storageConfig": storage}
    if spec.token:
        request["token"] = spec.token
    if spec.mode == "web":
        if spec.web is None:
            raise AgoraRequestError("web", "is required in web mode (at least web.url)")
        for name in ("recordingConfig", "snapshotConfig"):
            if getattr(spec, name) is not None:
                raise AgoraRequestError(name, "is not used in web mode")
        params = {k: v for k, v in spec.web.items() if k != "rtmpUrls"}
        services: list[dict[str, Any]] = [
            {
                "serviceName": "web_recorder_service",
                "errorHandlePolicy": "error_abort",
                "serviceParam": {"maxRecordingHour": 72, **params},
            }
        ]
        rtmp_urls = spec.web.get("rtmpUrls")
        if rtmp_urls:
            if not isinstance(rtmp_urls, list) or len(rtmp_urls) != 1:
                raise AgoraRequestError(
                    "web.rtmpUrls", "holds exactly one RTMP URL (Agora pushes to one CDN at a time)"
                )
            services.append(
                {
                    "serviceName": "rtmp_publish_service",
                    "errorHandlePolicy": "error_ignore",
                    "serviceParam": {"outputs": [{"rtmpUrl": rtmp_urls[0]}]},
                }
            )
        request["extensionServiceConfig"] = {
            "errorHandlePolicy": "error_abort",
            "extensionServices": services,
        }
    else:
        if spec.web is not None:
            raise AgoraRequestError("web", "is only used in web mode")
        request["recordingConfig"] = (
            spec.recordingConfig if spec.recordingConfig is not None else {"channelType": 0}
        )
        if spec.snapshotConfig is not None:
            request["snapshotConfig"] = spec.snapshotConfig
    if spec.recordingFileConfig is not None:
        request["recordingFileConfig"] = spec.recordingFileConfig
    try:
        typed = from_json_dict(StartClientRequest, request, "clientRequest")
        typed.check("clientRequest", mode)
    except AgoraRequestError as exc:
        raise AgoraRequestError(api_field(exc.field), exc.reason) from None
    return typed.to_json(), 1 if spec.mode == "web" else 0


def create_recording(
    connection: redis.Redis, settings: Settings, spec: RecordingSpec, idempotency_key: str | None = None
) -> tuple[Recording, bool]:
    """Store a new recording and queue its first step; with an idempotency key already used, the old one."""
    request, scene = build_request(spec, settings)
    recording_id = new_id()
    if idempotency_key:
        claimed = connection.set(keys.idempotency(idempotency_key), recording_id, nx=True, ex=IDEMPOTENCY_TTL)
        if not claimed:
            existing = connection.get(keys.idempotency(idempotency_key))
            if isinstance(existing, bytes):
                found = load(connection, existing.decode())
                if found is not None:
                    return found, False
    now = int(time.time() * 1000)
    recording = Recording(
        id=recording_id,
        cname=spec.cname,
        mode=cast(Mode, spec.mode),
        uid=spec.uid or str(secrets.randbelow(2**31) + 100_000),
        request=request,
        scene=scene,
        max_duration_seconds=spec.maxDurationSeconds,
        created_ms=now,
        updated_ms=now,
        stop_at_ms=now + int(spec.maxDurationSeconds * 1000 * settings.recording_time_scale)
        if spec.maxDurationSeconds
        else None,
    )
    pipe = connection.pipeline(transaction=True)
    pipe.set(keys.recording(recording_id), encode(recording))
    pipe.zadd(keys.RECORDINGS_INDEX, {recording_id: now * 1000 + secrets.randbelow(1000)})
    pipe.zadd(keys.ACTIVE_RECORDINGS, {recording_id: now})
    pipe.rpush(
        keys.recording_timeline(recording_id),
        msgspec.json.encode(
            {"ts": now, "kind": "api", "what": "created", "mode": spec.mode, "cname": spec.cname}
        ),
    )
    pipe.execute()
    queue_advance(connection, recording_id)
    if spec.maxDurationSeconds is not None:
        queue_advance(connection, recording_id, spec.maxDurationSeconds * settings.recording_time_scale)
    return recording, True


def load(connection: redis.Redis, recording_id: str) -> Recording | None:
    """A recording, or None."""
    raw = connection.get(keys.recording(recording_id))
    return decode(raw) if isinstance(raw, bytes) else None


def send_command(connection: redis.Redis, recording_id: str, command: dict[str, Any]) -> None:
    """Append a command for the recording and queue ``advance`` to apply it."""
    pipe = connection.pipeline(transaction=True)
    pipe.rpush(commands_key(recording_id), msgspec.json.encode(command))
    pipe.rpush(
        keys.recording_timeline(recording_id),
        msgspec.json.encode({"ts": int(time.time() * 1000), "kind": "api", "what": command["op"]}),
    )
    pipe.execute()
    queue_advance(connection, recording_id)


def check_change(recording: Recording, kind: str, body: Any) -> dict[str, Any]:
    """An update or layout body, checked for the recording's mode; AgoraRequestError names the field."""
    if not isinstance(body, dict):
        raise AgoraRequestError("body", "must be a JSON object")
    try:
        if kind == "layout":
            if recording.mode != "mix":
                raise AgoraRequestError("mode", "layouts exist only in mix mode")
            layout = from_json_dict(UpdateLayoutClientRequest, body)
            layout.check("body")
            return layout.to_json()
        update = from_json_dict(UpdateClientRequest, body)
        update.check("body", recording.mode)
        return update.to_json()
    except AgoraRequestError as exc:
        raise AgoraRequestError(
            exc.field.removeprefix("body.").removeprefix("body") or "body", exc.reason
        ) from None


def peek_commands(connection: redis.Redis, recording_id: str) -> list[dict[str, Any]]:
    """Every waiting command, oldest first, left in place until :func:`drop_commands` (after the save)."""
    raw = cast(list[bytes], connection.lrange(commands_key(recording_id), 0, -1))
    return [msgspec.json.decode(item) for item in raw]


def drop_commands(connection: redis.Redis, recording_id: str, count: int) -> None:
    """Remove the ``count`` oldest commands (applied and saved); newer ones stay for the next step."""
    if count:
        connection.ltrim(commands_key(recording_id), count, -1)


def list_recordings(
    connection: redis.Redis, *, state: str | None, cname: str | None, limit: int, cursor: int | None
) -> tuple[list[Recording], int | None]:
    """Newest first, filtered; ``cursor`` is the score to continue below."""
    found: list[Recording] = []
    upper: float | str = f"({cursor}" if cursor is not None else "+inf"
    next_cursor: int | None = None
    while len(found) < limit:
        batch = cast(
            list[tuple[bytes, float]],
            connection.zrevrangebyscore(
                keys.RECORDINGS_INDEX, upper, "-inf", start=0, num=100, withscores=True
            ),
        )
        if not batch:
            next_cursor = None
            break
        for member, score in batch:
            recording = load(connection, member.decode())
            upper = f"({int(score)}"
            if (
                recording is None
                or (state and recording.state != state)
                or (cname and recording.cname != cname)
            ):
                continue
            found.append(recording)
            if len(found) == limit:
                next_cursor = int(score)
                break
    return found, next_cursor


def timeline(connection: redis.Redis, recording_id: str) -> list[dict[str, Any]]:
    """API calls, Agora calls and transitions, oldest first."""
    return [
        msgspec.json.decode(item) for item in connection.lrange(keys.recording_timeline(recording_id), 0, -1)
    ]


#: The orchestration job, by name: the orchestrator imports this module, so not the other way round.
ADVANCE = "workers.orchestrator.advance"


def queue_advance(connection: redis.Redis, recording_id: str, delay_seconds: float = 0.0) -> None:
    """Queue one orchestration step for a recording, now or after ``delay_seconds`` (real seconds)."""
    queue = Queue(keys.DEFAULT_QUEUE, connection=connection)
    if delay_seconds < 0.01:
        queue.enqueue(ADVANCE, recording_id, result_ttl=0, failure_ttl=86400)
    else:
        queue.enqueue_in(
            timedelta(seconds=delay_seconds), ADVANCE, recording_id, result_ttl=0, failure_ttl=86400
        )
