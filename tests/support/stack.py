"""The service as deployed: the Procfile's ``web`` and ``worker`` lines as real processes on loopback."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def port_taken(log: str) -> bool:
    """Whether a server's log says its port was taken (gunicorn's words, or the socket error's)."""
    return "Connection in use" in log or "Address already in use" in log


def procfile_command(name: str) -> list[str]:
    """The command of one Procfile process type, split as a shell would (executables from this venv)."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        kind, _, command = line.partition(":")
        if kind.strip() == name:
            argv = shlex.split(command)
            argv[0] = str(BIN / argv[0])
            return argv
    raise KeyError(name)


class Stack:
    """redis-server + gunicorn (Procfile web) + rq worker (Procfile worker), with the given environment."""

    def __init__(self, directory: Path, env: dict[str, str]) -> None:
        self.directory = directory
        self.redis = RedisServer(directory / "redis", appendonly=True)
        self.port = free_port()
        self.env = {
            **os.environ,
            "REDIS_URL": self.redis.url,
            "PORT": str(self.port),
            "WEB_CONCURRENCY": "2",
            "PYTHONUNBUFFERED": "1",
            "SECRET_KEY": "stack-secret-key-for-signing-dashboard-cookies",
            **env,
        }
        self.web: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, name: str, log_name: str) -> subprocess.Popen[bytes]:
        with open(self.directory / log_name, "ab") as log:  # the child keeps its own descriptor
            return subprocess.Popen(
                procfile_command(name), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a kill takes its children (scheduler) too
            )  # fmt: skip

    def start(self) -> Stack:
        planned = self.redis.url
        self.redis.start()
        if self.env.get("REDIS_URL") == planned:  # its port changed if another process took it meanwhile
            self.env["REDIS_URL"] = self.redis.url
        self.start_worker()
        for _ in range(3):
            self.web = self._spawn("web", "web.log")
            if self.wait_ready(60):
                return self
            if not port_taken(self.log("web.log")) or self.web.poll() is None:
                break
            self.port = free_port()  # taken between free_port() and gunicorn's bind: another one
            self.env["PORT"] = str(self.port)
        raise RuntimeError("web did not become ready:\n" + self.log("web.log"))

    def start_worker(self) -> subprocess.Popen[bytes]:
        worker = self._spawn("worker", f"worker-{len(self.workers)}.log")
        self.workers.append(worker)
        return worker

    def kill_worker(self, worker: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its scheduler child, as a crashed dyno would be."""
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)

    def log(self, name: str) -> str:
        path = self.directory / name
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        for process in [*self.workers, self.web]:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        self.redis.stop()

    def kill(self) -> None:
        """SIGKILL every process (workers with their scheduler, web with its workers, Redis) and reap them: the
        end of a test's stack, where nothing needs a clean shutdown (``stop()`` takes seconds)."""
        for process in [*self.workers, self.web]:
            if process is not None and process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for process in [*self.workers, self.web]:
            if process is not None:
                process.wait(10)
        self.redis.kill()

    # -- process faults (chaos runs; additive to the above) -------------------------------------------------

    def wait_ready(self, timeout: float = 20.0) -> bool:
        """Until ``/readyz`` answers 200 (web up, Redis reachable), at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return True
            except requests.RequestException:
                pass
            if self.web is not None and self.web.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def restart_web(self, timeout: float = 20.0) -> None:
        """SIGTERM the web process group (gunicorn finishes its requests), then start it again on the same port."""
        if self.web is not None and self.web.poll() is None:
            os.killpg(self.web.pid, signal.SIGTERM)
            try:
                self.web.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.web.pid, signal.SIGKILL)
                self.web.wait()
        self.web = self._spawn("web", "web.log")
        if not self.wait_ready(timeout):
            raise RuntimeError("web did not become ready after a restart:\n" + self.log("web.log"))

    def kill_redis(self) -> None:
        """``kill -9`` of redis-server: only what its append-only file holds survives."""
        self.redis.kill()

    def start_redis(self) -> None:
        """Start redis-server again on the same port and directory; it replays its append-only file."""
        self.redis.start()

    def alive_workers(self) -> list[subprocess.Popen[bytes]]:
        """The worker processes still running."""
        return [worker for worker in self.workers if worker.poll() is None]


def start_emulator_process(
    directory: Path, *args: str, log_name: str = "emulator.log"
) -> tuple[subprocess.Popen[bytes], str]:
    """The Agora emulator as its own process (``python -m agora_emulator`` with ``args``, as the contract runs
    it) on a free loopback port, once its control API answers; returns the process and its base URL."""
    for _ in range(3):
        port = free_port()
        command = [sys.executable, "-m", "agora_emulator", "--port", str(port), *args]
        with open(directory / log_name, "ab") as log:
            process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/_emulator/state", timeout=1).status_code == 200:
                    return process, url
            except requests.RequestException:
                pass
            time.sleep(0.05)
        text = (directory / log_name).read_text(errors="replace")
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if not port_taken(text):
            raise RuntimeError("the emulator did not start:\n" + text[-4000:])
    raise RuntimeError("the emulator found no free port")
