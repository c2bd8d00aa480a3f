"""Recordings in Redis: creating them (idempotently), commands from the API, reads for the API, the lock,
and the fenced save.

The web never rewrites a recording a worker may be advancing: it creates new ones (one atomic script: the
``Idempotency-Key`` claim, the document, the indexes and the first timer), and for existing ones it appends a
command (stop, update, layout) to ``acr:rec:<id>:commands`` and wakes the recording; the step applies the
commands under the recording's lock and drops them in the same atomic save. A step saves only while it
still holds the lock (:data:`workers.core.scripts.SAVE_RECORDING` compares the lock's token in the same script that writes).
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import time
from typing import Annotated, Any, cast

import msgspec
import redis

from workers.agora import (
    AgoraRequestError,
    StartClientRequest,
    UpdateClientRequest,
    UpdateLayoutClientRequest,
    from_json_dict,
)
from workers.agora.bodies import MODES, Mode, check_cname, check_uid, storage_from_settings
from workers.core import schema, scripts
from workers.core.config import Settings
from workers.core.deadletters import now_ms
from workers.core.redact import redact
from workers.recordings.admission import capacity_class, queue_score
from workers.recordings.model import PRIORITIES, RECORDING_ID, Recording, decode, encode, new_id
from workers.recordings.timers import wake

IDEMPOTENCY_TTL = 24 * 3600
MAX_LIST = 200
#: Index entries one listing request looks at; a filter that skips more answers a shorter page and a
#: ``nextCursor`` to go on from (a ``?cname=`` that matches nothing never scans the whole index).
MAX_LIST_SCAN = 1_000
MAX_DURATION_SECONDS = 30 * 24 * 3600
#: A recording restarts after an abnormal end at most ``maxRestarts`` times (default, and the largest accepted).
DEFAULT_MAX_RESTARTS = 5
MAX_RESTARTS_LIMIT = 100

#: Bounds of every JSON value the API accepts (bodies of create, update and layout). Agora's own structures
#: nest at most 5 levels, hold at most 32 uids per list and 17 layout windows; tokens are a few hundred
#: characters, STS tokens a few thousand.
MAX_JSON_DEPTH = 10
MAX_JSON_ITEMS = 64
MAX_JSON_STRING = 4096
MAX_JSON_KEY = 128
MAX_JSON_INTEGER = 2**53 - 1  # what every JSON reader keeps exact
MAX_CNAME_CHARS = 1024
MAX_TOKEN_CHARS = 2048
MAX_UID_CHARS = 10

_CONFIG_FIELDS = ("recordingConfig", "recordingFileConfig", "snapshotConfig", "web", "storage")


class RecordingSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /v1/recordings``; :func:`build_request` checks everything the types do not."""

    cname: Annotated[str, msgspec.Meta(max_length=MAX_CNAME_CHARS)]
    mode: Annotated[str, msgspec.Meta(max_length=16)]
    uid: Annotated[str, msgspec.Meta(max_length=MAX_UID_CHARS)] | None = None
    token: Annotated[str, msgspec.Meta(max_length=MAX_TOKEN_CHARS)] | None = None
    recordingConfig: dict[str, Any] | None = None  # noqa: N815 (the API's JSON names)
    recordingFileConfig: dict[str, Any] | None = None  # noqa: N815
    snapshotConfig: dict[str, Any] | None = None  # noqa: N815
    web: dict[str, Any] | None = None
    storage: dict[str, Any] | None = None
    maxDurationSeconds: int | None = None  # noqa: N815
    maxRestarts: int | None = None  # noqa: N815
    priority: str | None = None


