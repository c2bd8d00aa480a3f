"""Settings read from the environment, validated once at start-up.

Every field maps to one environment variable (see ``docs/contract.md`` §4). A missing or malformed value raises
:class:`~workers.core.errors.ConfigError` naming the variable, so a process refuses to start rather than
misbehave later. Secret-shaped settings are checked for their shape too (``NOTIFY_SECRET``, ``AGORA_NCS_SECRETS``,
``API_TOKENS``, the Agora and storage credentials), never echoing the value. Secrets are kept out of ``repr``
and URLs shown there without userinfo, query or fragment, so a logged ``Settings`` never leaks them.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from workers.core.errors import ConfigError
from workers.core.redact import redact_url

T = TypeVar("T")

ENVIRONMENTS = ("production", "development", "test")
REGIONS = ("us", "eu", "ap", "cn")
#: ``make run``'s well-known development defaults: refused in production (and by ``make run`` itself when
#: real Agora credentials are configured).
DEV_NCS_SECRET = "dev-ncs-secret"
DEV_API_TOKEN = "dev-token"
MIN_API_TOKEN_LENGTH = 16  # in production
MIN_NOTIFY_SECRET_BYTES = 16
MIN_SECRET_KEY_LENGTH = 32  # SECRET_KEY, in production
MAX_CREDENTIAL_LENGTH = 1024


@dataclass(frozen=True, repr=False)
class Settings:
    """The whole configuration of a web or worker process."""

    redis_url: str = field(repr=False)  # may carry a password
    environment: str = "production"
    port: int = 8000
    ncs_secrets: tuple[str, ...] = field(default=(), repr=False)
    api_tokens: tuple[str, ...] = field(default=(), repr=False)
    ncs_max_body_bytes: int = 64 * 1024
    ncs_dedupe_ttl_seconds: int = 7 * 24 * 3600
    session_retention_seconds: int = 30 * 24 * 3600
    session_max_events: int = 5000
    redis_socket_timeout: float = 5.0
    log_level: str = "INFO"
    agora_app_id: str = ""
    agora_customer_id: str = field(default="", repr=False)
    agora_customer_secret: str = field(default="", repr=False)
    agora_api_base_url: str = ""
    agora_region: str = "us"
    storage_vendor: int | None = None
    storage_region: int | None = None
    storage_bucket: str = ""
    storage_access_key: str = field(default="", repr=False)
    storage_secret_key: str = field(default="", repr=False)
    storage_prefix: tuple[str, ...] = ()
    agora_rate_limit: int = 10
    #: The App ID's concurrency quota (Agora's defaults): recordings beyond wait in ``queued``; 0 = no limit.
    agora_max_recorders: int = 50
    agora_max_web_recorders: int = 200
    agora_read_timeout_seconds: float = 10.0
    recording_time_scale: float = 1.0
    upload_stuck_seconds: int = 3600
    notify_url: str = ""
    notify_secret: str = field(default="", repr=False)
    #: Signs the dashboard's session cookies (required in production; outside it a random one per process).
    secret_key: str = field(default="", repr=False)

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    def __repr__(self) -> str:
        """Every field but the secrets; URLs without userinfo, query and fragment (they may carry a password)."""
        shown = (
            f"{f.name}={redact_url(value)!r}" if isinstance(value, str) else f"{f.name}={value!r}"
            for f in fields(self)
            if f.repr
            for value in (getattr(self, f.name),)
        )
        return f"Settings({', '.join(shown)})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default: ``os.environ``); raise ConfigError naming the variable."""
        env = _Env(os.environ if environ is None else environ)
        environment = env.choice("APP_ENV", ENVIRONMENTS, "production")
        settings = cls(
            redis_url=_with_cert_reqs(
                env.url("REDIS_URL", schemes=("redis", "rediss", "unix"), required=True),
                env.choice("REDIS_SSL_CERT_REQS", ("required", "optional", "none"), "required"),
            ),
            environment=environment,
            port=env.integer("PORT", 8000, low=1, high=65535),
            ncs_secrets=env.secret_list("AGORA_NCS_SECRETS"),
            api_tokens=env.secret_list("API_TOKENS"),
            ncs_max_body_bytes=env.integer("NCS_MAX_BODY_BYTES", 64 * 1024, low=1024, high=16 * 1024 * 1024),
            ncs_dedupe_ttl_seconds=env.integer("NCS_DEDUPE_TTL_SECONDS", 7 * 24 * 3600, low=60),
            session_retention_seconds=env.integer("SESSION_RETENTION_SECONDS", 30 * 24 * 3600, low=60),
            session_max_events=env.integer("SESSION_MAX_EVENTS", 5000, low=10),
            redis_socket_timeout=env.number("REDIS_SOCKET_TIMEOUT", 5.0, low=0.1, high=60.0),
            log_level=env.choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO", upper=True),
            agora_app_id=env.text("AGORA_APP_ID"),
            agora_customer_id=env.credential("AGORA_CUSTOMER_ID", forbid=":"),
            agora_customer_secret=env.credential("AGORA_CUSTOMER_SECRET"),
            agora_api_base_url=env.url("AGORA_API_BASE_URL", schemes=("http", "https")),
            agora_region=env.choice("AGORA_REGION", REGIONS, "us", upper=False),
            storage_vendor=env.optional_integer("AGORA_STORAGE_VENDOR", low=0, high=100),
            storage_region=env.optional_integer("AGORA_STORAGE_REGION", low=0, high=100),
            storage_bucket=env.text("AGORA_STORAGE_BUCKET"),
            storage_access_key=env.credential("AGORA_STORAGE_ACCESS_KEY"),
            storage_secret_key=env.credential("AGORA_STORAGE_SECRET_KEY"),
            storage_prefix=env.path_list("AGORA_STORAGE_PREFIX"),
            agora_rate_limit=env.integer("AGORA_RATE_LIMIT", 10, low=0, high=10_000),
            agora_max_recorders=env.integer("AGORA_MAX_RECORDERS", 50, low=0, high=1_000_000),
            agora_max_web_recorders=env.integer("AGORA_MAX_WEB_RECORDERS", 200, low=0, high=1_000_000),
            agora_read_timeout_seconds=env.number("AGORA_READ_TIMEOUT_SECONDS", 10.0, low=0.1, high=15.0),
            recording_time_scale=env.number("RECORDING_TIME_SCALE", 1.0, low=0.001, high=100.0),
            upload_stuck_seconds=env.integer("UPLOAD_STUCK_SECONDS", 3600, low=10),
            notify_url=env.url("NOTIFY_URL", schemes=("http", "https")),
            notify_secret=env.notify_secret("NOTIFY_SECRET"),
            secret_key=env.credential("SECRET_KEY"),
        )
        if settings.is_production and not settings.ncs_secrets:
            raise ConfigError(
                "AGORA_NCS_SECRETS is required in production: without it no Agora callback can be verified"
            )
        if bool(settings.agora_customer_id) != bool(settings.agora_customer_secret):
            raise ConfigError("AGORA_CUSTOMER_ID and AGORA_CUSTOMER_SECRET must be set together")
        if settings.notify_url and not settings.notify_secret:
            raise ConfigError("NOTIFY_SECRET is required when NOTIFY_URL is set")
        if settings.is_production:
            if DEV_NCS_SECRET in settings.ncs_secrets:
                raise ConfigError(
                    f"AGORA_NCS_SECRETS holds make run's well-known {DEV_NCS_SECRET!r}: use the secret Agora Console "
                    "shows for your project"
                )
            for number, token in enumerate(settings.api_tokens, 1):
                if len(token) < MIN_API_TOKEN_LENGTH:
                    raise ConfigError(
                        f"API_TOKENS: token {number} has {len(token)} characters; production needs at least "
                        f"{MIN_API_TOKEN_LENGTH} (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                    )
            if len(settings.secret_key) < MIN_SECRET_KEY_LENGTH:
                raise ConfigError(
                    f"SECRET_KEY is required in production (at least {MIN_SECRET_KEY_LENGTH} characters): it "
                    "signs the dashboard's session cookies "
                    "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
                )
        return settings


@functools.cache
def current_settings() -> Settings:
    """The settings of this process, read from ``os.environ`` on first use (workers and jobs)."""
    return Settings.from_env()


def _with_cert_reqs(redis_url: str, cert_reqs: str) -> str:
    """``REDIS_URL`` with ``ssl_cert_reqs`` when TLS certificates are not to be verified in full: managed Redis
    add-ons (Heroku's among them) give a ``rediss://`` URL whose server certificate is self-signed, and own
    the URL, so the setting is separate. Every client built from the URL (web, workers, RQ) gets it."""
    if cert_reqs == "required":
        return redis_url
    parts = urlsplit(redis_url)
    if parts.scheme != "rediss":
        raise ConfigError("REDIS_SSL_CERT_REQS applies to a rediss:// REDIS_URL only")
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "ssl_cert_reqs"]
    query.append(("ssl_cert_reqs", cert_reqs))
    return urlunsplit(parts._replace(query=urlencode(query)))


