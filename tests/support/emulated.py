"""Helpers for tests that talk to the Agora emulator over real HTTP on loopback."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import msgspec
import requests
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

import agora_emulator.app
from agora_emulator import Config, Emulator
from agora_emulator.app import QuietHandler
from agora_emulator.clock import Clock
from workers.agora import (
    AcquireClientRequest,
    AcquireRequest,
    AgoraClient,
    ExtensionService,
    ExtensionServiceConfig,
    HostPlan,
    Mode,
    RecordingConfig,
    RecordingFileConfig,
    RtmpOutput,
    ServiceParam,
    StartClientRequest,
    StartRequest,
    StorageConfig,
)
from workers.core.config import Settings

APP_ID = "test-app-id"
CUSTOMER_ID = "test-customer-id"
CUSTOMER_SECRET = "test-customer-secret-value"
NCS_SECRET = "test-emulator-ncs-secret"
ACCESS_KEY = "AKIA-TEST-ACCESS-KEY"
SECRET_KEY = "test-storage-secret-key-value"
#: Real seconds per emulated second in tests: 50x faster than Agora.
SCALE = 0.02
#: How often a test's HTTP server looks for a shutdown request (socketserver's default is half a second, which
#: each server's teardown would wait out).
POLL = 0.01


class Sink:
    """A receiver that records every callback (headers and raw body) and answers what it is told to."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answer: Callable[[bytes], int] = lambda _body: 200
        self.delay = 0.0
        self._lock = threading.Lock()
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True, request_handler=QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(POLL,), daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_port}/webhooks/agora"

    @Request.application  # type: ignore[misc]
    def _app(self, request: Request) -> Response:
        body = request.get_data()
        with self._lock:
            self.received.append((dict(request.headers), body))
        if self.delay:
            time.sleep(self.delay)
        return Response(b'{"ok":true}', status=self.answer(body), content_type="application/json")

    def envelopes(self, sid: str | None = None) -> list[dict[str, Any]]:
        """Decoded callbacks, optionally for one sid."""
        with self._lock:
            items = [msgspec.json.decode(body) for _, body in self.received]
        return [e for e in items if sid is None or e["payload"].get("sid") == sid]

    def event_types(self, sid: str) -> list[int]:
        """eventType of each callback received for a sid, in arrival order."""
        return [e["eventType"] for e in self.envelopes(sid)]

    def close(self) -> None:
        """Stop serving (at once: the serving loop looks for the request every ``POLL`` seconds)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class SteppedClock(Clock):
    """The emulator's clock, which a test moves forward instead of waiting: :func:`advance` adds emulated
    seconds to what the emulated world reads as now (resource expiry, quota reservations, task ages, callback
    timestamps). Callbacks the emulator already scheduled keep their real delays."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__(scale)
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            offset = self._offset
        return super().now() + offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds


def advance(emulator: Emulator, seconds: float) -> None:
    """Move an in-process emulator's clock ``seconds`` emulated seconds forward (see :class:`SteppedClock`)."""
    clock = emulator.clock
    assert isinstance(clock, SteppedClock), "the emulator was not made by start_emulator()"
    clock.advance(seconds)


def start_emulator(notify_url: str | None = None, **overrides: Any) -> tuple[Emulator, str]:
    """An emulator on a free loopback port, compressed time, with the test credentials."""
    config = Config(
        app_id=APP_ID,
        customer_id=CUSTOMER_ID,
        customer_secret=CUSTOMER_SECRET,
        notify_url=notify_url,
        ncs_secret=NCS_SECRET,
        time_scale=SCALE,
        rate_limit=0,
        ncs_timeout=2.0,
        seed=0,  # fault draws repeat from run to run
    )
    for name, value in overrides.items():
        setattr(config, name, value)
    with mock.patch.object(agora_emulator.app, "Clock", SteppedClock):
        emulator = Emulator(config)
    return emulator, emulator.serve_in_thread()


def pointed_at(settings: Settings, base_url: str, **overrides: Any) -> Settings:
    """``settings`` with Agora at the emulator on ``base_url`` (its test credentials, emulated time, no rate
    limit) and a default storage, so recordings can be created and stepped against it."""
    return dataclasses.replace(
        settings,
        agora_app_id=APP_ID,
        agora_customer_id=CUSTOMER_ID,
        agora_customer_secret=CUSTOMER_SECRET,
        agora_api_base_url=base_url,
        storage_vendor=1,
        storage_region=0,
        storage_bucket="bucket",
        storage_access_key="test-access-key",
        storage_secret_key="test-storage-secret-key",
        recording_time_scale=SCALE,
        agora_rate_limit=0,
        **overrides,
    )


def make_client(base_url: str, **kwargs: Any) -> AgoraClient:
    """The project's client pointed at one base URL."""
    return AgoraClient(
        app_id=APP_ID,
        customer_id=CUSTOMER_ID,
        customer_secret=CUSTOMER_SECRET,
        hosts=HostPlan.single(base_url, retries=0),
        **kwargs,
    )


def storage() -> StorageConfig:
    """A storage configuration with recognisable keys."""
    return StorageConfig(
        vendor=1,
        region=0,
        bucket="recordings",
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        file_name_prefix=["tests"],
    )


def start_body(
    mode: Mode, cname: str = "room1", uid: str = "527841", *, rtmp: bool = False, **recording: Any
) -> StartRequest:
    """A typical start body for a mode."""
    if mode == "web":
        services = [
            ExtensionService(
                service_name="web_recorder_service",
                error_handle_policy="error_abort",
                service_param=ServiceParam(
                    url="https://example.com/class", video_width=1280, video_height=720, max_recording_hour=2
                ),
            )
        ]
        if rtmp:
            services.append(
                ExtensionService(
                    service_name="rtmp_publish_service",
                    error_handle_policy="error_ignore",
                    service_param=ServiceParam(
                        outputs=[RtmpOutput(rtmp_url="rtmp://cdn.example.com/live/a")]
                    ),
                )
            )
        request = StartClientRequest(
            storage_config=storage(),
            extension_service_config=ExtensionServiceConfig(extension_services=services),
            recording_file_config=RecordingFileConfig(av_file_type=["hls", "mp4"]),
        )
    else:
        request = StartClientRequest(
            storage_config=storage(), recording_config=RecordingConfig(**{"channel_type": 0, **recording})
        )
    return StartRequest(cname=cname, uid=uid, client_request=request)


def begin(
    client: AgoraClient, mode: Mode, cname: str = "room1", uid: str = "527841", **kwargs: Any
) -> tuple[str, str]:
    """acquire + start; returns (resourceId, sid)."""
    scene = 1 if mode == "web" else 0
    acquired = client.acquire(
        AcquireRequest(cname=cname, uid=uid, client_request=AcquireClientRequest(scene=scene)), mode=mode
    )
    assert acquired.resource_id
    started = client.start(acquired.resource_id, mode, start_body(mode, cname, uid, **kwargs))
    assert started.sid
    return acquired.resource_id, started.sid


def control(base_url: str, method: str, path: str, body: Any = None) -> Any:
    """Call the emulator's control API."""
    response = requests.request(method, f"{base_url}/_emulator/{path}", json=body, timeout=5)
    assert response.status_code < 300, response.text
    return response.json()


def emulated(seconds: float) -> float:
    """Real seconds for an emulated duration in tests."""
    return seconds * SCALE
