"""``make run``: the whole service in the foreground, wired together, for a newcomer's machine.

Starts an embedded ``redis-server`` (data under ``./var/redis``, append-only file on) unless ``REDIS_URL``
is set, then the two Procfile processes (gunicorn and ``rq worker --with-scheduler``) with development
defaults for anything not configured. Prints where to look and how to send a signed callback. Ctrl-C (or
SIGTERM) stops everything it started; if one process dies, the others are stopped too.

When no Agora credentials are configured (``AGORA_CUSTOMER_ID`` unset), the Agora emulator is started too
(``python -m agora_emulator``, first free port from 8090), its callbacks posted to this receiver and signed with
the NCS secret, and the web and worker processes pointed at it through ``AGORA_API_BASE_URL``.

Everything listens on 127.0.0.1 only (web, Redis, emulator). With real Agora credentials in the environment
(``AGORA_CUSTOMER_ID`` or ``AGORA_CUSTOMER_SECRET`` set) it refuses to start on its well-known development
defaults (``API_TOKENS=dev-token``, ``AGORA_NCS_SECRETS=dev-ncs-secret``): set your own first.

Environment knobs of its own (``docs/contract.md`` §4.3): ``DEV_VAR_DIR`` (default ``./var``), ``DEV_REDIS_PORT``
(default: first free port from 6379), ``DEV_EMULATOR_TIME_SCALE`` (default 1: Agora's own pace).
If the parent (``make``) goes away, everything stops as on Ctrl-C.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from workers.core.config import DEV_API_TOKEN, DEV_NCS_SECRET
from workers.core.redact import redact_url

BIND_HOST = "127.0.0.1"  # never 0.0.0.0: the development defaults are public knowledge
EMULATOR = {
    "AGORA_APP_ID": "emulator-app-id",
    "AGORA_CUSTOMER_ID": "emulator-customer-id",
    "AGORA_CUSTOMER_SECRET": "emulator-customer-secret",
    "AGORA_STORAGE_VENDOR": "1",
    "AGORA_STORAGE_REGION": "0",
    "AGORA_STORAGE_BUCKET": "demo-recordings",
    "AGORA_STORAGE_ACCESS_KEY": "demo-access-key",
    "AGORA_STORAGE_SECRET_KEY": "demo-secret-key",
}
ROOT = Path(__file__).resolve().parent.parent
GENERATE = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def dev_defaults_refused(environ: Mapping[str, str]) -> str | None:
    """Why ``make run`` must not start with this environment, or None.

    With real Agora credentials present, the well-known development token and NCS secret (which ``make run``
    would otherwise fill in) would let anyone who reaches the service start recordings billed to the account.
    """
    real = [name for name in ("AGORA_CUSTOMER_ID", "AGORA_CUSTOMER_SECRET") if environ.get(name, "").strip()]
    if not real:
        return None
    problems = []
    for name, default, how in (
        ("API_TOKENS", DEV_API_TOKEN, f"export API_TOKENS=$({GENERATE})"),
        (
            "AGORA_NCS_SECRETS",
            DEV_NCS_SECRET,
            "export AGORA_NCS_SECRETS=<the secret Agora Console shows under Notifications>",
        ),
    ):
        items = [item.strip() for item in environ.get(name, "").split(",") if item.strip()]
        if not items:
            problems.append(
                f"  {name} is not set (make run would use the well-known {default!r}):\n    {how}"
            )
        elif default in items:
            problems.append(f"  {name} holds the well-known {default!r}: replace it:\n    {how}")
    if not problems:
        return None
    return (
        f"real Agora credentials are set ({', '.join(real)}), so make run refuses its development defaults: "
        "anyone who can reach the service could start recordings billed to your Agora account. "
        "Set your own first:\n" + "\n".join(problems)
    )


def web_command(bin_dir: Path, port: str) -> list[str]:
    """The Procfile's web command, bound to loopback only."""
    return [
        str(bin_dir / "gunicorn"), "-c", "gunicorn.conf.py", "--bind", f"{BIND_HOST}:{port}",
        "webhook_service:create_app()",
    ]  # fmt: skip


def free_port(start: int) -> int:
    """The first port from ``start`` that nothing listens on (loopback)."""
    for port in range(start, start + 200):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError(f"no free port from {start}")


