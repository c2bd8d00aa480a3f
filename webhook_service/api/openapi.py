"""``GET /openapi.json``: an OpenAPI 3.1 description of every route the web process serves.

Every answer a route gives is described, errors included (``{"error": {"code", "message", "field"?}}``), and
every input has its bounds (``minimum``/``maximum``/``maxLength``/``maxItems``/``pattern``): the tests run
Schemathesis against this document and check each answer against it (``tests/integration/test_schemathesis.py``).

Agora's own structures (``recordingConfig``, ``storage``, the update and layout bodies) are described from the
typed bodies the API converts them to (``workers/agora/bodies.py``), with the API's generic bounds added.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec
from flask import Blueprint, Response, jsonify

from webhook_service.api.recordings import MAX_BODY_BYTES, MAX_CURSOR, MAX_IDEMPOTENCY_KEY
from webhook_service.api.sessions import SID
from workers import deadletters
from workers.agora import (
    RecordingConfig,
    RecordingFileConfig,
    ServiceParam,
    SnapshotConfig,
    StorageConfig,
    UpdateClientRequest,
    UpdateLayoutClientRequest,
)
from workers.ncs import MAX_PAYLOAD_DEPTH
from workers.recordings import (
    MAX_CNAME_CHARS,
    MAX_DURATION_SECONDS,
    MAX_JSON_DEPTH,
    MAX_JSON_INTEGER,
    MAX_JSON_ITEMS,
    MAX_JSON_STRING,
    MAX_LIST,
    MAX_LIST_SCAN,
    MAX_RESTARTS_LIMIT,
    MAX_TOKEN_CHARS,
    RECORDING_ID,
    WEBHOOK_ID,
    Desired,
    SessionOutcome,
    State,
)

bp = Blueprint("openapi", __name__)

JSON = "application/json"
_REF = "#/components/schemas/{name}"
_ERROR = {"$ref": "#/components/schemas/Error"}
_RECORDING = {"$ref": "#/components/schemas/Recording"}
_OBJECT: dict[str, Any] = {"type": "object"}
_BOUNDS = (
    f"Every value inside nests at most {MAX_JSON_DEPTH} levels from the body, objects and lists hold at most "
    f"{MAX_JSON_ITEMS} entries, strings at most {MAX_JSON_STRING} characters, integers at most "
    f"{MAX_JSON_INTEGER} in magnitude."
)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _answer(description: str, schema: dict[str, Any] | None = None, media: str = JSON) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if schema is not None:
        answer["content"] = {media: {"schema": schema}}
    return answer


def _error(description: str) -> dict[str, Any]:
    return _answer(description, _ERROR)


def _bounded(schema: Any) -> Any:
    """A copy of a generated JSON Schema with the API's generic bounds on every string, array, object and
    integer that has none of its own."""
    schema = copy.deepcopy(schema)
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        if kind == "string":
            node.setdefault("maxLength", MAX_JSON_STRING)
        elif kind == "array":
            node.setdefault("maxItems", MAX_JSON_ITEMS)
        elif kind == "object":
            node.setdefault("maxProperties", MAX_JSON_ITEMS)
        elif kind == "integer":
            node.setdefault("minimum", -MAX_JSON_INTEGER)
            node.setdefault("maximum", MAX_JSON_INTEGER)
        node.pop("title", None)
        stack.extend(v for k, v in node.items() if k not in ("default", "description", "examples"))
    return schema


def _agora_components() -> dict[str, Any]:
    """JSON Schemas of Agora's typed bodies, named as ``#/components/schemas/<StructName>``."""
    _, components = msgspec.json.schema_components(
        [
            RecordingConfig,
            RecordingFileConfig,
            SnapshotConfig,
            StorageConfig,
            ServiceParam,
            UpdateClientRequest,
            UpdateLayoutClientRequest,
        ],
        ref_template=_REF,
    )
    components = _bounded(components)
    # The API's ``web``: the web recorder's serviceParam, plus ``rtmpUrls`` (one CDN push URL).
    web = copy.deepcopy(components.pop("ServiceParam"))
    web["properties"].pop("outputs", None)
    web["properties"]["url"] = {"type": "string", "maxLength": 1024, "description": "the page to record"}
    web["properties"]["rtmpUrls"] = {
        "type": "array",
        "items": {"type": "string", "maxLength": 1024},
        "maxItems": 1,
        "description": "one rtmp:// or rtmps:// URL to push the recording to (the stream key is never shown back)",
    }
    web["required"] = ["url"]
    web["description"] = "web mode: the page and the web_recorder_service serviceParam fields"
    components["WebRecording"] = web
    return dict(sorted(components.items()))


