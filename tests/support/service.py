"""The service's test credentials and settings helpers (the fixtures in ``tests/conftest.py`` build on them)."""

from __future__ import annotations

import dataclasses

from workers.core.config import Settings

NCS_SECRET = "test-ncs-secret"
API_TOKEN = "test-api-token"


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