def wait_for(url: str, timeout: float, processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            raise RuntimeError("a process exited during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def wait_for_redis(port: int, process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("redis-server exited during start-up (see var/redis/redis.log)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("redis-server did not answer PING")


def banner(port: int, env: dict[str, str], emulator_url: str | None) -> str:
    base = f"http://{BIND_HOST}:{port}"
    secret = env["AGORA_NCS_SECRETS"].split(",")[0]
    token = env["API_TOKENS"].split(",")[0]
    secret_note = secret
    if emulator_url is None:  # real Agora credentials: print no secret, let the shell fill them in
        secret, token = '"${AGORA_NCS_SECRETS%%,*}"', "${API_TOKENS%%,*}"
        secret_note = "the first of your AGORA_NCS_SECRETS"
    body = (
        '{"noticeId":"demo-1","productId":3,"eventType":40,"notifyMs":1700000000000,"payload":{"cname":"demo",'
        '"uid":"527841","sid":"demo-sid","sequence":0,"sendts":1700000000000,"serviceType":1,'
        '"details":{"msgName":"recorder_started","status":0}}}'
    )
    return f"""
  Agora recording companion is running (Ctrl-C stops everything).

  health        {base}/healthz    readiness {base}/readyz
  NCS receiver  {base}/webhooks/agora   (NCS secret: {secret_note})
  API           {base}/v1/sessions/<sid>/events   (Authorization: Bearer {token})
  Redis         {redact_url(env["REDIS_URL"])}

  Send a signed callback, then read it back:

  body='{body}'
  curl -s {base}/webhooks/agora -H 'Content-Type: application/json' -H "Agora-Signature-V2: $(printf %s "$body" | openssl dgst -sha256 -hmac {secret} -r | cut -d' ' -f1)" -d "$body"; echo
  curl -s -H "Authorization: Bearer {token}" {base}/v1/sessions/demo-sid/events; echo
""" + (emulator_banner(base, token, emulator_url) if emulator_url else "")


def emulator_banner(base: str, token: str, emulator_url: str) -> str:
    """How to make the emulator record a channel and watch its callbacks arrive."""
    env = f"AGORA_API_BASE_URL={emulator_url} AGORA_APP_ID={EMULATOR['AGORA_APP_ID']}"
    env += f" AGORA_CUSTOMER_ID={EMULATOR['AGORA_CUSTOMER_ID']} AGORA_CUSTOMER_SECRET={EMULATOR['AGORA_CUSTOMER_SECRET']}"
    auth = f'-H "Authorization: Bearer {token}"'
    return f"""
  Agora emulator  {emulator_url}   (no Agora credentials configured; state: {emulator_url}/_emulator/state)

  Start a recording (the emulator plays Agora), watch it, stop it:

  curl -s {auth} -H 'Content-Type: application/json' -d '{{"cname":"demo","mode":"mix"}}' {base}/v1/recordings; echo
  curl -s {auth} {base}/v1/recordings/<id>; echo            # pending -> starting -> recording
  curl -s {auth} -X POST {base}/v1/recordings/<id>/stop; echo
  curl -s {auth} {base}/v1/recordings/<id>/files; echo      # completed, every file uploaded
  curl -s {auth} {base}/v1/recordings/<id>/events; echo     # API calls, Agora calls, callbacks

  Or drive the emulator with the bare Agora client: {env} .venv/bin/python -m workers.agora demo --seconds 30
"""


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    refused = dev_defaults_refused(os.environ)
    if refused:
        print(f"make run: {refused}", file=sys.stderr)
        return 1
    var_dir = Path(os.environ.get("DEV_VAR_DIR", ROOT / "var")).resolve()
    env = dict(os.environ)
    env.setdefault("APP_ENV", "development")
    env.setdefault("SECRET_KEY", secrets.token_urlsafe(32))  # the dashboard's cookies; new on every run
    env.setdefault("AGORA_NCS_SECRETS", DEV_NCS_SECRET)
    env.setdefault("API_TOKENS", DEV_API_TOKEN)
    env.setdefault("PORT", "8000")
    env.setdefault("PYTHONUNBUFFERED", "1")
    bin_dir = Path(sys.executable).parent
    processes: list[subprocess.Popen[bytes]] = []

    def start(command: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        process: subprocess.Popen[bytes] = subprocess.Popen(command, cwd=ROOT, env=env, **kwargs)  # type: ignore[call-overload]
        processes.append(process)
        return process

    def stop_all() -> None:
        # Newest first, each fully stopped before the next: the worker and web still need Redis to shut down.
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if "REDIS_URL" not in os.environ:
            redis_server = shutil.which("redis-server")
            if redis_server is None:
                print("redis-server is not installed (make run installs it with apt-get)", file=sys.stderr)
                return 1
            redis_port = int(os.environ.get("DEV_REDIS_PORT") or free_port(6379))
            redis_dir = var_dir / "redis"
            redis_dir.mkdir(parents=True, exist_ok=True)
            redis = start(
                [
                    redis_server,
                    "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(redis_dir),
                    "--appendonly", "yes", "--save", "", "--logfile", str(redis_dir / "redis.log"),
                ]
            )  # fmt: skip
            wait_for_redis(redis_port, redis)
            env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        emulator_url = None
        if not env.get("AGORA_CUSTOMER_ID"):
            emulator_port = free_port(8090)
            emulator_url = f"http://127.0.0.1:{emulator_port}"
            for name, value in EMULATOR.items():
                env.setdefault(name, value)
            env["AGORA_API_BASE_URL"] = emulator_url
            start(
                [
                    sys.executable, "-m", "agora_emulator", "--port", str(emulator_port),
                    "--notify-url", f"http://127.0.0.1:{env['PORT']}/webhooks/agora",
                    "--ncs-secret", env["AGORA_NCS_SECRETS"].split(",")[0],
                    "--app-id", env["AGORA_APP_ID"], "--customer-id", env["AGORA_CUSTOMER_ID"],
                    "--customer-secret", env["AGORA_CUSTOMER_SECRET"],
                    "--time-scale", os.environ.get("DEV_EMULATOR_TIME_SCALE", "1"),
                ]
            )  # fmt: skip
            wait_for(f"{emulator_url}/_emulator/state", 15, processes)
        start(web_command(bin_dir, env["PORT"]))
        start(
            [
                str(bin_dir / "rq"), "worker", "-c", "workers.rq_config",
                "-w", "workers.worker.RecordingWorker", "--with-scheduler",
            ]
        )  # fmt: skip
        wait_for(f"http://127.0.0.1:{env['PORT']}/readyz", 30, processes)
        print(banner(int(env["PORT"]), env, emulator_url), flush=True)
        parent = os.getppid()
        while all(p.poll() is None for p in processes):
            if os.getppid() != parent:  # make was killed without passing the signal on
                return 0
            time.sleep(0.5)
        print("a process exited; stopping the others", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except RuntimeError as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
