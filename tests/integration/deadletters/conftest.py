"""The dead-letter tests' settings: a default storage, and notifications signed and sent to the test's sink
(a real HTTP endpoint that fails until told otherwise); jobs read those settings as a worker process does."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

import workers.recordings.notify as notify
from tests.support.emulated import Sink
from tests.support.notifications import NOTIFY_SECRET
from tests.support.service import with_default_storage
from workers.core.config import Settings, current_settings


@pytest.fixture
def settings(settings: Settings, sink: Sink) -> Settings:
    return dataclasses.replace(
        with_default_storage(settings), notify_url=sink.url, notify_secret=NOTIFY_SECRET
    )


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> Iterator[None]:
    """Jobs read their settings like a worker process does (notify's from the test's settings)."""
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("APP_ENV", "test")
    current_settings.cache_clear()
    monkeypatch.setattr(notify, "current_settings", lambda: settings)
    yield
    current_settings.cache_clear()
