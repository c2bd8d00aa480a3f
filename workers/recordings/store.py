"""Recordings in Redis: creating them (idempotently), commands from the API, reads for the API, the lock,
and the fenced save.

The web never rewrites a recording a worker may be advancing: it creates new ones (one atomic script: the
``Idempotency-Key`` claim, the document, the indexes and the first timer), and for existing ones it appends a
command (stop, update, layout) to ``acr:rec:<id>:commands`` and wakes the recording; the step applies the
commands under the recording's lock and drops them in the same atomic save. A step saves only while it
still holds the lock (:data:`SAVE_LUA` compares the lock's token in the same script that writes).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any, cast

import msgspec
import redis

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
from workers.recordings.model import Recording, decode, encode, new_id
from workers.recordings.timers import wake

IDEMPOTENCY_TTL = 24 * 3600
MAX_LIST = 200
MAX_DURATION_SECONDS = 30 * 24 * 3600


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
    if spec.maxDurationSeconds is not None and not 1 <= spec.maxDurationSeconds <= MAX_DURATION_SECONDS:
        raise AgoraRequestError("maxDurationSeconds", f"must be 1 to {MAX_DURATION_SECONDS} (30 days)")
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


class IdempotencyConflictError(Exception):
    """The ``Idempotency-Key`` was used before with another body."""

    def __init__(self, recording_id: str) -> None:
        super().__init__(f"this Idempotency-Key was used for another request (recording {recording_id})")
        self.recording_id = recording_id


# KEYS: idempotency key (or ""), document, timeline, listing index, active index, timers
# ARGV: id, fingerprint, document, listing score, now ms, timeline entry, idempotency ttl
# Answers {id, fingerprint}: ours when created, the first request's when the key was used before.
CREATE_LUA = """
if KEYS[1] ~= '' then
  local held = redis.call('GET', KEYS[1])
  if held then
    local sep = string.find(held, ' ', 1, true)
    return {string.sub(held, 1, sep - 1), string.sub(held, sep + 1)}
  end
  redis.call('SET', KEYS[1], ARGV[1] .. ' ' .. ARGV[2], 'EX', ARGV[7])
end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('RPUSH', KEYS[3], ARGV[6])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[1])
redis.call('ZADD', KEYS[6], ARGV[5], ARGV[1])
return {ARGV[1], ARGV[2]}
"""


def fingerprint(spec: RecordingSpec) -> str:
    """A stable digest of a request body (same body, same digest, whatever the key order)."""
    canonical = json.dumps(msgspec.to_builtins(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def idempotency_key(scope: str, key: str) -> str:
    """The Redis key of an ``Idempotency-Key`` as used by one API token (keys never cross tokens)."""
    return keys.idempotency(hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()[:40])


def create_recording(
    connection: redis.Redis,
    settings: Settings,
    spec: RecordingSpec,
    idempotency: str | None = None,
    scope: str = "",
) -> tuple[Recording, bool]:
    """Store a new recording and wake it, in one atomic step with the ``Idempotency-Key`` claim; with a key
    used before for the same body, the first recording (False). IdempotencyConflictError for another body."""
    request, scene = build_request(spec, settings)
    recording_id = new_id()
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
        wake_at_ms=now,
    )
    digest = fingerprint(spec)
    entry = {"ts": now, "kind": "api", "what": "created", "mode": spec.mode, "cname": spec.cname}
    found_id, found_digest = (
        item.decode() if isinstance(item, bytes) else str(item)
        for item in cast(
            list[bytes],
            connection.register_script(CREATE_LUA)(
                keys=[
                    idempotency_key(scope, idempotency) if idempotency else "",
                    keys.recording(recording_id),
                    keys.recording_timeline(recording_id),
                    keys.RECORDINGS_INDEX,
                    keys.ACTIVE_RECORDINGS,
                    keys.TIMERS,
                ],
                args=[
                    recording_id,
                    digest,
                    encode(recording),
                    now * 1000 + secrets.randbelow(1000),
                    now,
                    msgspec.json.encode(entry),
                    IDEMPOTENCY_TTL,
                ],
            ),
        )
    )
    if found_id != recording_id:
        if found_digest != digest:
            raise IdempotencyConflictError(found_id)
        existing = load(connection, found_id)
        if existing is None:  # the first one expired with its retention: the key is spent
            raise IdempotencyConflictError(found_id)
        return existing, False
    wake(connection, recording_id)
    return recording, True


def load(connection: redis.Redis, recording_id: str) -> Recording | None:
    """A recording, or None."""
    raw = connection.get(keys.recording(recording_id))
    return decode(raw) if isinstance(raw, bytes) else None


def send_command(connection: redis.Redis, recording_id: str, command: dict[str, Any]) -> None:
    """Append a command for the recording and wake it to apply it."""
    pipe = connection.pipeline(transaction=True)
    pipe.rpush(keys.recording_commands(recording_id), msgspec.json.encode(command))
    pipe.rpush(
        keys.recording_timeline(recording_id),
        msgspec.json.encode({"ts": int(time.time() * 1000), "kind": "api", "what": command["op"]}),
    )
    pipe.execute()
    wake(connection, recording_id)


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
    """Every waiting command, oldest first, left in place until the save that applied them drops them."""
    raw = cast(list[bytes], connection.lrange(keys.recording_commands(recording_id), 0, -1))
    return [msgspec.json.decode(item) for item in raw]


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


def trim_listing(
    connection: redis.Redis, retention_seconds: int, now_ms: int | None = None, batch: int = 200
) -> int:
    """Drop listing entries whose recording document expired (it expires ``retention_seconds`` after the
    recording ended). Only entries older than the retention are looked at, and an entry goes only when its
    document is gone: a recording running for longer than that stays listed. Returns how many went."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    older_than = (now_ms - retention_seconds * 1000) * 1000
    candidates = cast(
        list[bytes], connection.zrangebyscore(keys.RECORDINGS_INDEX, "-inf", older_than, start=0, num=batch)
    )
    if not candidates:
        return 0
    pipe = connection.pipeline(transaction=False)
    for member in candidates:
        pipe.exists(keys.recording(member.decode()))
    gone = [m for m, exists in zip(candidates, pipe.execute(), strict=True) if not exists]
    if gone:
        connection.zrem(keys.RECORDINGS_INDEX, *gone)
    return len(gone)


def trim_sessions_index(connection: redis.Redis, retention_seconds: int, now_ms: int | None = None) -> int:
    """Drop sessions from ``acr:sessions`` whose last callback is older than the retention (their keys have
    expired with it)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return int(connection.zremrangebyscore(keys.SESSIONS_INDEX, "-inf", now_ms - retention_seconds * 1000))