def _recording_schemas() -> dict[str, Any]:
    nullable_int = {"type": ["integer", "null"]}
    nullable_str = {"type": ["string", "null"]}
    session = {
        "type": "object",
        "required": ["resourceId", "sid", "uid", "outcome"],
        "properties": {
            "resourceId": {"type": "string"},
            "sid": nullable_str,
            "uid": {
                "type": "string",
                "description": "the recorder uid now (after an HA failover: the new one)",
            },
            "originalUid": {"type": "string"},
            "acquiredMs": nullable_int,
            "startedMs": nullable_int,
            "confirmedMs": nullable_int,
            "endedMs": nullable_int,
            "outcome": {"enum": [*(o.value for o in SessionOutcome), None]},
            "serviceStatus": nullable_int,
            "adopted": {"type": "boolean"},
        },
    }
    file = {
        "type": "object",
        "required": ["fileName", "sid", "status"],
        "properties": {
            "fileName": {"type": "string"},
            "sid": {"type": "string"},
            "status": {"enum": ["recorded", "backed_up", "uploaded"]},
            "trackType": nullable_str,
            "uid": nullable_str,
            "sliceStartTime": nullable_int,
            "source": {"type": "string"},
        },
    }
    recording = {
        "type": "object",
        "required": [
            "id",
            "cname",
            "mode",
            "state",
            "desiredState",
            "attempts",
            "restarts",
            "currentSession",
            "sessions",
            "files",
            "backedUpFiles",
            "uploadStuck",
            "lastError",
            "config",
        ],
        "properties": {
            "id": {"type": "string", "pattern": f"^{RECORDING_ID.pattern}$"},
            "cname": {"type": "string"},
            "mode": {"enum": ["individual", "mix", "web"]},
            "uid": {"type": "string"},
            "state": {"enum": [s.value for s in State]},
            "desiredState": {"enum": [d.value for d in Desired]},
            "reason": nullable_str,
            "attempts": {"type": "integer", "minimum": 0},
            "restarts": {"type": "integer", "minimum": 0},
            "createdMs": {"type": "integer"},
            "updatedMs": {"type": "integer"},
            "endedMs": nullable_int,
            "maxDurationSeconds": nullable_int,
            "maxRestarts": {"type": "integer", "minimum": 0},
            "priority": {"enum": ["high", "normal"]},
            "queuePosition": {
                **nullable_int,
                "description": "while queued for capacity: 1 = next to start (null when waiting on Agora's 406)",
            },
            "stopAtMs": nullable_int,
            "currentSession": _nullable({"$ref": "#/components/schemas/Session"}),
            "sessions": {"type": "array", "items": {"$ref": "#/components/schemas/Session"}},
            "files": {"type": "array", "items": {"$ref": "#/components/schemas/File"}},
            "backedUpFiles": {"type": "array", "items": {"type": "string"}},
            "filesInDoubt": {"type": "array", "items": {"type": "string"}},
            "uploadStuck": {"type": "boolean"},
            "lastError": {"type": ["object", "null"]},
            "nextWakeMs": nullable_int,
            "config": {"type": "object", "description": "the start clientRequest, credentials masked"},
        },
    }
    return {"Session": session, "File": file, "Recording": recording}


