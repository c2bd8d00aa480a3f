"""Settings from the environment: validated at start-up, errors name the variable, secrets never shown."""

from __future__ import annotations

import base64

import pytest

from workers.core.config import Settings
from workers.core.errors import ConfigError

TOKEN = "t1-0123456789abcdef"  # production tokens have at least 16 characters
BASE = {
    "REDIS_URL": "redis://:hunter2@127.0.0.1:6379/0",
    "AGORA_NCS_SECRETS": "s1, s2 ",
    "API_TOKENS": TOKEN,
    "SECRET_KEY": "x" * 40,
}
WHSEC = "whsec_" + base64.b64encode(b"sixteen-byte-key").decode()


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
    assert settings.api_tokens == (TOKEN,)
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
        # secret-shaped settings (issue 10)
        ({"NOTIFY_URL": "https://app.example/hook", "NOTIFY_SECRET": "whsec_abc"}, "NOTIFY_SECRET"),
        ({"NOTIFY_SECRET": "whsec_abc"}, "NOTIFY_SECRET"),
        ({"NOTIFY_SECRET": "whsec_" + base64.b64encode(b"15-byte-secret!").decode()}, "NOTIFY_SECRET"),
        ({"NOTIFY_SECRET": "whsec_" + base64.b64encode(b"sixteen-byte-key").decode() + "!"}, "NOTIFY_SECRET"),
        ({"NOTIFY_SECRET": "too-short"}, "NOTIFY_SECRET"),
        ({"NOTIFY_SECRET": "sixteen chars ok"}, "NOTIFY_SECRET"),
        ({"AGORA_NCS_SECRETS": "new,,old"}, "AGORA_NCS_SECRETS"),
        ({"AGORA_NCS_SECRETS": ",old"}, "AGORA_NCS_SECRETS"),
        ({"AGORA_NCS_SECRETS": "new secret"}, "AGORA_NCS_SECRETS"),
        ({"AGORA_NCS_SECRETS": "dev-ncs-secret"}, "AGORA_NCS_SECRETS"),
        ({"API_TOKENS": "dev-token"}, "API_TOKENS"),
        ({"API_TOKENS": f"{TOKEN},short"}, "API_TOKENS"),
        ({"API_TOKENS": f"{TOKEN},"}, "API_TOKENS"),
        ({"API_TOKENS": "a token with spaces"}, "API_TOKENS"),
        ({"AGORA_CUSTOMER_ID": "id:with-colon", "AGORA_CUSTOMER_SECRET": "s"}, "AGORA_CUSTOMER_ID"),
        ({"AGORA_CUSTOMER_ID": "id", "AGORA_CUSTOMER_SECRET": "pasted secret"}, "AGORA_CUSTOMER_SECRET"),
        ({"AGORA_CUSTOMER_ID": "id", "AGORA_CUSTOMER_SECRET": "caf\u00e9"}, "AGORA_CUSTOMER_SECRET"),
        ({"AGORA_STORAGE_SECRET_KEY": "sk with space"}, "AGORA_STORAGE_SECRET_KEY"),
    ],
)
def test_bad_values_name_the_variable(overrides: dict[str, str], variable: str) -> None:
    """Each malformed or missing setting fails start-up with a message naming its variable."""
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({**BASE, **overrides})


def test_whsec_abc_is_refused_at_start_up() -> None:
    """Issue 10: ``NOTIFY_SECRET=whsec_abc`` passed start-up of web and worker, and every delivery then failed
    outside the retry path. Now start-up refuses it, naming the variable, never echoing the value."""
    with pytest.raises(ConfigError, match="NOTIFY_SECRET") as info:
        Settings.from_env({**BASE, "NOTIFY_URL": "https://app.example/hook", "NOTIFY_SECRET": "whsec_abc"})
    assert "abc" not in str(info.value).replace("whsec_", "")


