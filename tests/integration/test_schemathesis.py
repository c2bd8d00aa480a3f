"""Schemathesis against the app's own ``/openapi.json``: every operation, with a bearer token and real ids.

The app runs in-process (WSGI) on the suite's real Redis. Each operation gets its explicit examples, the
coverage phase's boundary values (every ``minimum``/``maximum``/``maxLength``/``maxItems``/``pattern`` of the
document, just inside and just outside) and a fixed budget of fuzzed cases, positive and negative, from a
fixed seed, so the run is reproducible. Every answer must not be a server error and must match the document:
status code, content type, required headers and body schema (errors included).

Test-side, the document gets examples the schema alone would never produce: real ids and sids, bodies nesting
~1,000 levels (where msgspec gives up), huge strings, lists and objects, integers past 64 bits, the
``maxDurationSeconds`` that used to overflow, lone surrogates, and ids with Redis key separators.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import json
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from schemathesis.engine import Status, events, from_schema

from tests.support.factories import body_of, event, signed_headers
from tests.support.service import API_TOKEN, NCS_SECRET, with_default_storage
from workers.core import schema
from workers.core.config import Settings
from workers.jobs import drain_batch

SEED = 20_261_202
MAX_EXAMPLES = 15  # fuzzed cases per operation and generation mode, on top of examples and coverage
DEEP = 1_000


def _deep(levels: int) -> bytes:
    """JSON text nesting ``levels`` objects and arrays (~6 KB for 1,000), as raw bytes: Schemathesis sends a
    ``bytes`` example as it is, so no serialiser in the test has to recurse that deep."""
    return b'{"a":[' * (levels // 2) + b"1" + b"]}" * (levels // 2)


HUGE_STRING = "x" * 5_000
HUGE_LIST = ["1"] * 1_000
HUGE_OBJECT = {f"k{i}": i for i in range(1_000)}
NASTY_VALUES: list[Any] = [
    _deep(DEEP),
    _deep(900),
    _deep(40),
    HUGE_STRING,
    HUGE_LIST,
    HUGE_OBJECT,
    2**64,
    10**30,
    -(2**63) - 1,
    300_000_000_000,
    1e308,
    "\ud800",
    None,
    True,
]


def _nasty_bodies(valid: dict[str, Any], fields: list[str]) -> list[Any]:
    """Whole bodies: each nasty value in each field of a valid body, and as the whole body."""
    bodies: list[Any] = [_deep(DEEP), _deep(900), [], "x", 1, None]
    for field in fields:
        for value in NASTY_VALUES:
            if isinstance(value, bytes):  # splice the raw text in
                prefix = json.dumps({**valid, field: 0})[: -len("0}")].encode()
                bodies.append(prefix + value + b"}")
            else:
                bodies.append({**valid, field: value})
    return bodies


def _named(values: list[Any]) -> dict[str, dict[str, Any]]:
    return {f"example{index}": {"value": value} for index, value in enumerate(values)}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return with_default_storage(settings)


@pytest.fixture
def real_ids(client: FlaskClient, redis_client: redis.Redis, auth: dict[str, str]) -> dict[str, str]:
    """A mix recording (for update and layout), a web one, and a session with callbacks (one an RTMP push)."""
    mix = client.post("/v1/recordings", json={"cname": "fuzz", "mode": "mix"}, headers=auth).get_json()["id"]
    web = client.post(
        "/v1/recordings",
        json={"cname": "fuzz-web", "mode": "web", "web": {"url": "https://example.com/page?t=1"}},
        headers=auth,
    ).get_json()["id"]
    for notice_id, event_type, details in [
        ("n-1", 40, {"msgName": "recorder_started", "status": 0}),
        (
            "n-2",
            100,
            {"msgName": "rtmp_publish_status", "rtmpUrl": "rtmp://cdn/live/STREAMKEY", "status": "connected"},
        ),
    ]:
        body = body_of(
            event(
                event_type,
                notice_id=notice_id,
                sid="fuzzsid0123456789abcdef01234567",
                cname="fuzz",
                details=details,
            )
        )
        assert (
            client.post("/webhooks/agora", data=body, headers=signed_headers(body, NCS_SECRET)).status_code
            == 200
        )
    drain_batch(redis_client, schema.partition_of("fuzz"), max_events=100, retention_seconds=3600)
    return {"mix": mix, "web": web, "sid": "fuzzsid0123456789abcdef01234567"}


def _document(client: FlaskClient, ids: dict[str, str]) -> dict[str, Any]:
    """The app's own document, with the real ids as examples of the path parameters (valid examples only:
    Schemathesis drops examples its schema refuses)."""
    document = copy.deepcopy(client.get("/openapi.json").get_json())
    for operation in _operations(document):
        for parameter in operation.get("parameters", ()):
            if parameter["in"] == "path" and parameter["name"] == "id":
                parameter["schema"]["examples"] = [ids["mix"], ids["web"]]
            elif parameter["in"] == "path" and parameter["name"] == "sid":
                parameter["schema"]["examples"] = [ids["sid"]]
    return document


def _nasty_document(client: FlaskClient, ids: dict[str, str]) -> dict[str, Any]:
    """The app's document with each input's schema opened (``{}``: any JSON) and given, as examples, the values
    no schema yields: 1,000-level nesting, huge strings/lists/objects, integers past 64 bits, lone
    surrogates, ids with Redis key separators. The answers are still checked against the real responses."""
    document = _document(client, ids)
    bad_ids = [
        "rec_0123456789abcdef0123:lock",
        f"{ids['mix']}:lock",
        f"{ids['mix']}:timeline",
        "x" * 5_000,
        "a:b",
    ]
    by_name: dict[str, list[Any]] = {
        "id": [ids["mix"], *bad_ids],
        "sid": [ids["sid"], f"{ids['sid']}:order", f"{ids['sid']}:events", "y" * 5_000],
        "limit": [0, 1, 200, 201, -1, 2**64, "1e400", "9" * 5_000, ""],
        "cursor": [0, -5, 2**63, 2**64, "x", "1e400", "9" * 5_000, ""],
        "state": ["pending", "nope", "s" * 5_000, ""],
        "cname": ["fuzz", "c" * 5_000, ""],
        "Idempotency-Key": ["k", "k" * 201, ""],
    }
    for path, method, operation in _operations(document, with_keys=True):
        for parameter in operation.get("parameters", ()):
            examples = by_name.get(parameter["name"])
            if examples is not None:
                parameter["schema"] = {"examples": examples}
        content = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if content is None:
            continue
        if path == "/v1/recordings":
            valid = {"cname": "fuzz", "mode": "mix"}
            fields = [
                "cname",
                "mode",
                "uid",
                "token",
                "recordingConfig",
                "storage",
                "web",
                "maxDurationSeconds",
            ]
        elif path.endswith("/update"):
            valid = {"streamSubscribe": {"audioUidList": {"subscribeAudioUids": ["7"]}}}
            fields = ["streamSubscribe", "storageConfig", "rtmpPublishConfig"]
        elif path.endswith("/layout"):
            valid = {"mixedVideoLayout": 1}
            fields = ["mixedVideoLayout", "layoutConfig", "backgroundColor", "backgroundConfig"]
        else:  # the receiver: unsigned, so these are 401s (tests/integration/test_hardening.py signs deep callbacks)
            valid = {"noticeId": "n", "productId": 3, "eventType": 40, "notifyMs": 1, "payload": {}}
            fields = ["payload", "noticeId"]
        content["schema"] = {}
        content["examples"] = _named([valid, *_nasty_bodies(valid, fields)])
        del method
    return document


def _operations(document: dict[str, Any], with_keys: bool = False) -> list[Any]:
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            found.append((path, method, operation) if with_keys else operation)
    return found


CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
DISABLED_CHECKS = (
    "positive_data_acceptance",  # the document cannot say everything Agora refuses (cname charset, ranges)
    "use_after_free",
    "ensure_resource_availability",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "object_level_authorization",
    "ignored_auth",  # broken in-process (passes max_redirects to werkzeug); tests/integration/test_hardening.py checks 401s
)


def _config(**phases: bool) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "headers": {"Authorization": f"Bearer {API_TOKEN}"},
            "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "database": "none"},
            "phases": {
                "examples": {"enabled": phases.get("examples", True)},
                "coverage": {"enabled": phases.get("coverage", True)},
                "fuzzing": {"enabled": phases.get("fuzzing", True)},
                "stateful": {"enabled": False},
            },
            "checks": {
                **{name: {"enabled": True} for name in CHECKS},
                # Whatever the document forbids is refused (413: a body over the API's cap is refused too).
                "negative_data_rejection": {
                    "enabled": phases.get("negative_data_rejection", True),
                    "expected-statuses": [400, 401, 404, 409, 413, 415, 422],
                },
                **{name: {"enabled": False} for name in DISABLED_CHECKS},
            },
            "suppress-health-check": ["all"],
            "workers": 1,
        }
    )


@dataclasses.dataclass
class Run:
    """What one Schemathesis run did."""

    operations: set[str]
    cases: Counter[str]
    failures: list[str]
    completed: bool

    def summary(self) -> str:
        return (
            f"schemathesis {schemathesis.__version__}: {len(self.operations)} operations, "
            f"{sum(self.cases.values())} cases {dict(self.cases)}, {len(self.failures)} failures"
        )


def _run(schema: schemathesis.BaseSchema) -> Run:
    """Run every enabled phase on every operation (Schemathesis' engine, as its CLI does) and collect what
    failed, with the answer that failed and a curl to reproduce it."""
    run = Run(operations=set(), cases=Counter(), failures=[], completed=False)
    for item in from_schema(schema).execute():
        if isinstance(item, events.ScenarioFinished) and item.is_test_scenario:
            if item.label:
                run.operations.add(item.label)
            run.cases[str(item.phase.value)] += len(item.recorder.cases)
            for case_id, checks in item.recorder.checks.items():
                for check in checks:
                    if check.status == Status.SUCCESS or check.failure_info is None:
                        continue
                    response = item.recorder.find_response(case_id=case_id)
                    answer = f"{response.status_code} {response.content[:300]!r}" if response else "no answer"
                    failure = check.failure_info.failure
                    run.failures.append(
                        f"{item.label} [{check.name}] {failure.title}: {failure.message[:300]}\n"
                        f"  {check.failure_info.code_sample[:600]}\n  -> {answer}"
                    )
        elif isinstance(item, events.NonFatalError):
            run.failures.append(f"{item.label}: error {item.info.title}: {item.info.message[:300]}")
        elif isinstance(item, events.FatalError):
            run.failures.append(f"fatal: {item.exception!r}")
        elif isinstance(item, events.EngineFinished):
            run.completed = item.stop_reason.value == "completed"
    return run


@pytest.fixture
def no_unhandled_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Client input never reaches the catch-all 500 handlers (they log every error they answer)."""
    with caplog.at_level(logging.ERROR, logger="webhook_service"):
        yield
    unhandled = [
        r for r in caplog.records if r.name.startswith("webhook_service") and r.levelno >= logging.ERROR
    ]
    assert not unhandled, [r.getMessage() for r in unhandled]


def test_api_conforms_to_its_document(
    app: Flask, client: FlaskClient, real_ids: dict[str, str], no_unhandled_errors: None
) -> None:
    """Every operation: explicit examples, coverage (each bound just inside and just outside) and fuzzing,
    positive and negative, with a fixed budget and seed. No server error; every answer as documented;
    everything the document forbids refused."""
    document = _document(client, real_ids)
    schema = schemathesis.openapi.from_dict(document, config=_config())
    schema.app = app
    run = _run(schema)
    print(run.summary())
    assert run.completed
    assert not run.failures, "\n".join(run.failures[:20])
    assert len(run.operations) == len(_operations(document))


def test_deep_huge_and_boundary_values_never_break_it(
    app: Flask, client: FlaskClient, real_ids: dict[str, str], no_unhandled_errors: None
) -> None:
    """Every operation gets the values a schema never yields, as examples of opened schemas: each answer is
    a documented 4xx (or the 2xx of a valid example), never a server error."""
    sent = Counter[str]()
    inner = app.wsgi_app

    def counting(environ: dict[str, Any], start_response: Any) -> Any:
        body = environ["wsgi.input"].read()
        environ["wsgi.input"] = io.BytesIO(body)
        sent["deep"] += body.count(b"[") + body.count(b"{") >= DEEP
        sent["huge"] += len(body) > 4_096
        sent["separator"] += ":" in environ["PATH_INFO"].removeprefix("/v1/sessions/task:")
        return inner(environ, start_response)

    app.wsgi_app = counting  # type: ignore[method-assign]
    document = _nasty_document(client, real_ids)
    schema = schemathesis.openapi.from_dict(
        document, config=_config(coverage=False, fuzzing=False, negative_data_rejection=False)
    )
    schema.app = app
    run = _run(schema)
    print(run.summary(), dict(sent))
    assert run.completed
    assert not run.failures, "\n".join(run.failures[:20])
    assert len(run.operations) == len(_operations(document))
    assert sent["deep"] >= 4 and sent["huge"] >= 4 and sent["separator"] >= 4, sent  # they were all sent