def _new_recording() -> dict[str, Any]:
    def config(name: str, description: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}", "description": description}

    return {
        "type": "object",
        "required": ["cname", "mode"],
        "additionalProperties": False,
        "description": _BOUNDS,
        "properties": {
            "cname": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_CNAME_CHARS,
                "description": "the channel: under 64 bytes of letters, digits, space and !#$%&()+-:;<=.>?@[]^_{|}~, "
                "(web mode: a task label of up to 1024 bytes)",
            },
            "mode": {"enum": ["individual", "mix", "web"]},
            "uid": {
                "type": "string",
                "pattern": "^[1-9][0-9]{0,9}$",
                "maxLength": 10,
                "description": "recorder uid, integer 1..4294967295 as a string (default: a random one)",
            },
            "token": {
                "type": "string",
                "maxLength": MAX_TOKEN_CHARS,
                "description": "RTC token (never shown back)",
            },
            "recordingConfig": config("RecordingConfig", "Agora's recordingConfig (individual, mix)"),
            "recordingFileConfig": config("RecordingFileConfig", 'e.g. {"avFileType": ["hls", "mp4"]}'),
            "snapshotConfig": config("SnapshotConfig", "individual mode screenshots"),
            "web": config("WebRecording", "web mode: url plus web_recorder_service serviceParam fields"),
            "storage": config("StorageConfig", "Agora's storageConfig; default from AGORA_STORAGE_*"),
            "maxDurationSeconds": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_DURATION_SECONDS,
                "description": "stop this long after the first start sent to Agora (at most 30 days), paused time included",
            },
            "maxRestarts": {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_RESTARTS_LIMIT,
                "description": "restarts after abnormal ends before the recording fails (default 5)",
            },
            "priority": {
                "enum": ["high", "normal"],
                "description": "when queued for capacity, high starts before normal (default normal)",
            },
        },
    }


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "additionalProperties": False,
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "pattern": "^[a-z_]+$"},
                "message": {"type": "string"},
                "field": {
                    "type": "string",
                    "description": "the input at fault, e.g. recordingConfig.maxIdleTime",
                },
            },
        }
    },
}

_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "a recording id (anything else is a 404)",
    "schema": {"type": "string", "pattern": f"^{RECORDING_ID.pattern}$"},
}
_SID = {
    "name": "sid",
    "in": "path",
    "required": True,
    "description": "an Agora session id (anything else is a 404)",
    "schema": {"type": "string", "pattern": f"^{SID.pattern}$", "maxLength": 133},
}
_LOCATION = {
    "Location": {"required": True, "schema": {"type": "string"}, "description": "the recording's URL"}
}

