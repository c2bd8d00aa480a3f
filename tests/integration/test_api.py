"""Read access to sessions: bearer tokens, 404 for unknown sids, events in applied order."""

from __future__ import annotations

import pytest

from tests.support.factories import body_of, event, signed_headers
from tests.support.service import NCS_SECRET
from workers.core import schema
from workers.jobs import drain_batch


@pytest.fixture
def session_with_events(client, redis_client):
    for seq, event_type, details in [
        (2, 3, {"status": 5}),
        (0, 40, {"status": 0}),
        (1, 42, {"startUtcMs": 1}),
    ]:
        body = body_of(
            event(
                event_type,
                notice_id=f"n{seq}",
                sid="sid-api",
                cname="api-room",
                sequence=seq,
                details=details,
            )
        )
        assert (
            client.post("/webhooks/agora", data=body, headers=signed_headers(body, NCS_SECRET)).status_code
            == 200
        )
    drain_batch(redis_client, schema.partition_of("api-room"), max_events=100, retention_seconds=60)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic dGVzdC1hcGktdG9rZW4="},
        {"Authorization": "Bearer"},
    ],
    ids=["missing", "wrong-token", "wrong-scheme", "empty"],
)
def test_token_required(client, session_with_events, headers) -> None:
    """Without a valid bearer token the API answers 401 with a JSON reason and a challenge."""
    response = client.get("/v1/sessions/sid-api/events", headers=headers)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_sid_is_404(client, redis_client, auth) -> None:
    """An unknown sid is a 404 naming the field."""
    response = client.get("/v1/sessions/no-such-sid/events", headers=auth)
    assert response.status_code == 404 and response.json["error"]["field"] == "sid"


def test_events_in_applied_order_with_fields(client, session_with_events, auth) -> None:
    """Events come back ordered by sequence with Agora's fields, and the session's last known status."""
    response = client.get("/v1/sessions/sid-api/events", headers=auth)
    assert response.status_code == 200
    document = response.json
    assert document["sid"] == "sid-api"
    assert [e["noticeId"] for e in document["events"]] == ["n0", "n1", "n2"]
    first = document["events"][0]
    assert {"noticeId", "eventType", "sequence", "sendts", "details", "msgName", "receivedMs"} <= set(first)
    assert first["eventType"] == 40 and first["msgName"] == "recorder_started"
    assert document["session"]["status"] == "recording" and document["session"]["events"] == 3


def test_session_summary(client, session_with_events, auth) -> None:
    """GET /v1/sessions/<sid> gives the last known status without the timeline."""
    response = client.get("/v1/sessions/sid-api", headers=auth)
    assert response.status_code == 200 and response.json["status"] == "recording"
    assert response.json["serviceStatus"] == 5 and "events" in response.json


def test_unknown_route_is_json_404(client) -> None:
    """Errors outside the API views are JSON too."""
    response = client.get("/nope")
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"
