"""Fixtures: a session-wide real redis-server on a free port, flushed per test; settings -> app -> client."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from agora_emulator import Emulator
from tests.emulated import Sink, make_client, start_emulator
from tests.redis_server import RedisServer
from webhook_service import create_app
from workers.agora import AgoraClient
from workers.core.config import Settings

NCS_SECRET = "test-ncs-secret"
API_TOKEN = "test-api-token"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    if not redis_server.ping():  # a test stopped it and failed before starting it again
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def settings(redis_client: redis.Redis, redis_server: RedisServer) -> Settings:
    return Settings(
        redis_url=redis_server.url,
        environment="test",
        ncs_secrets=(NCS_SECRET,),
        api_tokens=(API_TOKEN,),
        redis_socket_timeout=1.0,
    )


def with_default_storage(settings: Settings, secret_key: str = "test-storage-secret-key") -> Settings:
    """The settings with an App ID and a default storage, so recordings can be created through the API."""
    return dataclasses.replace(
        settings,
        agora_app_id="app",
        storage_vendor=1,
        storage_region=0,
        storage_bucket="bucket",
        storage_access_key="test-storage-access-key",
        storage_secret_key=secret_key,
    )


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, for tests that stop and restart it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A receiver recording every callback the emulator posts."""
    sink = Sink()
    yield sink
    sink.close()


@pytest.fixture
def emulator(sink: Sink) -> Iterator[tuple[Emulator, str]]:
    """An in-process Agora emulator on loopback (compressed time), posting callbacks to ``sink``."""
    emulator, url = start_emulator(sink.url)
    yield emulator, url
    emulator.close()


@pytest.fixture
def base(emulator: tuple[Emulator, str]) -> str:
    """The emulator's base URL."""
    return emulator[1]


@pytest.fixture
def agora(base: str) -> AgoraClient:
    """The project's Agora client pointed at the emulator."""
    return make_client(base)
