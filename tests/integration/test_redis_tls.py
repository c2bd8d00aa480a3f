"""A managed Redis that speaks TLS with a self-signed certificate (Heroku's add-on): ``REDIS_SSL_CERT_REQS=none``
lets the web process, its inbox and a worker's heartbeat reach it; without it they refuse the certificate."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.redis_server import free_port
from tests.support.service import API_TOKEN, NCS_SECRET
from tests.support.wait import wait_until
from webhook_service import create_app
from workers.core import schema
from workers.core.config import Settings
from workers.ncs.inbox import Inbox
from workers.recordings import liveness


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server answering only TLS, with a certificate it signed itself; yields its rediss:// URL."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make the test certificate"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1"]
        + ["-subj", "/CN=redis.example"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            cert,
            "--tls-key-file",
            key,
        ]
        + ["--tls-ca-cert-file", cert, "--tls-auth-clients", "no", "--save", "", "--appendonly", "no"]
        + ["--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"rediss://127.0.0.1:{port}/0"
    trusting = redis.Redis.from_url(url + "?ssl_cert_reqs=none")
    try:
        wait_until(lambda: _answers(trusting), what="the TLS redis-server to answer")
        yield url
    finally:
        trusting.close()
        process.kill()
        process.wait()


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def settings_for(url: str, cert_reqs: str) -> Settings:
    environ = {
        "REDIS_URL": url,
        "REDIS_SSL_CERT_REQS": cert_reqs,
        "APP_ENV": "test",
        "AGORA_NCS_SECRETS": NCS_SECRET,
        "API_TOKENS": API_TOKEN,
        "REDIS_SOCKET_TIMEOUT": "2",
    }
    return Settings.from_env(environ)


def test_a_self_signed_redis_is_reached_with_cert_reqs_none(
    tls_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tls_redis, "none")
    assert settings.redis_url.endswith("?ssl_cert_reqs=none")
    assert create_app(settings).test_client().get("/readyz").status_code == 200

    connection = redis.Redis.from_url(settings.redis_url)
    assert Inbox(connection, 60).accept("notice-1", "room1", b"{}") is True  # the web's own connection path
    assert connection.xlen(schema.inbox(schema.partition_of("room1"))) == 1

    # A worker's heartbeat runs on a pool of its own: it must speak TLS too, and keep its key alive.
    monkeypatch.setattr(liveness, "_beating", {})  # this process's heartbeat, started afresh on this Redis
    key = schema.worker_alive(liveness.keep_alive(connection))
    connection.pexpire(key, 300)  # only a beat brings it back above that
    wait_until(lambda: int(connection.pttl(key)) > 1000, what="the heartbeat to refresh its key over TLS")
    connection.flushall()
    connection.close()


def test_without_it_the_certificate_is_refused_and_readyz_says_so(tls_redis: str) -> None:
    settings = settings_for(tls_redis, "required")
    response = create_app(settings).test_client().get("/readyz")
    assert response.status_code == 503