def test_valid_secrets_pass() -> None:
    """Standard Webhooks secrets, long plain secrets, rotation lists and Agora-shaped credentials."""
    settings = Settings.from_env(
        {
            **BASE,
            "NOTIFY_URL": "https://app.example/hook",
            "NOTIFY_SECRET": WHSEC,
            "AGORA_NCS_SECRETS": "new-secret,old-secret",
            "API_TOKENS": f"{TOKEN}, {TOKEN}-2",
            "AGORA_CUSTOMER_ID": "4c2f0e5a8d9b4f1c9e7a6b5d4c3b2a10",
            "AGORA_CUSTOMER_SECRET": "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
        }
    )
    assert settings.notify_secret == WHSEC and settings.ncs_secrets == ("new-secret", "old-secret")
    assert Settings.from_env({**BASE, "NOTIFY_SECRET": "a-plain-secret-of-16+"}).notify_secret


def test_short_tokens_and_dev_defaults_pass_outside_production() -> None:
    settings = Settings.from_env(
        {**BASE, "APP_ENV": "development", "API_TOKENS": "dev-token", "AGORA_NCS_SECRETS": "dev-ncs-secret"}
    )
    assert settings.api_tokens == ("dev-token",)


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
    for secret in ("hunter2", "s1", TOKEN, "csecret", "sk", "cid"):
        assert secret not in text
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, "REDIS_URL": "http://:hunter2@host"})
    assert "hunter2" not in str(info.value)


def test_urls_in_repr_lose_userinfo_and_query() -> None:
    """Issue 10: ``Settings`` is logged at start-up; a password in ``NOTIFY_URL`` or ``AGORA_API_BASE_URL`` (or
    a token in their query) must not reach the log."""
    settings = Settings.from_env(
        {
            **BASE,
            "NOTIFY_URL": "https://hook:HOOKPW@app.example/hook?sig=QSECRET",
            "NOTIFY_SECRET": WHSEC,
            "AGORA_API_BASE_URL": "http://user:PROXYPW@proxy.example:8080/agora?k=QSECRET2",
        }
    )
    text = repr(settings)
    for secret in ("HOOKPW", "QSECRET", "PROXYPW", "QSECRET2", "hook:"):
        assert secret not in text
    assert "notify_url='https://***@app.example/hook?***'" in text
    assert "agora_api_base_url='http://***@proxy.example:8080/agora?***'" in text
    assert settings.notify_url.endswith("?sig=QSECRET")  # the value itself stays usable


@pytest.mark.parametrize("cert_reqs", ["none", "optional"])
def test_redis_cert_reqs_joins_a_rediss_url(cert_reqs: str) -> None:
    url = "rediss://:p4ss@redis.example:6380/0?ssl_ca_certs=%2Fetc%2Fca.pem&ssl_cert_reqs=required"
    settings = Settings.from_env({"REDIS_URL": url, "REDIS_SSL_CERT_REQS": cert_reqs, "APP_ENV": "test"})
    assert settings.redis_url == (
        f"rediss://:p4ss@redis.example:6380/0?ssl_ca_certs=%2Fetc%2Fca.pem&ssl_cert_reqs={cert_reqs}"
    )
    assert "p4ss" not in repr(settings)


def test_redis_cert_reqs_default_and_misuse() -> None:
    url = "rediss://redis.example:6380/0"
    assert Settings.from_env({"REDIS_URL": url, "APP_ENV": "test"}).redis_url == url
    with pytest.raises(ConfigError, match="REDIS_SSL_CERT_REQS applies to a rediss:// REDIS_URL only"):
        Settings.from_env({"REDIS_URL": "redis://h:6379/0", "REDIS_SSL_CERT_REQS": "none", "APP_ENV": "test"})
    with pytest.raises(ConfigError, match="REDIS_SSL_CERT_REQS"):
        Settings.from_env({"REDIS_URL": url, "REDIS_SSL_CERT_REQS": "never", "APP_ENV": "test"})
