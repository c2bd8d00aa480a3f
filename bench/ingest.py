"""Ingest benchmark (``make bench``): accepted NCS events/s and latency of POST /webhooks/agora.

Every target runs under the Procfile's gunicorn settings (``gunicorn.conf.py``), against a redis-server with
the append-only file on (as ``make run`` and production), loaded by ``wrk`` on loopback with pre-signed
bodies, each with a unique noticeId. Targets alternate round by round so drift hits all alike; the median
round is reported, and the receiver's figures as ratios of the baselines measured in the same run:

* ``receiver``    the real app (``webhook_service:create_app()``): verify, validate, store + dedupe + queue
* ``bare-flask``  a Flask endpoint that only verifies the HMAC (the issue's ceiling)
* ``bare-wsgi``   the same HMAC check as plain WSGI (reference: the receiver is plain WSGI too)

No worker runs meanwhile (it would compete for the two cores); afterwards the script checks that Redis holds
exactly one stored event per accepted request. Environment: BENCH_SECONDS (10), BENCH_ROUNDS (3),
BENCH_CONNECTIONS (32), BENCH_THREADS (4).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.redis_server import RedisServer, free_port  # noqa: E402
from webhook_service.signature import sign  # noqa: E402
from workers.core import schema  # noqa: E402
from workers.ncs.inbox import install_drain_templates  # noqa: E402

SECRET = "bench-ncs-secret"
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
WRK_THREADS = int(os.environ.get("BENCH_THREADS", "4"))
TARGETS = {
    "receiver": "webhook_service:create_app()",
    "bare-flask": "bench.baselines:bare_flask()",
    "bare-wsgi": "bench.baselines:bare_wsgi()",
}

WRK_SCRIPT = """
local requests, counter, threads = {}, 0, %(threads)d
function init(args)
  for line in io.lines("%(bodies)s") do
    local sig, body = line:match("([^\\t]+)\\t(.*)")
    requests[#requests + 1] = wrk.format("POST", "/webhooks/agora",
      {["Content-Type"] = "application/json", ["Agora-Signature-V2"] = sig}, body)
  end
