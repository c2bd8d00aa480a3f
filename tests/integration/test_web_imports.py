"""The web process imports only what it needs: a fresh interpreter builds the app, then lists what it
loaded. The orchestration, the Agora client, the drain and the RQ runtime belong to workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.redis_server import RedisServer

NEVER_IN_WEB = (
    "workers.jobs",
    "workers.worker",
    "workers.rq_config",
    "workers.recordings.runner",
    "workers.recordings.decide",
    "workers.recordings.routing",
    "workers.recordings.liveness",
    "workers.agora.client",
    "workers.agora.transport",
    "workers.ncs.drain",
    "requests",
)

PROBE = """
import json, sys
import webhook_service
webhook_service.create_app()
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by_the_web(redis_server: RedisServer) -> set[str]:
    env = {**os.environ, "REDIS_URL": redis_server.url, "APP_ENV": "test", "LOG_LEVEL": "ERROR"}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_the_web_process_loads_no_worker_code(redis_server: RedisServer) -> None:
    loaded = loaded_by_the_web(redis_server)
    assert {"webhook_service.api.recordings", "workers.recordings.store", "workers.ncs.inbox"} <= loaded
    assert sorted(loaded & set(NEVER_IN_WEB)) == []
