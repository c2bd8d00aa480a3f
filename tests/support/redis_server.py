"""A real ``redis-server`` for the tests, on a free loopback port, that can be stopped and started again; and the
check every fixture that hands a Redis to a test runs in its teardown (:func:`assert_known_keys`)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from workers.core import schema


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process; ``stop()`` and ``start()`` keep the same port and data directory.

    The first ``start()`` takes another free port when the one picked was taken meanwhile (by a process of
    a parallel test worker, say); a later one keeps the port, as a restarted Redis would.
    """

    def __init__(self, directory: Path, port: int | None = None, appendonly: bool = False) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError("redis-server is not installed; run the suite with `make test`")
        self.executable = executable
        self.directory = directory
        self.port = port or free_port()
        self._port_given = port is not None
        self._started_once = False
        self.appendonly = appendonly
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        for _ in range(5):
            if self._start_once():
                self._started_once = True
                return
            if self._started_once or self._port_given:
                break
            self.port = free_port()  # somebody took the port between free_port() and the bind: another one
        raise RuntimeError(f"redis-server exited: {self._log_tail()}")

    def _start_once(self) -> bool:
        """Start the process and wait until it answers; False when it exited because its port was taken."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.executable,
                "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--save", "", "--appendonly", "yes" if self.appendonly else "no",
                "--logfile", str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                if "Address already in use" in self._log_tail():
                    return False
                raise RuntimeError(f"redis-server exited: {self._log_tail()}")
            if self.ping():
                return True
            time.sleep(0.01)
        raise RuntimeError(f"redis-server did not answer within 30 s: {self._log_tail()}")

    def _log_tail(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace")[-500:] if path.exists() else ""

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer would: no shutdown save; what survives is the append-only file.

        ``start()`` afterwards brings it back on the same port and directory, replaying that file.
        """
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


def assert_known_keys(server: RedisServer, *, reported: set[str] | None = None) -> None:
    """Every key in the server (every database) matches a key of the Redis schema or is RQ's own: the
    teardown check of every fixture that hands a Redis to a test, run before the server is flushed or stopped.

    A server the test left stopped has nothing to check. ``reported``: for a server shared by several tests,
    the names already reported (each unknown key fails the teardown of the first test that leaves it).
    """
    unknown_keys = getattr(schema, "unknown_keys", None)
    if unknown_keys is None or not server.ping():
        return
    found: list[str] = []
    connection = redis.Redis.from_url(server.url, socket_timeout=10)
    try:
        for db in connection.info("keyspace"):  # {"db0": {...}, ...}
            client = redis.Redis(host="127.0.0.1", port=server.port, db=int(db.removeprefix("db")))
            try:
                names = [name.decode("utf-8", "replace") for name in client.scan_iter(count=1000)]
            finally:
                client.close()
            found.extend(name if db == "db0" else f"{name} ({db})" for name in unknown_keys(names))
    finally:
        connection.close()
    if reported is not None:
        found = [name for name in found if name not in reported]
        reported.update(found)
    assert not found, f"keys outside the Redis schema (workers/core/schema.py): {sorted(found)}"
