"""``GET /openapi.json``: an OpenAPI 3.1 description of the management API and the receiver."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

bp = Blueprint("openapi", __name__)

_ERROR = {"$ref": "#/components/schemas/Error"}
_RECORDING = {"$ref": "#/components/schemas/Recording"}


def _answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if schema is not None:
        answer["content"] = {"application/json": {"schema": schema}}
    return answer


_ERRORS = {
    "400": _answer("invalid input; `error.field` names it", _ERROR),
    "401": _answer("missing or wrong bearer token", _ERROR),
    "404": _answer("no such recording", _ERROR),
    "503": _answer("Redis unavailable; retry", _ERROR),
}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_JSON_OBJECT = {"type": "object", "additionalProperties": True}


def _operation(
    summary: str,
    answers: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    params: list[Any] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {**answers, **_ERRORS},
        "security": [{"bearer": []}],
    }
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        operation["parameters"] = params
    return operation


DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Agora Cloud Recording companion",
        "version": "0.1.0",
        "description": "Starts, keeps alive and stops Agora Cloud Recording tasks, and accounts for their files.",
    },
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Error": {
                "type": "object",
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "field": {"type": "string"},
                        },
                    }
                },
            },
            "NewRecording": {
                "type": "object",
                "required": ["cname", "mode"],
                "additionalProperties": False,
                "properties": {
                    "cname": {"type": "string", "description": "channel (web mode: a task label)"},
                    "mode": {"enum": ["individual", "mix", "web"]},
                    "uid": {"type": "string", "description": "recorder uid, integer 1..2^32-1 as a string"},
                    "token": {"type": "string", "description": "RTC token (never shown back)"},
                    "recordingConfig": {
                        **_JSON_OBJECT,
                        "description": "Agora's recordingConfig (individual, mix)",
                    },
                    "recordingFileConfig": {
                        **_JSON_OBJECT,
                        "description": 'e.g. {"avFileType": ["hls", "mp4"]}',
                    },
                    "snapshotConfig": {**_JSON_OBJECT, "description": "individual mode screenshots"},
                    "web": {
                        **_JSON_OBJECT,
                        "description": "web mode: url plus web_recorder_service serviceParam fields, and rtmpUrls (one) for CDN push",
                    },
                    "storage": {
                        **_JSON_OBJECT,
                        "description": "Agora's storageConfig; default from AGORA_STORAGE_*",
                    },
                    "maxDurationSeconds": {"type": "integer", "minimum": 1},
                },
            },
            "Session": {
                "type": "object",
                "properties": {
                    "resourceId": {"type": "string"},
                    "sid": {"type": ["string", "null"]},
                    "uid": {"type": "string"},
                    "startedMs": {"type": ["integer", "null"]},
                    "endedMs": {"type": ["integer", "null"]},
                    "outcome": {"type": ["string", "null"]},
                },
            },
            "File": {
                "type": "object",
                "properties": {
                    "fileName": {"type": "string"},
                    "sid": {"type": "string"},
                    "status": {"enum": ["recorded", "backed_up", "uploaded"]},
                    "trackType": {"type": ["string", "null"]},
                    "uid": {"type": ["string", "null"]},
                    "sliceStartTime": {"type": ["integer", "null"]},
                },
            },
            "Recording": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "cname": {"type": "string"},
                    "mode": {"type": "string"},
                    "state": {
                        "enum": [
                            "pending",
                            "starting",
                            "recording",
                            "stopping",
                            "uploading",
                            "completed",
                            "backed_up",
                            "failed",
                        ]
                    },
                    "desiredState": {"enum": ["recording", "stopped"]},
                    "reason": {"type": ["string", "null"]},
                    "attempts": {"type": "integer"},
                    "restarts": {"type": "integer"},
                    "currentSession": {"oneOf": [{"$ref": "#/components/schemas/Session"}, {"type": "null"}]},
                    "sessions": {"type": "array", "items": {"$ref": "#/components/schemas/Session"}},
                    "files": {"type": "array", "items": {"$ref": "#/components/schemas/File"}},
                    "backedUpFiles": {"type": "array", "items": {"type": "string"}},
                    "uploadStuck": {"type": "boolean"},
                    "lastError": {"type": ["object", "null"]},
                },
            },
        },
    },
    "paths": {
        "/v1/recordings": {
            "post": _operation(
                "Record a channel",
                {"202": _answer("accepted; the recording starts in the background", _RECORDING)},
                body={"$ref": "#/components/schemas/NewRecording"},
                params=[
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "schema": {"type": "string"},
                        "description": "retries return the same recording",
                    }
                ],
            ),
            "get": _operation(
                "List recordings, newest first",
                {
                    "200": _answer(
                        "a page",
                        {
                            "type": "object",
                            "properties": {
                                "recordings": {"type": "array", "items": _RECORDING},
                                "nextCursor": {"type": ["string", "null"]},
                            },
                        },
                    )
                },
                params=[
                    {"name": "state", "in": "query", "schema": {"type": "string"}},
                    {"name": "cname", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 200},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
            ),
        },
        "/v1/recordings/{id}": {
            "get": _operation("One recording", {"200": _answer("the recording", _RECORDING)}, params=[_ID])
        },
        "/v1/recordings/{id}/stop": {
            "post": _operation(
                "Stop (idempotent)", {"202": _answer("stop accepted", _RECORDING)}, params=[_ID]
            )
        },
        "/v1/recordings/{id}/update": {
            "post": _operation(
                "Change subscriptions, web onhold / RTMP URL, or storage credentials (Agora's update clientRequest)",
                {
                    "202": _answer("queued", _RECORDING),
                    "409": _answer("the recording is ending or over", _ERROR),
                },
                body=_JSON_OBJECT,
                params=[_ID],
            )
        },
        "/v1/recordings/{id}/layout": {
            "post": _operation(
                "Replace the mix layout (Agora's updateLayout clientRequest)",
                {
                    "202": _answer("queued", _RECORDING),
                    "409": _answer("the recording is ending or over", _ERROR),
                },
                body=_JSON_OBJECT,
                params=[_ID],
            )
        },
        "/v1/recordings/{id}/events": {
            "get": _operation(
                "Timeline: API calls, Agora calls, transitions and callbacks",
                {"200": _answer("in time order", _JSON_OBJECT)},
                params=[_ID],
            )
        },
        "/v1/recordings/{id}/files": {
            "get": _operation(
                "The file manifest with upload status", {"200": _answer("files", _JSON_OBJECT)}, params=[_ID]
            )
        },
        "/webhooks/agora": {
            "post": {
                "summary": "Agora NCS callbacks (signed with Agora-Signature-V2 / Agora-Signature)",
                "security": [],
                "responses": {
                    "200": _answer("accepted or duplicate"),
                    "400": _answer("malformed envelope"),
                    "401": _answer("bad signature"),
                    "413": _answer("too large"),
                    "415": _answer("not JSON"),
                    "503": _answer("Redis unavailable: Agora retries"),
                },
            }
        },
    },
}


@bp.get("/openapi.json")
def openapi() -> Response:
    """The document (no token needed: it holds no data)."""
    return jsonify(DOCUMENT)