#: Answers every ``/v1`` operation can give.
_V1 = {
    "401": {
        **_error("missing or wrong bearer token"),
        "headers": {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    },
    "500": _error("a bug (logged with its traceback); never caused by what a client sends"),
    "503": _error("Redis unavailable; retry"),
}
_BODY_ERRORS = {
    "400": _error(
        "invalid input (malformed, nested too deeply, too large or out of range); `error.field` names it"
    ),
    "413": _error(f"body larger than {MAX_BODY_BYTES} bytes"),
    "415": _error("Content-Type is not application/json"),
}
_NOT_FOUND = {"404": _error("unknown id (or not in the id format)")}


def _operation(
    summary: str,
    answers: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    params: list[Any] | None = None,
) -> dict[str, Any]:
    responses = {**answers, **_V1}
    if body is not None:
        responses.update(_BODY_ERRORS)
    if params and any(p["in"] == "path" for p in params):
        responses.update(_NOT_FOUND)
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": dict(sorted(responses.items())),
        "security": [{"bearer": []}],
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    if params:
        operation["parameters"] = params
    return operation


def _accepted(description: str) -> dict[str, Any]:
    return {**_answer(description, _RECORDING), "headers": _LOCATION}


_CHANGE_ANSWERS = {
    "202": _accepted("queued; a worker applies it in order"),
    "409": _error("the recording is stopping or over"),
    "429": _error("too many changes wait for a worker already (at most 100); retry later"),
}

_NOTICE = {
    "type": "object",
    "required": ["noticeId", "productId", "eventType", "notifyMs", "payload"],
    "description": f"Agora's NCS envelope; the payload nests at most {MAX_PAYLOAD_DEPTH} levels",
    "properties": {
        "noticeId": {"type": ["string", "integer"]},
        "productId": {"type": "integer"},
        "eventType": {"type": "integer"},
        "notifyMs": {"type": "integer"},
        "payload": {"type": "object"},
    },
}

_EVENT = {
    "type": "object",
    "required": ["noticeId", "eventType", "msgName", "sid", "receivedMs", "details"],
    "description": "one callback, credentials masked",
    "properties": {
        "noticeId": {"type": "string"},
        "productId": {"type": "integer"},
        "eventType": {"type": "integer"},
        "msgName": {"type": "string"},
        "sid": {"type": ["string", "null"]},
        "cname": {"type": ["string", "null"]},
        "uid": {"type": ["string", "null"]},
        "sequence": {"type": ["integer", "null"]},
        "sendts": {"type": ["integer", "null"]},
        "notifyMs": {"type": "integer"},
        "serviceType": {"type": ["integer", "null"]},
        "receivedMs": {"type": "integer"},
        "details": {"type": "object"},
    },
}

_SESSION_SUMMARY = {
    "type": "object",
    "required": ["sid", "status", "events", "duplicates"],
    "properties": {
        "sid": {"type": "string"},
        "cname": {"type": ["string", "null"]},
        "uid": {"type": ["string", "null"]},
        "status": {"type": "string"},
        "exitStatus": {"type": ["integer", "null"]},
        "serviceStatus": {"type": ["integer", "null"]},
        "upload": {"type": ["string", "null"]},
        "uploadProgress": {"type": ["integer", "null"]},
        "lastError": {"type": ["object", "null"]},
        "events": {"type": "integer", "minimum": 0},
        "duplicates": {"type": "integer", "minimum": 0},
    },
}


_DEAD_LETTER = {
    "type": "object",
    "required": ["id", "kind", "reason", "atMs", "at", "retried"],
    "description": "something that failed for good, and what a retry needs (never a secret)",
    "properties": {
        "id": {"type": "string", "pattern": f"^{deadletters.ENTRY_ID.pattern}$"},
        "kind": {"enum": list(deadletters.KINDS)},
        "reason": {"type": "string"},
        "atMs": {"type": "integer"},
        "at": {"type": "string", "description": "ISO 8601, UTC"},
        "partition": {"type": ["integer", "null"], "description": "callback, drain_job: the inbox partition"},
        "recordingId": {"type": ["string", "null"], "description": "step_job, notification"},
        "webhookId": {"type": ["string", "null"], "description": "notification"},
        "type": {"type": ["string", "null"], "description": "notification: its type"},
        "noticeId": {"type": ["string", "null"], "description": "callback"},
        "jobId": {"type": ["string", "null"], "description": "drain_job, step_job: the RQ job"},
        "body": {"description": "callback: the stored body, credentials masked (text when not JSON)"},
        "retried": {
            "anyOf": [
                {
                    "type": "object",
                    "required": ["atMs", "at", "times"],
                    "properties": {
                        "atMs": {"type": "integer"},
                        "at": {"type": "string"},
                        "times": {"type": "integer", "minimum": 1},
                    },
                },
                {"type": "null"},
            ],
            "description": "when it was last retried, and how often (null: never)",
        },
    },
}

_DELIVERY = {
    "type": "object",
    "required": [
        "webhookId",
        "type",
        "recordingId",
        "createdMs",
        "attempts",
        "delivered",
        "deliveredMs",
        "exhausted",
        "pending",
        "redeliveries",
    ],
    "properties": {
        "webhookId": {"type": "string", "description": "the webhook-id header, the same on every attempt"},
        "type": {"type": ["string", "null"]},
        "recordingId": {"type": ["string", "null"]},
        "createdMs": {"type": "integer"},
        "attempts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["attempt", "series", "atMs", "status", "error", "delivered"],
                "properties": {
                    "attempt": {"type": "integer", "minimum": 0, "description": "0 first, then each retry"},
                    "series": {"type": "integer", "minimum": 0, "description": "0, then one per redelivery"},
                    "atMs": {"type": "integer"},
                    "status": {"type": ["integer", "null"], "description": "the HTTP status answered"},
                    "error": {"type": ["string", "null"], "description": "no answer: why"},
                    "delivered": {"type": "boolean"},
                },
            },
        },
        "delivered": {"type": "boolean"},
        "deliveredMs": {"type": ["integer", "null"]},
        "exhausted": {"type": "boolean", "description": "out of retries (a dead letter)"},
        "pending": {"type": "boolean", "description": "attempts still to come"},
        "redeliveries": {"type": "integer", "minimum": 0},
    },
}