end
-- setup() runs in the main state and gives each thread its own global `tid` (never shadow it with a local).
local next_tid = 0
function setup(thread) thread:set("tid", next_tid); next_tid = next_tid + 1 end
function request()
  counter = counter + 1
  return requests[((counter * threads + tid) %% #requests) + 1]
end
"""


def make_bodies(path: Path, count: int) -> None:
    """Signed callbacks as Agora sends them (event 43, ~400 bytes), one unique noticeId each."""
    with path.open("w") as out:
        for i in range(count):
            body = json.dumps(
                {
                    "noticeId": uuid.uuid4().hex, "productId": 3, "eventType": 43, "notifyMs": 1700000000000 + i,
                    "payload": {
                        "cname": f"class-{i % 200}", "uid": "527841", "sid": f"{i % 200:032x}", "sequence": i,
                        "sendts": 1700000000000 + i, "serviceType": 1,
                        "details": {"msgName": "recorder_audio_stream_state_changed", "streamUid": 12345,
                                    "state": i % 2, "UtcMs": 1700000000000 + i},
                    },
                },
                separators=(",", ":"),
            )  # fmt: skip
            out.write(sign(body.encode(), SECRET.encode()) + "\t" + body + "\n")


def parse_wrk(output: str) -> dict[str, float]:
    def ms(label: str) -> float:
        match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\b", output, re.MULTILINE)
        if not match:
            raise RuntimeError(f"no {label} in wrk output:\n{output}")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    if not rps or not total:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)),
        "p50": ms("50%"),
        "p99": ms("99%"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": 1 if errors else 0,
    }


def run_round(
    target: str, env: dict[str, str], script: Path, port: int, store: redis.Redis
) -> dict[str, float]:
    if target == "receiver":
        store.flushall()
        install_drain_templates(store)
    command = [str(Path(sys.executable).parent / "gunicorn"), "-c", "gunicorn.conf.py", TARGETS[target]]
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"{target} did not start") from None
                time.sleep(0.1)
        wrk = subprocess.run(
            ["wrk", f"-t{WRK_THREADS}", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", "-s", str(script),
             f"http://127.0.0.1:{port}/webhooks/agora"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        result = parse_wrk(wrk.stdout)
    finally:
        server.terminate()
        server.wait(20)
    if result["non_2xx"] or result["socket_errors"]:
        raise RuntimeError(f"{target} answered errors: {result}")
    if target == "receiver":
        stored = sum(store.xlen(schema.inbox(p)) for p in range(schema.PARTITIONS))
        accepted = int(store.hget(schema.STATS, "accepted") or 0)
        duplicates = int(store.hget(schema.STATS, "duplicate") or 0)
        result["stored"], result["accepted"], result["duplicates"] = stored, accepted, duplicates
        # Every request must be a new event (unique noticeIds), stored exactly once.
        if stored != accepted or duplicates or result["non_2xx"]:
            raise RuntimeError(f"receiver lost, refused or deduplicated events: {result}")
    return result


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="acr-bench-"))
    redis_server = RedisServer(workdir / "redis", appendonly=True)
    redis_server.start()
    store = redis.Redis.from_url(redis_server.url)
    bodies = workdir / "bodies.tsv"
    count = 20_000 * SECONDS  # more than the receiver can take in SECONDS; every request stays unique
    print(f"signing {count} callbacks ...", flush=True)
    make_bodies(bodies, count)
    script = workdir / "load.lua"
    script.write_text(WRK_SCRIPT % {"threads": WRK_THREADS, "bodies": bodies})
    port = free_port()
    env = {
        **os.environ, "PORT": str(port), "REDIS_URL": redis_server.url, "AGORA_NCS_SECRETS": SECRET,
        "API_TOKENS": "bench-api-token-0123456789", "APP_ENV": "production", "SECRET_KEY": "bench-secret-key-0123456789abcdef-0123", "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
    }  # fmt: skip
    results: dict[str, list[dict[str, float]]] = {name: [] for name in TARGETS}
    try:
        for round_number in range(1, ROUNDS + 1):
            for target in TARGETS:
                result = run_round(target, env, script, port, store)
                results[target].append(result)
                print(
                    f"round {round_number} {target:<11} {result['rps']:8.0f} req/s  "
                    f"p50 {result['p50']:6.2f} ms  p99 {result['p99']:6.2f} ms",
                    flush=True,
                )
    finally:
        redis_server.stop()

    def median(target: str, field: str) -> float:
        return statistics.median(r[field] for r in results[target])

    workers = subprocess.run(
        [sys.executable, "-c", "import runpy; c = runpy.run_path('gunicorn.conf.py'); print(c['workers'], c['threads'])"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    print()
    print(f"gunicorn gthread, {workers[0]} workers x {workers[1]} threads; wrk -t{WRK_THREADS} -c{CONNECTIONS} "
          f"-d{SECONDS}s; median of {ROUNDS} rounds; {os.cpu_count()} CPUs")  # fmt: skip
    print(f"{'target':<12}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for target in TARGETS:
        print(
            f"{target:<12}{median(target, 'rps'):>10.0f}{median(target, 'p50'):>10.2f}{median(target, 'p99'):>10.2f}"
        )
    receiver = median("receiver", "rps")
    print()
    print(f"receiver / bare-flask = {receiver / median('bare-flask', 'rps'):.2f}   (target >= 0.80)")
    print(f"receiver / bare-wsgi  = {receiver / median('bare-wsgi', 'rps'):.2f}   (cost of the Redis step)")
    print(
        f"receiver p99 = {median('receiver', 'p99'):.1f} ms   (target < 30 ms at {CONNECTIONS} connections)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