def check_json_bounds(value: Any, field: str = "", max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse, naming the first offending field, a JSON value that nests deeper than ``max_depth`` objects
    and lists, or holds an object or list larger than :data:`MAX_JSON_ITEMS`, a string longer than
    :data:`MAX_JSON_STRING` (or not encodable as UTF-8: a lone surrogate), a field name longer than
    :data:`MAX_JSON_KEY`, or an integer beyond ±2^53-1. Iterative: any depth is safe to look at."""
    stack: list[tuple[Any, str, int]] = [(value, field, 0)]
    while stack:
        item, path, depth = stack.pop()
        where = path or "body"
        if isinstance(item, dict | list):
            if depth >= max_depth:
                raise AgoraRequestError(where, f"nests deeper than {max_depth} levels")
            if len(item) > MAX_JSON_ITEMS:
                kind = "fields" if isinstance(item, dict) else "items"
                raise AgoraRequestError(where, f"holds more than {MAX_JSON_ITEMS} {kind}")
            children: list[tuple[Any, str, int]] = []
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str) or len(key) > MAX_JSON_KEY or not _encodable(key):
                        raise AgoraRequestError(
                            where,
                            f"has a field name longer than {MAX_JSON_KEY} characters or not valid Unicode",
                        )
                    children.append((child, f"{path}.{key}" if path else key, depth + 1))
            else:
                children = [(child, f"{where}[{index}]", depth + 1) for index, child in enumerate(item)]
            stack.extend(reversed(children))  # depth first, in document order: the first fault is named
        elif isinstance(item, str):
            if len(item) > MAX_JSON_STRING:
                raise AgoraRequestError(where, f"is longer than {MAX_JSON_STRING} characters")
            if not _encodable(item):
                raise AgoraRequestError(where, "is not valid Unicode (lone surrogate)")
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not -MAX_JSON_INTEGER <= item <= MAX_JSON_INTEGER:
                raise AgoraRequestError(where, f"is out of range (at most {MAX_JSON_INTEGER} in magnitude)")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise AgoraRequestError(where, "must be a finite number")
        else:
            raise AgoraRequestError(where, f"is not a JSON value ({type(item).__name__})")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_text(field: str, value: str | None, max_chars: int) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise AgoraRequestError(field, "must be a string")
    if len(value) > max_chars:
        raise AgoraRequestError(field, f"must be at most {max_chars} characters")
    if not _encodable(value):
        raise AgoraRequestError(field, "is not valid Unicode (lone surrogate)")


def _check_int(field: str, value: int | None, low: int, high: int, note: str = "") -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high
    ):
        raise AgoraRequestError(field, f"must be an integer from {low} to {high}{note}")


def api_field(field: str) -> str:
    """An Agora wire path as the API's field name (``clientRequest.storageConfig.x`` -> ``storage.x``)."""
    field = field.removeprefix("clientRequest.").removeprefix("clientRequest")
    if field.startswith("storageConfig"):
        return "storage" + field.removeprefix("storageConfig")
    if field.startswith("extensionServiceConfig"):
        if ".extensionServices[1]" in field:  # the RTMP publisher built from web.rtmpUrls
            return "web.rtmpUrls" + ("[0]" if ".outputs[0]" in field else "")
        rest = field.split(".serviceParam", 1)
        return "web" + (rest[1] if len(rest) == 2 else "")
    return field or "body"


def build_request(spec: RecordingSpec, settings: Settings) -> tuple[dict[str, Any], int]:
    """The start ``clientRequest`` and the acquire scene for a spec; AgoraRequestError names the API field.

    Checks every bound before anything is stored: callers that build a spec in code get what the API gets."""
    if not isinstance(spec.mode, str) or spec.mode not in MODES:
        raise AgoraRequestError("mode", f"must be one of {', '.join(MODES)}")
    mode: Mode = spec.mode  # narrowed by the membership test above
    _check_text("cname", spec.cname, MAX_CNAME_CHARS)
    check_cname("cname", spec.cname, mode)
    if spec.uid is not None:
        _check_text("uid", spec.uid, MAX_UID_CHARS)
        check_uid("uid", spec.uid)
    _check_text("token", spec.token, MAX_TOKEN_CHARS)
    _check_int("maxDurationSeconds", spec.maxDurationSeconds, 1, MAX_DURATION_SECONDS, " (30 days)")
    _check_int("maxRestarts", spec.maxRestarts, 0, MAX_RESTARTS_LIMIT)
    if spec.priority is not None and spec.priority not in PRIORITIES:
        raise AgoraRequestError("priority", f"must be one of {', '.join(PRIORITIES)}")
    for name in _CONFIG_FIELDS:
        config = getattr(spec, name)
        if config is not None:
            if not isinstance(config, dict):
                raise AgoraRequestError(name, "must be a JSON object")
            check_json_bounds(config, name, MAX_JSON_DEPTH - 1)
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
            if not isinstance(rtmp_urls[0], str):
                raise AgoraRequestError("web.rtmpUrls[0]", "must be an rtmp:// or rtmps:// URL")
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


def fingerprint(spec: RecordingSpec) -> str:
    """A stable digest of a request body (same body, same digest, whatever the key order)."""
    canonical = json.dumps(msgspec.to_builtins(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def idempotency_key(scope: str, key: str) -> str:
    """The Redis key of an ``Idempotency-Key`` as used by one API token (keys never cross tokens)."""
    return schema.idempotency(hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()[:40])


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
        max_restarts=DEFAULT_MAX_RESTARTS if spec.maxRestarts is None else spec.maxRestarts,
        priority="high" if spec.priority == "high" else "normal",
        created_ms=now,
        updated_ms=now,
        wake_at_ms=now,
    )
    digest = fingerprint(spec)
    entry = {"ts": now, "kind": "api", "what": "created", "mode": spec.mode, "cname": spec.cname}
    found_id, found_digest = (
        item.decode() if isinstance(item, bytes) else str(item)
        for item in cast(
            list[bytes],
            scripts.CREATE_RECORDING(
                connection,
                keys=[
                    idempotency_key(scope, idempotency) if idempotency else "",
                    schema.recording(recording_id),
                    schema.recording_timeline(recording_id),
                    schema.RECORDINGS_INDEX,
                    schema.ACTIVE_RECORDINGS,
                    schema.TIMERS,
                    schema.admission_queue(capacity_class(recording.mode)),
                    schema.ADMISSION_SEQUENCE,
                ],
                args=[
                    recording_id,
                    digest,
                    encode(recording),
                    now * 1000 + secrets.randbelow(1000),
                    now,
                    msgspec.json.encode(entry),
                    IDEMPOTENCY_TTL,
                    queue_score(recording.priority, 0),
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
    raw = connection.get(schema.recording(recording_id))
    return decode(raw) if isinstance(raw, bytes) else None


#: At most this many changes (update, layout) wait for a worker per recording; a stop always gets in.
MAX_PENDING_COMMANDS = 100
STOP_ASKED_TTL = 3600


class TooManyCommandsError(Exception):
    """The recording's command list is full (workers are behind, or a client floods it)."""


def send_command(connection: redis.Redis, recording_id: str, command: dict[str, Any]) -> None:
    """Append a command for the recording and wake it to apply it. A stop is appended once (repeated stops
    add nothing); other commands raise TooManyCommandsError beyond MAX_PENDING_COMMANDS waiting."""
    commands = schema.recording_commands(recording_id)
    entry = msgspec.json.encode({"ts": int(time.time() * 1000), "kind": "api", "what": command["op"]})
    if command["op"] == "stop":  # the flag and the command in one step: a stop is never half-queued
        scripts.QUEUE_STOP(
            connection,
            keys=[
                schema.recording_stop_asked(recording_id),
                commands,
                schema.recording_timeline(recording_id),
            ],
            args=[msgspec.json.encode(command), STOP_ASKED_TTL, entry],
        )
    else:
        if int(connection.llen(commands)) >= MAX_PENDING_COMMANDS:
            raise TooManyCommandsError(recording_id)
        pipe = connection.pipeline(transaction=True)
        pipe.rpush(commands, msgspec.json.encode(command))
        pipe.rpush(schema.recording_timeline(recording_id), entry)
        pipe.execute()
    wake(connection, recording_id)


def check_change(recording: Recording, kind: str, body: Any) -> dict[str, Any]:
    """An update or layout body, checked for the recording's mode; AgoraRequestError names the field."""
    if not isinstance(body, dict):
        raise AgoraRequestError("body", "must be a JSON object")
    check_json_bounds(body)
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
    raw = cast(list[bytes], connection.lrange(schema.recording_commands(recording_id), 0, -1))
    return [msgspec.json.decode(item) for item in raw]


def list_recordings(
    connection: redis.Redis, *, state: str | None, cname: str | None, limit: int, cursor: int | None
) -> tuple[list[Recording], int | None]:
    """Newest first, filtered; ``cursor`` is the score to continue below. Looks at most at
    :data:`MAX_LIST_SCAN` index entries: a filter that skips more gets a shorter page and a cursor."""
    found: list[Recording] = []
    upper: float | str = f"({cursor}" if cursor is not None else "+inf"
    scanned = 0
    while True:
        batch = cast(
            list[tuple[bytes, float]],
            connection.zrevrangebyscore(
                schema.RECORDINGS_INDEX, upper, "-inf", start=0, num=100, withscores=True
            ),
        )
        if not batch:
            return found, None
        documents = cast(
            list[bytes | None], connection.mget([schema.recording(member.decode()) for member, _ in batch])
        )
        for (_member, score), raw in zip(batch, documents, strict=True):
            scanned += 1
            upper = f"({int(score)}"
            recording = decode(raw) if isinstance(raw, bytes) else None
            if (
                recording is None
                or (state and recording.state != state)
                or (cname and recording.cname != cname)
            ):
                continue
            found.append(recording)
            if len(found) == limit:
                return found, int(score)
        if scanned >= MAX_LIST_SCAN:
            return found, int(batch[-1][1])


#: A recording's timeline keeps its newest entries, at most this many: every writer trims to it (the step's
#: save, :func:`append_timeline`).
TIMELINE_CAP = 2000


def append_timeline(connection: redis.Redis, recording_id: str, entry: dict[str, Any]) -> bool:
    """Add an entry (redacted, with ``ts``) to a recording's timeline outside a step (dead letters,
    notifications); False when the recording is unknown."""
    if not RECORDING_ID.fullmatch(recording_id):
        return False
    entry = {"ts": now_ms(), **entry}
    return bool(
        scripts.APPEND_TIMELINE(
            connection,
            keys=[schema.recording(recording_id), schema.recording_timeline(recording_id)],
            args=[msgspec.json.encode(redact(entry)), TIMELINE_CAP],
        )
    )


def timeline(connection: redis.Redis, recording_id: str) -> list[dict[str, Any]]:
    """API calls, Agora calls and transitions, oldest first."""
    return [
        msgspec.json.decode(item)
        for item in connection.lrange(schema.recording_timeline(recording_id), 0, -1)
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
        list[bytes], connection.zrangebyscore(schema.RECORDINGS_INDEX, "-inf", older_than, start=0, num=batch)
    )
    if not candidates:
        return 0
    pipe = connection.pipeline(transaction=False)
    for member in candidates:
        pipe.exists(schema.recording(member.decode()))
    gone = [m for m, exists in zip(candidates, pipe.execute(), strict=True) if not exists]
    if gone:
        connection.zrem(schema.RECORDINGS_INDEX, *gone)
    return len(gone)


def trim_sessions_index(connection: redis.Redis, retention_seconds: int, now_ms: int | None = None) -> int:
    """Drop sessions from ``acr:sessions`` whose last callback is older than the retention (their keys have
    expired with it)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    return int(connection.zremrangebyscore(schema.SESSIONS_INDEX, "-inf", now_ms - retention_seconds * 1000))