_DEAD_LETTER_ID = {
    "name": "deadLetterId",
    "in": "path",
    "required": True,
    "description": "a dead letter id (anything else is a 404)",
    "schema": {"type": "string", "pattern": f"^{deadletters.ENTRY_ID.pattern}$"},
}
_WEBHOOK_ID = {
    "name": "webhookId",
    "in": "path",
    "required": True,
    "description": "a notification's webhook-id (anything else is a 404)",
    "schema": {"type": "string", "pattern": f"^{WEBHOOK_ID.pattern}$"},
}


def build_document() -> dict[str, Any]:
    """The whole document (built once, at import)."""
    listing = {
        "type": "object",
        "required": ["recordings", "nextCursor"],
        "properties": {
            "recordings": {"type": "array", "items": _RECORDING, "maxItems": MAX_LIST},
            "nextCursor": {
                "type": ["string", "null"],
                "pattern": "^[0-9]{1,19}$",
                "description": "pass as `cursor` for the next page; null on the last one. A page holds "
                f"fewer than `limit` recordings when the filters skipped more than {MAX_LIST_SCAN} of them",
            },
        },
    }
    status = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Agora Cloud Recording companion",
            "version": "0.1.0",
            "description": "Starts, keeps alive and stops Agora Cloud Recording tasks, and accounts for their files. "
            'Every error is `{"error": {"code", "message", "field"?}}`.',
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": _ERROR_SCHEMA,
                "NewRecording": _new_recording(),
                **_recording_schemas(),
                "Event": _EVENT,
                "SessionSummary": _SESSION_SUMMARY,
                "DeadLetter": _DEAD_LETTER,
                "Delivery": _DELIVERY,
                **_agora_components(),
            },
        },
        "paths": {
            "/v1/recordings": {
                "post": _operation(
                    "Record a channel",
                    {
                        "202": _accepted("accepted; the recording starts in the background"),
                        "422": _error("this Idempotency-Key was used for another body"),
                    },
                    body={"$ref": "#/components/schemas/NewRecording"},
                    params=[
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
                            "description": "retries with the same key and body return the same recording (24 h)",
                        }
                    ],
                ),
                "get": _operation(
                    "List recordings, newest first",
                    {
                        "200": _answer("a page", listing),
                        "400": _error("a query parameter out of bounds; `error.field` names it"),
                    },
                    params=[
                        {"name": "state", "in": "query", "schema": {"enum": [s.value for s in State]}},
                        {
                            "name": "cname",
                            "in": "query",
                            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_CNAME_CHARS},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIST, "default": 50},
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "description": f"a nextCursor of a previous page (an integer 0..{MAX_CURSOR})",
                            "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
                        },
                    ],
                ),
            },
            "/v1/recordings/{id}": {
                "get": _operation(
                    "One recording", {"200": _answer("the recording", _RECORDING)}, params=[_ID]
                )
            },
            "/v1/recordings/{id}/stop": {
                "post": _operation("Stop (idempotent)", {"202": _accepted("stop accepted")}, params=[_ID])
            },
            "/v1/recordings/{id}/pause": {
                "post": _operation(
                    "Pause (idempotent, in order with other commands): web pages go on hold; individual and mix "
                    "sessions end, and resume starts a new one",
                    _CHANGE_ANSWERS,
                    params=[_ID],
                )
            },
            "/v1/recordings/{id}/resume": {
                "post": _operation("Resume a paused recording (idempotent)", _CHANGE_ANSWERS, params=[_ID])
            },
            "/v1/recordings/{id}/update": {
                "post": _operation(
                    "Change subscriptions, web onhold / RTMP URL, or storage credentials (Agora's update clientRequest)",
                    _CHANGE_ANSWERS,
                    body={"$ref": "#/components/schemas/UpdateClientRequest"},
                    params=[_ID],
                )
            },
            "/v1/recordings/{id}/layout": {
                "post": _operation(
                    "Replace the mix layout (Agora's updateLayout clientRequest)",
                    _CHANGE_ANSWERS,
                    body={"$ref": "#/components/schemas/UpdateLayoutClientRequest"},
                    params=[_ID],
                )
            },
            "/v1/recordings/{id}/events": {
                "get": _operation(
                    "Timeline: API calls, Agora calls, transitions and callbacks (credentials masked)",
                    {
                        "200": _answer(
                            "in time order",
                            {
                                "type": "object",
                                "required": ["id", "state", "events"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "state": {"enum": [s.value for s in State]},
                                    "events": {"type": "array", "items": {"type": "object"}},
                                },
                            },
                        )
                    },
                    params=[_ID],
                )
            },
            "/v1/recordings/{id}/files": {
                "get": _operation(
                    "The file manifest with upload status",
                    {
                        "200": _answer(
                            "files",
                            {
                                "type": "object",
                                "required": ["id", "state", "files", "backedUpFiles", "uploadStuck"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "state": {"enum": [s.value for s in State]},
                                    "files": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/File"},
                                    },
                                    "backedUpFiles": {"type": "array", "items": {"type": "string"}},
                                    "uploadStuck": {"type": "boolean"},
                                    "filesInDoubt": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                        )
                    },
                    params=[_ID],
                )
            },
            "/v1/sessions/{sid}": {
                "get": _operation(
                    "A session's last known status, from its callbacks",
                    {"200": _answer("the session", {"$ref": "#/components/schemas/SessionSummary"})},
                    params=[_SID],
                )
            },
            "/v1/sessions/{sid}/events": {
                "get": _operation(
                    "A session's callbacks in timeline order (credentials masked)",
                    {
                        "200": _answer(
                            "the session and its callbacks",
                            {
                                "type": "object",
                                "required": ["sid", "session", "events"],
                                "properties": {
                                    "sid": {"type": "string"},
                                    "session": {"$ref": "#/components/schemas/SessionSummary"},
                                    "events": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Event"},
                                    },
                                },
                            },
                        )
                    },
                    params=[_SID],
                )
            },
            "/v1/dead-letters": {
                "get": _operation(
                    "Dead letters: everything that failed for good, newest first",
                    {
                        "200": _answer(
                            "a page",
                            {
                                "type": "object",
                                "required": ["deadLetters", "nextCursor"],
                                "properties": {
                                    "deadLetters": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/DeadLetter"},
                                        "maxItems": deadletters.MAX_LIST,
                                    },
                                    "nextCursor": {
                                        "type": ["string", "null"],
                                        "pattern": f"^{deadletters.ENTRY_ID.pattern}$",
                                        "description": "pass as `cursor` for the next page; null on the last "
                                        f"one. A page holds fewer than `limit` when `kind` skipped more than "
                                        f"{deadletters.MAX_LIST_SCAN} entries",
                                    },
                                },
                            },
                        ),
                        "400": _error("a query parameter out of bounds; `error.field` names it"),
                    },
                    params=[
                        {"name": "kind", "in": "query", "schema": {"enum": list(deadletters.KINDS)}},
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": deadletters.MAX_LIST,
                                "default": 50,
                            },
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "description": "a nextCursor of a previous page",
                            "schema": {"type": "string", "pattern": f"^{deadletters.ENTRY_ID.pattern}$"},
                        },
                    ],
                )
            },
            "/v1/dead-letters/{deadLetterId}/retry": {
                "post": _operation(
                    "Retry a dead letter: a callback is accepted again, a drain re-runs its partition, a step "
                    "wakes its recording, a notification is redelivered (same webhook-id); kept, marked retried",
                    {
                        "202": _answer("re-queued", {"$ref": "#/components/schemas/DeadLetter"}),
                        "409": _error("it cannot be retried (its recording or notification is gone, ...)"),
                    },
                    params=[_DEAD_LETTER_ID],
                )
            },
            "/v1/recordings/{id}/notifications": {
                "get": _operation(
                    "A recording's notifications: each delivery with its attempts and answers",
                    {
                        "200": _answer(
                            "oldest first",
                            {
                                "type": "object",
                                "required": ["id", "notifications"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "notifications": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/Delivery"},
                                    },
                                },
                            },
                        )
                    },
                    params=[_ID],
                )
            },
            "/v1/notifications/{webhookId}/redeliver": {
                "post": _operation(
                    "Send a notification again, with the same webhook-id and body",
                    {
                        "202": _answer("queued", {"$ref": "#/components/schemas/Delivery"}),
                        "409": _error("notifications are off (NOTIFY_URL unset)"),
                    },
                    params=[_WEBHOOK_ID],
                )
            },
            "/webhooks/agora": {
                "post": {
                    "summary": "Agora NCS callbacks (signed with Agora-Signature-V2 / Agora-Signature)",
                    "security": [],
                    "parameters": [
                        {"name": "Agora-Signature-V2", "in": "header", "schema": {"type": "string"}},
                        {"name": "Agora-Signature", "in": "header", "schema": {"type": "string"}},
                    ],
                    "requestBody": {"required": True, "content": {JSON: {"schema": _NOTICE}}},
                    "responses": {
                        "200": _answer(
                            "accepted or duplicate",
                            {
                                "type": "object",
                                "required": ["status", "noticeId"],
                                "additionalProperties": False,
                                "properties": {
                                    "status": {"enum": ["accepted", "duplicate"]},
                                    "noticeId": {"type": "string"},
                                },
                            },
                        ),
                        "400": _error("malformed JSON or envelope, or nested too deeply"),
                        "401": _error("bad or missing signature"),
                        "413": _error("too large"),
                        "415": _error("not JSON"),
                        "500": _error("a bug (logged); Agora retries"),
                        "503": _error("Redis unavailable: Agora retries"),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness (does not touch Redis)",
                    "security": [],
                    "responses": {"200": _answer("alive", status)},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: Redis answers",
                    "security": [],
                    "responses": {
                        "200": _answer("ready", status),
                        "503": _answer("Redis unavailable", status),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus text format (no token: restrict it by network)",
                    "security": [],
                    "responses": {"200": _answer("metrics", {"type": "string"}, media="text/plain")},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _answer("OpenAPI 3.1", {"type": "object"})},
                }
            },
        },
    }


DOCUMENT: dict[str, Any] = build_document()


@bp.get("/openapi.json")
def openapi() -> Response:
    """The document (no token needed: it holds no data)."""
    return jsonify(DOCUMENT)