class _Env:
    """Typed readers over an environment mapping; each error names its variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def text(self, name: str, default: str = "") -> str:
        return self._environ.get(name, default).strip()

    def _convert(self, name: str, default: T, convert: Callable[[str], T], what: str) -> T:
        raw = self.text(name)
        if not raw:
            return default
        try:
            return convert(raw)
        except ValueError:
            raise ConfigError(f"{name} must be {what}, got {raw!r}") from None

    def integer(self, name: str, default: int, low: int = 0, high: int | None = None) -> int:
        value = self._convert(name, default, int, "an integer")
        return self._bounded(name, value, low, high)

    def optional_integer(self, name: str, low: int = 0, high: int | None = None) -> int | None:
        value = self._convert(name, None, int, "an integer")
        return None if value is None else self._bounded(name, value, low, high)

    def number(self, name: str, default: float, low: float, high: float) -> float:
        return self._bounded(name, self._convert(name, default, float, "a number"), low, high)

    @staticmethod
    def _bounded(name: str, value: T, low: T, high: T | None) -> T:
        if value < low or (high is not None and value > high):  # type: ignore[operator]
            upper = "" if high is None else f" and at most {high}"
            raise ConfigError(f"{name} must be at least {low}{upper}, got {value}")
        return value

    def choice(self, name: str, allowed: tuple[str, ...], default: str, upper: bool = False) -> str:
        raw = self.text(name)
        if not raw:
            return default
        value = raw.upper() if upper else raw.lower()
        if value not in allowed:
            raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
        return value

    def secret_list(self, name: str) -> tuple[str, ...]:
        """Comma-separated secrets, trimmed; an empty item (a stray comma, an unset ``$VAR`` in a rotation
        list) or whitespace inside one is refused. Never echoes a value."""
        raw = self.text(name)
        if not raw:
            return ()
        items = tuple(part.strip() for part in raw.split(","))
        for number, item in enumerate(items, 1):
            if not item:
                raise ConfigError(
                    f"{name}: item {number} of {len(items)} is empty (a stray comma, or an unset variable?)"
                )
            self._check_credential(name, item, what=f"item {number}")
        return items

    def credential(self, name: str, forbid: str = "") -> str:
        """A key, secret or id: printable ASCII without whitespace (and without ``forbid``). Never echoed."""
        value = self.text(name)
        if value:
            self._check_credential(name, value, forbid=forbid)
        return value

    @staticmethod
    def _check_credential(name: str, value: str, what: str = "the value", forbid: str = "") -> None:
        if len(value) > MAX_CREDENTIAL_LENGTH:
            raise ConfigError(f"{name}: {what} is longer than {MAX_CREDENTIAL_LENGTH} characters")
        if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
            raise ConfigError(
                f"{name}: {what} must be printable ASCII without spaces (a copy-paste accident?)"
            )
        bad = sorted({c for c in forbid if c in value})
        if bad:
            raise ConfigError(f"{name}: {what} must not contain {' '.join(bad)}")

    def notify_secret(self, name: str) -> str:
        """A Standard Webhooks signing secret: ``whsec_`` + base64 of at least 16 bytes, or any other string of
        at least 16 characters (used as the key as it is). Refused here rather than at every delivery."""
        value = self.credential(name)
        if not value:
            return value
        if value.startswith("whsec_"):
            try:
                key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
            except (binascii.Error, ValueError):
                raise ConfigError(
                    f"{name}: a whsec_ secret must be whsec_ followed by valid base64 (Standard Webhooks)"
                ) from None
            if len(key) < MIN_NOTIFY_SECRET_BYTES:
                raise ConfigError(
                    f"{name}: a whsec_ secret must decode to at least {MIN_NOTIFY_SECRET_BYTES} bytes, "
                    f"got {len(key)}"
                )
        elif len(value) < MIN_NOTIFY_SECRET_BYTES:
            raise ConfigError(
                f"{name} must be at least {MIN_NOTIFY_SECRET_BYTES} characters (or whsec_ + base64 of "
                f"at least {MIN_NOTIFY_SECRET_BYTES} bytes)"
            )
        return value

    def path_list(self, name: str) -> tuple[str, ...]:
        parts = tuple(part for part in self.text(name).split("/") if part)
        for part in parts:
            if not part.isascii() or not part.isalnum():
                raise ConfigError(f"{name} directories may hold only letters and digits, got {part!r}")
        return parts

    def url(self, name: str, schemes: tuple[str, ...], required: bool = False) -> str:
        raw = self.text(name)
        if not raw:
            if required:
                raise ConfigError(f"{name} is required")
            return ""
        parts = urlsplit(raw)
        if parts.scheme not in schemes or not (parts.netloc or parts.scheme == "unix"):
            # Never echo the value: a Redis URL may carry a password.
            raise ConfigError(f"{name} must be a URL with scheme {' or '.join(schemes)}")
        return raw
