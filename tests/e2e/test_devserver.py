"""``make run`` (webhook_service/devserver.py) as a process: loopback only, and no well-known defaults next to
real Agora credentials (issue 10). The rule itself: ``tests/unit/test_devserver.py``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer, free_port
from tests.support.stack import port_taken
from webhook_service import devserver

ROOT = Path(__file__).resolve().parents[2]
REAL = {
    "AGORA_APP_ID": "app",
    "AGORA_CUSTOMER_ID": "real-customer-id",
    "AGORA_CUSTOMER_SECRET": "real-secret",
}


def clean_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any service setting, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AGORA_", "API_", "NOTIFY_", "REDIS_", "APP_", "DEV_"))
    }
    return {**env, "DEV_VAR_DIR": str(tmp_path / "var"), **extra}


def test_web_command_binds_loopback_and_gunicorn_honours_it() -> None:
    """The Procfile's gunicorn.conf.py binds 0.0.0.0 (a deployment listens for Agora); make run overrides it."""
    command = devserver.web_command(Path(sys.executable).parent, "8123")
    assert command[command.index("--bind") + 1] == "127.0.0.1:8123"
    shown = subprocess.run(
        [*command[:-1], "--print-config", command[-1]], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert "['127.0.0.1:8123']" in next(
        line for line in shown.stdout.splitlines() if line.startswith("bind ")
    )


def test_make_run_refuses_to_start_on_dev_defaults_with_real_credentials(tmp_path: Path) -> None:
    """Issue 10: with real Agora credentials in the environment, make run started on 0.0.0.0 with the
    well-known dev-token: anyone on the network could start recordings billed to that account. Now it stops
    before starting anything, saying what to set."""
    env = clean_environment(tmp_path, **REAL, REDIS_URL="redis://127.0.0.1:1/0", PORT=str(free_port()))
    done = subprocess.run(
        [sys.executable, "-m", "webhook_service.devserver"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "API_TOKENS" in done.stderr and "AGORA_NCS_SECRETS" in done.stderr
    assert "real Agora credentials" in done.stderr
    assert "is running" not in done.stdout


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket in LISTEN state on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc/net/tcp (Linux)")
def test_make_run_listens_on_loopback_only(tmp_path: Path, redis_server: RedisServer) -> None:
    """Issue 10: make run's web listened on 0.0.0.0. Now every socket it opens is on 127.0.0.1."""
    for _ in range(3):  # another port when the one picked was taken meanwhile (a parallel test worker)
        port = free_port()
        env = clean_environment(tmp_path, REDIS_URL=redis_server.url, PORT=str(port), WEB_CONCURRENCY="1")
        process = subprocess.Popen(
            [sys.executable, "-m", "webhook_service.devserver"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            output = []
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                line = process.stdout.readline()
                if not line:
                    break
                output.append(line)
                if "is running" in line:
                    break
            if not any("is running" in line for line in output) and port_taken("".join(output)):
                continue
            assert any("is running" in line for line in output), "".join(output)
            addresses = listening_addresses(port)
            assert addresses == {"0100007F"}, addresses  # 127.0.0.1, nothing on 0.0.0.0 or ::
            return
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
    raise AssertionError("no free port for make run")
