"""Settings from the environment: validated at start-up, errors name the variable, secrets never shown."""

from __future__ import annotations

import pytest

from workers.config import Settings
from workers.errors import ConfigError

BASE = {"REDIS_URL": "redis://:hunter2@127.0.0.1:6379/0", "AGORA_NCS_SECRETS": "s1, s2 ,", "API_TOKENS": "t1"}


def test_reads_and_converts_every_field() -> None:
    """Lists are comma-separated and trimmed; numbers are converted; defaults fill the rest."""
    settings = Settings.from_env(
        {
            **BASE,
            "PORT": "9000",
            "AGORA_REGION": "EU",
            "AGORA_STORAGE_PREFIX": "a1/b2",
            "AGORA_STORAGE_VENDOR": "1",
        }
    )
    assert settings.ncs_secrets == ("s1", "s2")
    assert settings.api_tokens == ("t1",)
    assert settings.port == 9000
    assert settings.agora_region == "eu"
    assert settings.storage_prefix == ("a1", "b2")
    assert settings.storage_vendor == 1
    assert settings.is_production


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"REDIS_URL": ""}, "REDIS_URL"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"PORT": "eighty"}, "PORT"),
        ({"PORT": "70000"}, "PORT"),
        ({"AGORA_REGION": "mars"}, "AGORA_REGION"),
        ({"APP_ENV": "staging"}, "APP_ENV"),
        ({"AGORA_NCS_SECRETS": ""}, "AGORA_NCS_SECRETS"),
        ({"AGORA_CUSTOMER_ID": "only-id"}, "AGORA_CUSTOMER_SECRET"),
        ({"AGORA_STORAGE_PREFIX": "ok/not-ok"}, "AGORA_STORAGE_PREFIX"),
        ({"NOTIFY_URL": "https://app.example/hook"}, "NOTIFY_SECRET"),
        ({"AGORA_API_BASE_URL": "ftp://x"}, "AGORA_API_BASE_URL"),
        ({"NCS_MAX_BODY_BYTES": "10"}, "NCS_MAX_BODY_BYTES"),
    ],
)
def test_bad_values_name_the_variable(overrides: dict[str, str], variable: str) -> None:
    """Each malformed or missing setting fails start-up with a message naming its variable."""
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({**BASE, **overrides})


def test_ncs_secret_optional_outside_production() -> None:
    """Development may start without an NCS secret (callbacks are then refused with 401)."""
    settings = Settings.from_env({**BASE, "AGORA_NCS_SECRETS": "", "APP_ENV": "development"})
    assert settings.ncs_secrets == ()


def test_secrets_never_in_repr_or_errors() -> None:
    """Neither repr nor a Redis URL error echoes a secret."""
    settings = Settings.from_env(
        {
            **BASE,
            "AGORA_CUSTOMER_ID": "cid",
            "AGORA_CUSTOMER_SECRET": "csecret",
            "AGORA_STORAGE_SECRET_KEY": "sk",
        }
    )
    text = repr(settings)
    for secret in ("hunter2", "s1", "t1", "csecret", "sk", "cid"):
        assert secret not in text
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, "REDIS_URL": "http://:hunter2@host"})
    assert "hunter2" not in str(info.value)
