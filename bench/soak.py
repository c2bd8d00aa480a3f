"""The chaos ledger (``make soak``): many recordings under Agora faults and process faults, then an audit.

Runs the service as deployed (``tests/support/stack.Stack``: redis-server with its append-only file, the Procfile's
gunicorn ``web`` and two ``rq worker`` processes) against the Agora emulator as its own process
(``python -m agora_emulator --time-scale 0.05``; the service gets RECORDING_TIME_SCALE=0.05 so both clocks
agree: one real second is 20 emulated seconds). Agora's budget of 10 requests per second is kept in emulated
time by default (``--rate-limit 200`` real requests per second for the emulator and the service alike), so
two dozen recordings load it as two dozen recordings would load Agora; ``--rate-limit 10`` keeps it in real
time instead, which loads the budget twenty times harder (the fleet benchmark's territory) and stretches
every limit below by the time it was saturated.

Scenario (``--recordings 24 --seed N``): recordings across modes (individual, mix, web, web + rtmpUrls), each
on its own channel, created within a few seconds and stopped after 10-20 emulated minutes. NCS loss, duplicates
and reordering on every channel; per channel one of ``die``, ``failover``, ``abnormal_exit``,
``capability_limit`` (web), ``backup``, scripted answers on start (5xx x2, 206/65 x2), on query (504/62 x2), a
429, and ``slow`` starts (answered after the service's read timeout) when the emulator knows that fault.
Meanwhile: SIGKILL of a worker (a replacement starts later), ``kill -9`` of redis-server and a restart from its
append-only file, a restart of the web process. Then every recording is stopped through the API and awaited.

The ledger (a table, then a JSON summary; exit code 1 when a check fails):

1. every recording terminal, in the state its scenario makes right;
2. recorded from shortly after creation until the stop: the first task starts within 90 s of the creation,
   and the union of the emulator's live tasks on the channel covers [first task start, stop] with no gap over
   the 90 s HA window (210 s after a silent death or an exit whose callbacks never arrived: only the next
   query, every 120 s, can see those). Both limits grow by the time the emulator's rate limit was saturated
   and by the time Redis was down, and a silent death's by one more HA window when Redis was down during it
   (a run of 404s counts only while it is watched, so an outage starts it again); a recording that ends
   without any task of its own ever running fails;
3. no task alive in the emulator once everything is terminal, no two live tasks at once on one channel;
4. every callback the emulator got a 200 for is stored exactly once (``/v1/sessions/{sid}/events``);
5. every file the emulator uploaded, when the upload result reached the service, is in the manifest as
   ``uploaded`` (``backed_up`` on backup channels);
6. the emulator refused no request for exceeding its rate limit (429);
7. (information) timer lateness and step duration from ``acr:stats``, Agora calls per recording, wall time.

Times in the ledger are emulated seconds unless marked ``real``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.redis_server import free_port  # noqa: E402
from tests.support.stack import Stack  # noqa: E402
from workers.agora.ratelimit import MARGIN_MS  # noqa: E402
from workers.core import schema  # noqa: E402

SCALE = 0.05  # real seconds per emulated second, for the emulator and the service alike
HA_WINDOW = 90.0  # emulated seconds a session may be unseen (404) before it counts as gone
QUERY_EVERY = 120.0  # emulated seconds between two queries of a running session
RATE_LIMIT = 10
APP_ID = "soak-app-id"
CUSTOMER_ID = "soak-customer-id"
CUSTOMER_SECRET = "soak-customer-secret-value"
NCS_SECRET = "soak-ncs-secret"
TOKEN = "soak-api-token-0123456789"  # production tokens have at least 16 characters
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TERMINAL = ("completed", "backed_up", "failed", "upload_unconfirmed")
MODES = ("individual", "mix", "web", "web+rtmp")
WEB_ONLY = ("capability_limit",)
#: Scenarios other than "normal", in the order they are kept when there are fewer recordings than these.
SPECIALS = (
    "die",
    "failover",
    "abnormal_exit",
    "capability_limit",
    "backup",
    "start_5xx",
    "start_206_65",
    "query_504_62",
    "rate_429",
    "slow_start",
    "slow_start",
    "die",
    "failover",
    "abnormal_exit",
    "capability_limit",
    "backup",
)
NCS_FAULT = {"kind": "ncs", "loss": 0.1, "duplicate": 0.2, "reorder": 3}
EXIT_EVENTS = (1, 11, 41, 71, 72)


# -- plumbing -------------------------------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


def http(
    method: str, url: str, body: Any = None, timeout: float = 10.0, **headers: str
) -> tuple[int | None, Any]:
    """(status, decoded JSON or text); (None, error name) when the request itself failed. Never raises."""
    try:
        response = requests.request(method, url, json=body, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        return None, type(exc).__name__
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text[:300]


class Emulator:
    """``python -m agora_emulator`` as its own process, and its control API."""

    def __init__(self, directory: Path, notify_url: str, seed: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "agora_emulator", "--port", str(self.port), "--notify-url", notify_url,
            "--ncs-secret", NCS_SECRET, "--app-id", APP_ID, "--customer-id", CUSTOMER_ID,
            "--customer-secret", CUSTOMER_SECRET, "--time-scale", str(SCALE), "--rate-limit", str(RATE_LIMIT),
            "--ncs-timeout", "2", "--seed", str(seed),
        ]  # fmt: skip
        self.log_path = directory / "emulator.log"
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(
                command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 15
        while http("GET", f"{self.url}/_emulator/state", timeout=1)[0] != 200:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the emulator did not start: " + self.log_path.read_text()[-2000:])
            time.sleep(0.1)
        self.t0 = self._calibrate()

    def _calibrate(self) -> float:
        """Unix time of the emulator's emulated second 0 (its wall clock starts there too)."""
        best: tuple[float, float] | None = None
        for _ in range(7):
            before = time.time()
            status, state = self.control("GET", "state")
            after = time.time()
            if status == 200 and (best is None or after - before < best[0]):
                best = (after - before, (before + after) / 2 - state["emulatedSeconds"] * SCALE)
        if best is None:
            raise RuntimeError("the emulator's clock could not be read")
        return best[1]

    def emulated(self, unix_time: float) -> float:
        """Emulated seconds at a real Unix time."""
        return (unix_time - self.t0) / SCALE

    def from_wall_ms(self, wall_ms: float) -> float:
        """Emulated seconds of an emulated Unix-milliseconds stamp (``at``, ``sendts``, ``notifyMs``)."""
        return wall_ms / 1000.0 - self.t0

    def real_of_wall_ms(self, wall_ms: float) -> float:
        """Real Unix time at which the emulator stamped ``wall_ms``."""
        return self.t0 + self.from_wall_ms(wall_ms) * SCALE

    def control(self, method: str, path: str, body: Any = None) -> tuple[int | None, Any]:
        return http(method, f"{self.url}/_emulator/{path}", body, timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


# -- the plan -------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """One recording of the run: its channel, mode, scenario, faults, and what happened to it."""

    index: int
    cname: str
    mode: str
    scenario: str
    run_seconds: float  # emulated seconds between creation and stop
    faults: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # faults the emulator did not accept
    id: str | None = None
    created_at: float | None = None  # real Unix time
    stop_at: float | None = None  # real Unix time the stop was accepted (202)
    stop_attempts: int = 0
    final: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "cname": self.cname,
            "mode": "web" if self.mode.startswith("web") else self.mode,
        }
        if self.mode == "mix":
            spec["recordingFileConfig"] = {"avFileType": ["hls", "mp4"]}
        if self.mode.startswith("web"):
            spec["web"] = {"url": f"https://example.com/class/{self.cname}", "maxRecordingHour": 2}
            if self.mode == "web+rtmp":
                spec["web"]["rtmpUrls"] = [f"rtmp://cdn.example.com/live/{self.cname}"]
            else:
                spec["recordingFileConfig"] = {"avFileType": ["hls", "mp4"]}
        return spec

    def fault_after(self, kind: str) -> float | None:
        return next((float(f["after"]) for f in self.faults if f["kind"] == kind and "after" in f), None)


def scenario_faults(scenario: str, cname: str, rng: random.Random, slow_delay: float) -> list[dict[str, Any]]:
    after = round(rng.uniform(30, 60), 1)
    specs: dict[str, list[dict[str, Any]]] = {
        "normal": [],
        "die": [{"kind": "die", "after": after, "times": 1}],
        "failover": [{"kind": "failover", "after": after, "window": 40, "times": 1}],
        "abnormal_exit": [{"kind": "abnormal_exit", "after": after, "times": 1}],
        "capability_limit": [{"kind": "capability_limit", "after": after, "times": 1, "limitType": "WebGL"}],
        "backup": [{"kind": "backup"}],
        "start_5xx": [{"kind": "answer", "endpoint": "start", "status": 503, "code": 503, "times": 2}],
        "start_206_65": [{"kind": "answer", "endpoint": "start", "status": 206, "code": 65, "times": 2}],
        "query_504_62": [{"kind": "answer", "endpoint": "query", "status": 504, "code": 62, "times": 2}],
        "rate_429": [
            {
                "kind": "answer",
                "endpoint": "acquire",
                "status": 429,
                "message": "API rate limit exceeded",
                "times": 1,
            }
        ],
        "slow_start": [{"kind": "slow", "endpoint": "start", "delay": slow_delay, "times": 1}],
    }
    return [dict(spec, cname=cname) for spec in specs[scenario]]


def make_plans(count: int, seed: int, slow_delays: list[float]) -> list[Plan]:
    rng = random.Random(seed)
    scenarios = list(SPECIALS[:count]) + ["normal"] * max(0, count - len(SPECIALS))
    rng.shuffle(scenarios)
    modes = [MODES[i % len(MODES)] for i in range(count)]
    rng.shuffle(modes)
    for i, scenario in enumerate(scenarios):  # web-only faults go to web channels
        if scenario in WEB_ONLY and not modes[i].startswith("web"):
            swap = next(
                (j for j in range(count) if modes[j].startswith("web") and scenarios[j] not in WEB_ONLY), None
            )
            if swap is not None:
                modes[i], modes[swap] = modes[swap], modes[i]
    plans = []
    slow_index = 0
    for i in range(count):
        scenario = scenarios[i]
        # 10-20 emulated minutes: every recording starts well inside its run, although the emulator's 10
        # requests/s are real seconds (the start-up of 24 recordings takes ~12 real = ~240 emulated seconds).
        run = rng.uniform(600, 1200)
        if scenario == "die":
            run = max(run, 300)  # a silent death is seen ~40 + 120 + 90 s later: leave room for the restart
        delay = 4.0
        if scenario == "slow_start":
            delay = slow_delays[slow_index % len(slow_delays)]
            slow_index += 1
        cname = f"soak{seed}-{i:02d}-{scenario.replace('_', '')}"
        plans.append(
            Plan(i, cname, modes[i], scenario, round(run, 1), scenario_faults(scenario, cname, rng, delay))
        )
    return plans


# -- the run --------------------------------------------------------------------------------------------------


class Chaos(threading.Thread):
    """Process faults at set moments after the recordings were created (their own thread: a web restart
    waits for gunicorn, and stops must go out on time meanwhile)."""

    def __init__(self, stack: Stack, begin: float, rng: random.Random) -> None:
        super().__init__(name="chaos", daemon=True)
        self.stack = stack
        self.begin = begin
        self.rng = rng
        self.done: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.redis_killed_at: float | None = None
        self.redis_back_at: float | None = None
        self.cancel = threading.Event()

    def plan(self) -> list[tuple[float, str]]:
        """(emulated seconds after creation, action)."""
        return [
            (60.0, "kill_worker"),
            (110.0, "kill_redis"),
            (170.0, "start_redis"),  # 3 real seconds without Redis
            (200.0, "start_worker"),  # the replacement, once Redis is back
            (240.0, "restart_web"),
        ]

    def run(self) -> None:
        for at, action in sorted(self.plan()):
            if self.cancel.wait(max(0.0, self.begin + at * SCALE - time.time())):
                return
            started = time.time()
            try:
                detail = getattr(self, action)()
            except Exception as exc:  # a fault that could not be made is reported, the run goes on
                self.errors.append(f"{action}: {type(exc).__name__}: {exc}")
                detail = f"error: {exc}"
            self.done.append(
                {
                    "action": action,
                    "at": round(at, 1),
                    "realSeconds": round(time.time() - started, 2),
                    "detail": detail,
                }
            )
            log(f"process fault: {action} ({detail})")

    def kill_worker(self) -> str:
        alive = self.stack.alive_workers()
        if not alive:
            return "no worker alive"
        victim = self.rng.choice(alive)
        self.stack.kill_worker(victim)
        return f"SIGKILL pid {victim.pid}"

    def start_worker(self) -> str:
        return f"pid {self.stack.start_worker().pid}"

    def kill_redis(self) -> str:
        pid = self.stack.redis.process.pid if self.stack.redis.process else None
        self.redis_killed_at = time.time()
        self.stack.kill_redis()
        return f"kill -9 pid {pid}"

    def start_redis(self) -> str:
        self.stack.start_redis()
        self.redis_back_at = time.time()
        return f"pid {self.stack.redis.process.pid if self.stack.redis.process else None} (AOF replayed)"

    def restart_web(self) -> str:
        self.stack.restart_web()
        return f"pid {self.stack.web.pid if self.stack.web else None}"


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.directory = Path(tempfile.mkdtemp(prefix="acr-soak-"))
        self.stack: Stack | None = None
        self.emulator: Emulator | None = None
        self.plans: list[Plan] = []
        self.chaos: Chaos | None = None
        self.notes: list[str] = []
        self.started = time.time()
        self.slow_supported = True

    # -- service API --------------------------------------------------------------------------------------

    def api(self, method: str, path: str, body: Any = None, **headers: str) -> tuple[int | None, Any]:
        assert self.stack is not None
        return http(method, self.stack.url + path, body, timeout=10, **AUTH, **headers)

    # -- phases -------------------------------------------------------------------------------------------

    def setup(self) -> None:
        log(f"run directory {self.directory} (logs stay there)")
        self.stack = Stack(
            self.directory,
            {
                "APP_ENV": "production",
                "AGORA_NCS_SECRETS": NCS_SECRET,
                "API_TOKENS": TOKEN,
                "AGORA_APP_ID": APP_ID,
                "AGORA_CUSTOMER_ID": CUSTOMER_ID,
                "AGORA_CUSTOMER_SECRET": CUSTOMER_SECRET,
                "AGORA_STORAGE_VENDOR": "1",
                "AGORA_STORAGE_REGION": "0",
                "AGORA_STORAGE_BUCKET": "soak-bucket",
                "AGORA_STORAGE_ACCESS_KEY": "AKIA-SOAK-ACCESS-KEY",
                "AGORA_STORAGE_SECRET_KEY": "soak-storage-secret-key-value",
                "AGORA_RATE_LIMIT": str(RATE_LIMIT),
                "RECORDING_TIME_SCALE": str(SCALE),
                "AGORA_READ_TIMEOUT_SECONDS": str(self.args.read_timeout),
                "UPLOAD_STUCK_SECONDS": "60",
            },
        )
        self.emulator = Emulator(self.directory, f"{self.stack.url}/webhooks/agora", self.args.seed)
        self.stack.env["AGORA_API_BASE_URL"] = self.emulator.url
        self.stack.start()
        self.stack.start_worker()
        log(f"service {self.stack.url} (web + 2 workers), emulator {self.emulator.url}, scale {SCALE}")

    def install_faults(self) -> None:
        assert self.emulator is not None
        status, answer = self.emulator.control("POST", "faults", NCS_FAULT)
        if status != 201:
            self.notes.append(f"ncs fault refused: {answer}")
        for plan in self.plans:
            for spec in plan.faults:
                status, answer = self.emulator.control("POST", "faults", spec)
                if status != 201:
                    plan.skipped.append(spec["kind"])
                    if spec["kind"] == "slow":
                        self.slow_supported = False
                    self.notes.append(f"{plan.cname}: fault {spec['kind']} refused by the emulator: {answer}")
            plan.faults = [f for f in plan.faults if f["kind"] not in plan.skipped]
        if not self.slow_supported:
            self.notes.append("the emulator has no 'slow' fault yet: slow_start channels ran without it")

    def create(self) -> None:
        spacing = self.args.create_within / max(1, len(self.plans))
        for plan in self.plans:
            for attempt in range(5):
                plan.created_at = time.time()
                status, answer = self.api(
                    "POST", "/v1/recordings", plan.body(), **{"Idempotency-Key": plan.cname}
                )
                if status == 202:
                    plan.id = answer["id"]
                    break
                log(f"create {plan.cname}: {status} {answer} (attempt {attempt + 1})")
                time.sleep(0.5)
            time.sleep(spacing)
        log(f"created {sum(p.id is not None for p in self.plans)}/{len(self.plans)} recordings")

    def run(self) -> None:
        """Stop each recording at its time while the process faults happen."""
        begin = time.time()
        if not self.args.no_process_faults:
            assert self.stack is not None
            self.chaos = Chaos(self.stack, begin, random.Random(self.args.seed))
            self.chaos.start()
        pending = [p for p in self.plans if p.id is not None]
        while pending:
            now = time.time()
            for plan in list(pending):
                assert plan.created_at is not None
                if now < plan.created_at + plan.run_seconds * SCALE:
                    continue
                plan.stop_attempts += 1
                status, answer = self.api("POST", f"/v1/recordings/{plan.id}/stop")
                if status == 202:
                    plan.stop_at = time.time()
                    pending.remove(plan)
                elif plan.stop_attempts % 10 == 1:
                    log(f"stop {plan.cname}: {status} {str(answer)[:120]} (retrying)")
                if plan.stop_attempts > 600:  # ~2 real minutes of refusals
                    self.notes.append(f"{plan.cname}: the stop was never accepted")
                    pending.remove(plan)
            time.sleep(0.2)
        log("every stop sent")
        if self.chaos is not None:
            self.chaos.join(timeout=60)

    def settle(self) -> None:
        """Wait (bounded) until every recording is terminal, then a little for the stops and callbacks to land."""
        deadline = time.time() + self.args.settle
        waiting = [p for p in self.plans if p.id is not None]
        last_report = 0.0
        while waiting and time.time() < deadline:
            for plan in list(waiting):
                status, answer = self.api("GET", f"/v1/recordings/{plan.id}")
                if status == 200:
                    plan.final = answer
                    if answer.get("state") in TERMINAL:
                        waiting.remove(plan)
            if waiting and time.time() - last_report > 15:
                last_report = time.time()
                states = Counter(p.final.get("state") if p.final else None for p in waiting)
                log(f"waiting for {len(waiting)} recordings: {dict(states)}")
            time.sleep(1)
        for plan in waiting:
            self.notes.append(f"{plan.cname}: not terminal after {self.args.settle:.0f} real s")
        # the last stops, their callbacks and the drains: until no task is alive and nothing is pending, <= 15 s
        assert self.emulator is not None
        deadline = time.time() + 15
        while time.time() < deadline:
            status, state = self.emulator.control("GET", "state")
            alive = [t for t in state.get("tasks", []) if _alive(t)] if status == 200 else [None]
            _, notes = self.emulator.control("GET", "notifications")
            pending = [n for n in (notes or {}).get("notifications", []) if n.get("state") == "pending"]
            if not alive and not pending:
                break
            time.sleep(0.5)
        time.sleep(3)  # drains of the last callbacks (the worker sweep re-wakes stale partitions every 5 s)
        for plan in self.plans:
            if plan.id is not None:
                status, answer = self.api("GET", f"/v1/recordings/{plan.id}")
                if status == 200:
                    plan.final = answer

    # -- the ledger ---------------------------------------------------------------------------------------

    def ledger(self) -> int:
        assert self.emulator is not None and self.stack is not None
        emulator = self.emulator
        _, state = emulator.control("GET", "state")
        _, notes = emulator.control("GET", "notifications")
        _, calls = emulator.control("GET", "requests")
        state = state if isinstance(state, dict) else {}
        deliveries = (notes or {}).get("notifications", []) if isinstance(notes, dict) else []
        requests_ = (calls or {}).get("requests", []) if isinstance(calls, dict) else []
        tasks = state.get("tasks", [])
        now_e = float(state.get("emulatedSeconds", emulator.emulated(time.time())))
        for name, data in (("state", state), ("notifications", deliveries), ("requests", requests_)):
            (self.directory / f"emulator-{name}.json").write_text(json.dumps(data, default=str))
        facts = Facts(emulator, tasks, deliveries, requests_, now_e)
        by_cname = {p.cname: p for p in self.plans}

        rows: dict[str, dict[str, Any]] = {p.cname: {"index": p.index} for p in self.plans}
        checks: dict[str, dict[str, Any]] = {}

        def check(name: str, function: Any) -> None:
            try:
                failures = function(rows)
            except Exception as exc:  # a check that cannot run is a failed check, never a crash
                failures = [f"check could not run: {type(exc).__name__}: {exc}"]
                traceback.print_exc()
            checks[name] = {"ok": not failures, "failures": failures}

        check("1_terminal_and_right", lambda r: self.check_terminal(r, facts))
        check("2_recorded_until_stop", lambda r: self.check_coverage(r, facts))
        check("3_orphans_and_overlaps", lambda r: self.check_orphans(r, facts, by_cname))
        check("4_callbacks_stored_once", lambda r: self.check_callbacks(r, facts))
        check("5_files_in_manifest", lambda r: self.check_files(r, facts))
        check(
            "6_no_429",
            lambda _r: self.check_rate_limit(state, facts),
        )
        info = self.info(rows, facts, state)
        self.print_table(rows, facts)
        summary = {
            "seed": self.args.seed,
            "recordings": len(self.plans),
            "directory": str(self.directory),
            "emulatorT0": emulator.t0,  # Unix time of emulated second 0 (for reading the emulator-*.json dumps)
            "wallSeconds": round(time.time() - self.started, 1),
            "ok": all(c["ok"] for c in checks.values()),
            "checks": checks,
            "info": info,
            "processFaults": self.chaos.done if self.chaos else [],
            "processFaultErrors": self.chaos.errors if self.chaos else [],
            "notes": self.notes,
        }
        (self.directory / "ledger.json").write_text(
            json.dumps(
                {**summary, "rows": rows, "plans": [vars(p) for p in self.plans]}, indent=2, default=str
            )
        )
        print("\n== checks ==")
        for name, result in checks.items():
            print(
                f"  {'PASS' if result['ok'] else 'FAIL'}  {name}"
                + (f"  ({len(result['failures'])})" if result["failures"] else "")
            )
            for failure in result["failures"][:12]:
                print(f"          - {failure}")
            if len(result["failures"]) > 12:
                print(f"          ... {len(result['failures']) - 12} more in ledger.json")
        print(
            f"\n== timers and calls ==\n  acr:stats timer_late_max_ms={info.get('timerLateMaxMs')} "
            f"step_max_ms={info.get('stepMaxMs')}{'  ' + info['acrStats'] if 'acrStats' in info else ''}\n"
            f"  Agora calls {info.get('agoraCalls')} (busiest second {(info.get('rateLimit') or {}).get('maxInOneSecond')}"
            f"/{RATE_LIMIT}), unattributed {info.get('agoraCallsUnattributed')}\n"
            f"  wall time {info.get('wallSeconds')} s; process faults: "
            + ", ".join(f"{d['action']}@{d['at']:.0f}s" for d in (self.chaos.done if self.chaos else []))
        )
        for note in self.notes:
            print(f"  note: {note}")
        print("\n== JSON summary ==")
        print(json.dumps(summary, indent=1, default=str))
        return 0 if summary["ok"] else 1

    def _sids(self, plan: Plan) -> list[str]:
        return [s["sid"] for s in (plan.final or {}).get("sessions", []) if s.get("sid")]

    def check_terminal(self, rows: dict[str, dict[str, Any]], facts: Facts) -> list[str]:
        failures = []
        for plan in self.plans:
            row = rows[plan.cname]
            state = (plan.final or {}).get("state")
            expected = {"backed_up"} if plan.scenario == "backup" else {"completed"}
            doubtful = [
                t["sid"] for t in facts.channel_tasks(plan.cname) if facts.ended_with_files_unconfirmed(t)
            ]
            if doubtful:
                expected.add("upload_unconfirmed")  # the service never got an upload result for some files
            row.update(state=state, expected=sorted(expected), unconfirmable=len(doubtful))
            row["restarts"] = (plan.final or {}).get("restarts")
            if plan.id is None:
                failures.append(f"{plan.cname}: never created")
            elif state not in TERMINAL:
                failures.append(f"{plan.cname} ({plan.scenario}): not terminal: {state}")
            elif state not in expected:
                reason = (plan.final or {}).get("reason")
                failures.append(f"{plan.cname} ({plan.scenario}): {state}, expected {'/'.join(sorted(expected))}"
                                + (f" (reason: {reason})" if reason else ""))  # fmt: skip
        return failures

    def check_coverage(self, rows: dict[str, dict[str, Any]], facts: Facts) -> list[str]:
        failures = []
        for plan in self.plans:
            row = rows[plan.cname]
            intervals = facts.intervals(plan)
            own = {s.sid for s in intervals} & set(self._sids(plan))
            row["tasks"] = f"{len(own)}/{len(intervals)}"
            if intervals and not own and plan.id is not None:
                failures.append(
                    f"{plan.cname} ({plan.scenario}): {(plan.final or {}).get('state')}, but none of the "
                    f"{len(intervals)} task(s) that ran on its channel is among its sessions"
                )
            if not intervals:
                row.update(maxGap=None, startupLag=None)
                if plan.id is not None:
                    failures.append(
                        f"{plan.cname} ({plan.scenario}): no task ever ran ({(plan.final or {}).get('state')})"
                    )
                continue
            created = self.emulator.emulated(plan.created_at) if plan.created_at and self.emulator else None
            stop = self.emulator.emulated(plan.stop_at) if plan.stop_at and self.emulator else facts.now
            first = min(i.start for i in intervals)
            lag = first - created if created is not None else None
            row["startupLag"] = None if lag is None else round(lag, 1)
            stops = [
                facts.at(c)
                for c in facts.requests
                if c.get("endpoint") == "stop" and facts.cname_of(c) == plan.cname and facts.at(c) >= stop - 1
            ]
            row["stopLag"] = round(min(stops) - stop, 1) if stops and plan.stop_at else None
            if lag is not None and created is not None:
                # The 10/s limit is real time while everything else runs 20x faster: seconds in which the
                # emulator already got (nearly) 10 calls could not have carried this recording's calls.
                startup_limit = HA_WINDOW + facts.saturated(created, first) + self.outage(created, first)
                row["lagLimit"] = round(startup_limit)
                if lag > startup_limit:
                    failures.append(
                        f"{plan.cname} ({plan.scenario}): first task started {lag:.0f} s after creation "
                        f"(limit {startup_limit:.0f} = 90 + {startup_limit - HA_WINDOW:.0f} s of saturated rate limit "
                        "or Redis down)"
                    )
            worst, worst_limit, where = 0.0, HA_WINDOW, None
            for gap_start, gap_end, before in uncovered(intervals, first, stop):
                limit = HA_WINDOW
                if before is not None and facts.death_unannounced(before):
                    limit = HA_WINDOW + QUERY_EVERY
                outage = self.outage(gap_start, gap_end)
                limit += facts.saturated(gap_start, gap_end) + outage
                if outage and before is not None and facts.death_unannounced(before):
                    # A run of 404s counts only while watched (docs/orchestration.md): Redis down in the
                    # middle of it starts the 90 s window again once it is back.
                    limit += HA_WINDOW
                if where is None or gap_end - gap_start - limit > worst - worst_limit:
                    worst, worst_limit, where = gap_end - gap_start, limit, (gap_start, gap_end)
            row.update(maxGap=round(worst, 1), gapLimit=round(worst_limit))
            if worst > worst_limit and where is not None:
                failures.append(
                    f"{plan.cname} ({plan.scenario}): not recorded for {worst:.0f} s "
                    f"(+{where[0] - (created or 0):.0f}..+{where[1] - (created or 0):.0f} s after creation, "
                    f"limit {worst_limit:.0f})"
                )
        return failures

    def outage(self, begin: float, end: float) -> float:
        """Emulated seconds of [begin, end] during which Redis was down (nothing could be asked of Agora)."""
        if self.chaos is None or self.chaos.redis_killed_at is None or self.emulator is None:
            return 0.0
        down = self.emulator.emulated(self.chaos.redis_killed_at)
        up = self.emulator.emulated(self.chaos.redis_back_at or time.time())
        return max(0.0, min(end, up) - max(begin, down))

    def check_orphans(
        self, rows: dict[str, dict[str, Any]], facts: Facts, by_cname: dict[str, Plan]
    ) -> list[str]:
        failures = []
        known = {sid for plan in self.plans for sid in self._sids(plan)}
        for task in facts.tasks:
            if _alive(task):
                plan = by_cname.get(task["cname"])
                failures.append(
                    f"orphan: task {task['sid'][:8]} on {task['cname']} ({plan.scenario if plan else '?'}) still "
                    f"{task['state']}; the service {'knows' if task['sid'] in known else 'never knew'} its sid"
                )
                if plan:
                    rows[plan.cname]["orphans"] = rows[plan.cname].get("orphans", 0) + 1
        for plan in self.plans:
            spans = facts.intervals(plan)
            overlaps = []
            for i, a in enumerate(spans):
                for b in spans[i + 1 :]:
                    overlap = min(a.end, b.end) - max(a.start, b.start)
                    if overlap > 1.0:
                        overlaps.append((a.sid, b.sid, overlap))
            rows[plan.cname]["overlaps"] = len(overlaps)
            for a_sid, b_sid, overlap in overlaps:
                failures.append(
                    f"{plan.cname} ({plan.scenario}): tasks {a_sid[:8]} and {b_sid[:8]} alive together for {overlap:.0f} s"
                )
            unknown = [t["sid"][:8] for t in facts.channel_tasks(plan.cname) if t["sid"] not in known]
            rows[plan.cname]["unknownSids"] = len(unknown)
        return failures

    def check_callbacks(self, rows: dict[str, dict[str, Any]], facts: Facts) -> list[str]:
        """Every callback answered 200 is stored once; drains may lag, so poll (bounded) until it adds up."""
        killed = self.chaos.redis_killed_at if self.chaos else None
        deadline = time.time() + 20
        while True:
            failures: list[str] = []
            tolerated: list[str] = []
            for plan in self.plans:
                row = rows[plan.cname]
                delivered = facts.delivered(plan.cname)
                stored: Counter[str] = Counter()
                unreadable = []
                for sid in sorted({d["sid"] for d in delivered.values()}):
                    status, answer = self.api("GET", f"/v1/sessions/{sid}/events")
                    if status == 200:
                        stored.update(str(e.get("noticeId")) for e in answer.get("events", []))
                    elif status != 404:
                        unreadable.append(f"{sid[:8]}: {status}")
                missing, aof = [], []
                for notice_id, delivery in delivered.items():
                    if stored[notice_id] == 0:
                        accepted = facts.accepted_at(delivery)
                        if killed is not None and accepted is not None and killed - 1.5 <= accepted <= killed:
                            aof.append(notice_id)  # acknowledged in the last second before kill -9 (everysec)
                        else:
                            missing.append(f"{notice_id} (type {delivery['eventType']})")
                doubled = [f"{n} x{c}" for n, c in stored.items() if c > 1]
                row["callbacks"] = {"delivered": len(delivered), "missing": len(missing), "doubled": len(doubled),
                                    "aofWindow": len(aof)}  # fmt: skip
                if missing:
                    failures.append(
                        f"{plan.cname}: {len(missing)} delivered callbacks not stored: {', '.join(missing[:4])}"
                    )
                if doubled:
                    failures.append(f"{plan.cname}: stored more than once: {', '.join(doubled[:4])}")
                if unreadable:
                    failures.append(f"{plan.cname}: sessions unreadable: {', '.join(unreadable)}")
                if aof:
                    tolerated.append(f"{plan.cname}: {len(aof)}")
            if not failures or time.time() > deadline:
                break
            time.sleep(2)
        if tolerated:
            self.notes.append(
                "callbacks acknowledged within 1.5 s before kill -9 of Redis and lost (appendfsync everysec, "
                "documented in the README; not counted as failures): " + "; ".join(tolerated)
            )
        return failures

    def check_files(self, rows: dict[str, dict[str, Any]], facts: Facts) -> list[str]:
        failures = []
        for plan in self.plans:
            row = rows[plan.cname]
            manifest: dict[str, str] = {}
            if plan.id is not None:
                status, answer = self.api("GET", f"/v1/recordings/{plan.id}/files")
                if status == 200:
                    manifest = {f["fileName"]: f.get("status") for f in answer.get("files", [])}
                else:
                    failures.append(f"{plan.cname}: manifest unreadable ({status})")
            basenames = {name.rsplit("/", 1)[-1]: status for name, status in manifest.items()}
            required = ok = 0
            wrong = []
            for task in facts.channel_tasks(plan.cname):
                if not facts.upload_reported(task):
                    continue
                wanted = "backed_up" if "backup" in task.get("faults", []) else "uploaded"
                for entry in task.get("files", []):
                    name = entry["fileName"]
                    required += 1
                    have = manifest.get(name, basenames.get(name.rsplit("/", 1)[-1]))
                    if have == wanted:
                        ok += 1
                    else:
                        wrong.append(f"{name.rsplit('/', 1)[-1]}: {have or 'absent'}")
            row["files"] = {"required": required, "ok": ok, "manifest": len(manifest)}
            if wrong:
                failures.append(f"{plan.cname} ({plan.scenario}): {len(wrong)} of {required} uploaded files not "
                                f"{'backed_up' if plan.scenario == 'backup' else 'uploaded'}: {', '.join(wrong[:3])}")  # fmt: skip
        return failures

    def check_rate_limit(self, state: dict[str, Any], facts: Facts) -> list[str]:
        limited = (state.get("rateLimit") or {}).get("limited", 0)
        if not limited:
            return []
        scripted = {p.cname for p in self.plans if p.scenario == "rate_429"}
        begin = self.chaos.begin if self.chaos else self.started
        assert self.emulator is not None
        refused = [
            f"{c.get('endpoint')} of {facts.cname_of(c) or '?'} at +{self.emulator.from_wall_ms(c['at']) - self.emulator.emulated(begin):.0f} s"
            for c in facts.requests
            if c.get("status") == 429 and facts.cname_of(c) not in scripted
        ]
        return [f"the emulator refused {limited} request(s) over {RATE_LIMIT}/s: " + "; ".join(refused[:6])]

    def info(self, rows: dict[str, dict[str, Any]], facts: Facts, state: dict[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {"rateLimit": state.get("rateLimit")}
        try:
            import redis

            stats = redis.Redis.from_url(
                self.stack.redis.url if self.stack else "", socket_timeout=5
            ).hgetall(schema.STATS)
            decoded = {k.decode(): v.decode() for k, v in cast(dict[bytes, bytes], stats).items()}
            info["timerLateMaxMs"] = decoded.get("timer_late_max_ms", "absent")
            info["stepMaxMs"] = decoded.get("step_max_ms", "absent")
        except Exception as exc:
            info["acrStats"] = f"unreadable: {type(exc).__name__}: {exc}"
        per_cname = facts.calls_per_cname()
        for plan in self.plans:
            rows[plan.cname]["calls"] = dict(per_cname.get(plan.cname, {}))
        info["agoraCalls"] = len(facts.requests)
        info["agoraCallsUnattributed"] = dict(per_cname.get(None, {}))
        info["wallSeconds"] = round(time.time() - self.started, 1)
        return info

    def print_table(self, rows: dict[str, dict[str, Any]], _facts: Facts) -> None:
        print(
            "\n== chaos ledger ==  (emulated seconds: lag = creation -> first task, stop→ = API stop -> Agora stop, "
            "gap = longest unrecorded stretch / its limit)"
        )
        header = (
            f"{'#':>2} {'channel':<28} {'mode':<10} {'scenario':<16} {'state':<18} {'expected':<28} "
            f"{'own/all':>7} {'lag/lim':>7} {'stop→':>6} {'gap/limit':>10} {'orph':>4} {'ovl':>3} {'cb del/miss/dup':>15} "
            f"{'files ok/req':>12}  calls"
        )
        print(header)
        print("-" * len(header))
        for plan in self.plans:
            row = rows[plan.cname]
            callbacks = row.get("callbacks", {})
            files = row.get("files", {})
            calls = row.get("calls", {})
            call_text = " ".join(f"{k[:3]}{v}" for k, v in sorted(calls.items()) if k != "errors")
            if calls.get("errors"):
                call_text += f" err{calls['errors']}"
            gap = (
                "-"
                if row.get("maxGap") is None
                else f"{row['maxGap']:.0f}/{row.get('gapLimit', HA_WINDOW):.0f}"
            )
            scenario = plan.scenario + ("*" if plan.skipped else "")
            lag = (
                "-"
                if row.get("startupLag") is None
                else f"{row['startupLag']:.0f}/{row.get('lagLimit', '-')}"
            )
            print(
                f"{plan.index:>2} {plan.cname:<28} {plan.mode:<10} {scenario:<16} {str(row.get('state')):<18} "
                f"{'/'.join(row.get('expected', [])):<28} {row.get('tasks', '0/0'):>7} "
                f"{lag:>7} "
                f"{'-' if row.get('stopLag') is None else format(row['stopLag'], '.0f'):>6} {gap:>10} "
                f"{row.get('orphans', 0):>4} {row.get('overlaps', 0):>3} "
                f"{callbacks.get('delivered', 0):>7}/{callbacks.get('missing', 0)}/{callbacks.get('doubled', 0):<3} "
                f"{files.get('ok', 0):>6}/{files.get('required', 0):<5}  {call_text}"
            )
        if any(p.skipped for p in self.plans):
            print("  * a fault of this scenario was refused by the emulator (see notes)")


# -- facts from the emulator ----------------------------------------------------------------------------------


@dataclass
class Span:
    sid: str
    start: float
    end: float
    reason: str | None


def _alive(task: dict[str, Any]) -> bool:
    if "alive" in task:
        return bool(task["alive"])
    return task.get("state") in ("starting", "running", "migrating")


SID_IN_PATH = re.compile(r"/sid/([^/]+)/")
RESOURCE_IN_PATH = re.compile(r"/resourceid/([^/]+)/")


class Facts:
    """What the emulator knows: tasks, their callbacks, the calls it got; emulated seconds throughout."""

    def __init__(
        self,
        emulator: Emulator,
        tasks: list[dict[str, Any]],
        deliveries: list[dict[str, Any]],
        requests_: list[dict[str, Any]],
        now: float,
    ) -> None:
        self.emulator = emulator
        self.tasks = tasks
        self.deliveries = deliveries
        self.requests = requests_
        self.now = now
        self.by_sid = {t["sid"]: t for t in tasks}
        self.notes_by_sid: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for delivery in deliveries:
            self.notes_by_sid[delivery.get("sid") or ""].append(delivery)
        # every call but 404s: a service hammering a vanished session must not excuse its own gaps
        self.stamps = sorted(
            emulator.from_wall_ms(c["at"]) for c in requests_ if "at" in c and c.get("status") != 404
        )
        self.calls_by_sid: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for call in requests_:
            sid = self._sid_of(call)
            if sid:
                self.calls_by_sid[sid].append(call)

    @staticmethod
    def _sid_of(call: dict[str, Any]) -> str | None:
        match = SID_IN_PATH.search(call.get("path") or "")
        if match:
            return match.group(1)
        answer = call.get("answer")
        return answer.get("sid") if isinstance(answer, dict) and call.get("endpoint") == "start" else None

    def channel_tasks(self, cname: str) -> list[dict[str, Any]]:
        return [t for t in self.tasks if t.get("cname") == cname]

    def _emitted(self, sid: str, *types: int) -> list[float]:
        return sorted(
            self.emulator.from_wall_ms(d["envelope"]["payload"]["sendts"])
            for d in self.notes_by_sid.get(sid, [])
            if (not types or d["eventType"] in types) and not d.get("duplicate")
        )

    def start_of(self, task: dict[str, Any]) -> float | None:
        for key in ("startedAt", "started", "start"):
            if isinstance(task.get(key), (int, float)):
                return float(task[key])
        candidates = [
            self.emulator.from_wall_ms(c["at"])
            for c in self.calls_by_sid.get(task["sid"], [])
            if c.get("endpoint") == "start" and c.get("status") == 200
        ]
        emitted = self._emitted(task["sid"])
        if emitted:
            candidates.append(emitted[0] - 0.5)  # the first callback (30) comes 0.5 s after the start
        return min(candidates) if candidates else None

    def end_of(self, task: dict[str, Any], plan: Plan | None, start: float) -> float:
        for key in ("endedAt", "ended", "end"):
            if isinstance(task.get(key), (int, float)):
                return float(task[key])
        if _alive(task):
            return self.now
        if task.get("exitReason") == "died":
            after = plan.fault_after("die") if plan else None
            return start + (after if after is not None else 10.0)
        exits = self._emitted(task["sid"], 11, 41, 71)
        if exits:
            return exits[0]
        stops = [
            self.emulator.from_wall_ms(c["at"])
            for c in self.calls_by_sid.get(task["sid"], [])
            if c.get("endpoint") == "stop" and c.get("status") in (200, 206)
        ]
        if stops:
            return min(stops)
        emitted = self._emitted(task["sid"])
        return emitted[-1] if emitted else start

    def intervals(self, plan: Plan) -> list[Span]:
        spans = []
        for task in self.channel_tasks(plan.cname):
            start = self.start_of(task)
            if start is None:
                continue
            spans.append(Span(task["sid"], start, self.end_of(task, plan, start), task.get("exitReason")))
        return sorted(spans, key=lambda s: s.start)

    def _delivered_ok(self, delivery: dict[str, Any]) -> bool:
        return any(a.get("status") == 200 for a in delivery.get("attempts", []))

    def death_unannounced(self, span: Span) -> bool:
        """The task ended by itself and no exit callback of it reached the service: only a query can tell."""
        if span.reason in (None, "stop"):
            return False
        if span.reason == "died":
            return True
        return not any(
            self._delivered_ok(d)
            for d in self.notes_by_sid.get(span.sid, [])
            if d["eventType"] in EXIT_EVENTS
        )

    def upload_reported(self, task: dict[str, Any]) -> bool:
        """The upload result of an ended task reached the service: 31/32 answered 200, or a stop answered 200
        (``uploadingStatus``)."""
        if _alive(task) or task.get("exitReason") in (None, "died"):
            return False
        if any(
            self._delivered_ok(d)
            for d in self.notes_by_sid.get(task["sid"], [])
            if d["eventType"] in (31, 32)
        ):
            return True
        return any(
            c.get("endpoint") == "stop" and c.get("status") == 200
            for c in self.calls_by_sid.get(task["sid"], [])
        )

    def ended_with_files_unconfirmed(self, task: dict[str, Any]) -> bool:
        return not _alive(task) and bool(task.get("files")) and not self.upload_reported(task)

    def delivered(self, cname: str) -> dict[str, dict[str, Any]]:
        """noticeId -> one delivery of it that got a 200, for the channel's tasks."""
        found: dict[str, dict[str, Any]] = {}
        for task in self.channel_tasks(cname):
            for delivery in self.notes_by_sid.get(task["sid"], []):
                if self._delivered_ok(delivery):
                    found.setdefault(str(delivery["noticeId"]), delivery)
        return found

    def accepted_at(self, delivery: dict[str, Any]) -> float | None:
        """Real Unix time of the attempt that got the 200 (its start; the answer came within the timeout)."""
        for attempt in delivery.get("attempts", []):
            if attempt.get("status") == 200 and attempt.get("notifyMs"):
                return self.emulator.real_of_wall_ms(attempt["notifyMs"])
        return None

    def at(self, call: dict[str, Any]) -> float:
        """Emulated seconds at which the emulator served a call."""
        return self.emulator.from_wall_ms(call["at"])

    def saturated(self, begin: float, end: float) -> float:
        """Emulated seconds of [begin, end] in which the emulator got >= 80% of what the service may send in
        calls other than 404s (1-real-second bins): time in which the service's calls queued for the shared
        limit. The service sends at most RATE_LIMIT per (1 s + its safety margin), not RATE_LIMIT per second."""
        width = 1.0 / SCALE
        bins: Counter[int] = Counter()
        for stamp in self.stamps:
            if begin <= stamp < end:
                bins[int((stamp - begin) // width)] += 1
        budget = RATE_LIMIT * 1000 / (1000 + MARGIN_MS)
        return sum(width for count in bins.values() if count >= 0.8 * budget)

    def cname_of(self, call: dict[str, Any]) -> str | None:
        """The channel of an Agora call: from its body (acquire, start, stop, ...) or its sid (query)."""
        body = call.get("body")
        cname = body.get("cname") if isinstance(body, dict) else None
        if cname is None:
            task = self.by_sid.get(self._sid_of(call) or "")
            cname = task.get("cname") if task else None
        if (
            cname is None
        ):  # refused before its body was read (429): the emulator's resource id names the channel
            match = RESOURCE_IN_PATH.search(call.get("path") or "")
            if match:
                raw = match.group(1).rsplit("-", 1)[0]
                try:
                    token = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
                    cname = token.get("c") if isinstance(token, dict) else None
                except ValueError:
                    pass
        return cname

    def calls_per_cname(self) -> dict[str | None, Counter[str]]:
        counts: dict[str | None, Counter[str]] = defaultdict(Counter)
        for call in self.requests:
            cname = self.cname_of(call)
            counts[cname][call.get("endpoint") or "unrouted"] += 1
            if call.get("status") not in (200, 201):
                counts[cname]["errors"] += 1
        return counts


def uncovered(spans: list[Span], begin: float, end: float) -> list[tuple[float, float, Span | None]]:
    """Stretches of [begin, end] no span covers, each with the span that ended just before it."""
    gaps: list[tuple[float, float, Span | None]] = []
    cursor: float = begin
    last: Span | None = None
    for span in sorted(spans, key=lambda s: s.start):
        if span.start > cursor and span.start > begin:
            gaps.append((cursor, min(span.start, end), last))
        if span.end > cursor:
            cursor, last = span.end, span
        if cursor >= end:
            break
    if cursor < end:
        gaps.append((cursor, end, last))
    return [(a, b, s) for a, b, s in gaps if b > a]


# -- main -----------------------------------------------------------------------------------------------------


def shutdown(stack: Stack | None, emulator: Emulator | None) -> None:
    """Stop the service's processes and the emulator (whatever started of them)."""
    if stack is not None:
        try:
            stack.stop()
        except Exception as exc:
            log(f"stack stop: {exc}")
    if emulator is not None:
        emulator.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/soak.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=24)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=200,
        help="Agora requests per real second (200: Agora's 10/s in emulated time; 10: in real time)",
    )
    parser.add_argument("--create-within", type=float, default=3.0, help="real seconds to create them all in")
    parser.add_argument(
        "--settle", type=float, default=150.0, help="real seconds to wait for terminal states"
    )
    parser.add_argument(
        "--read-timeout", type=float, default=2.0, help="AGORA_READ_TIMEOUT_SECONDS for the service"
    )
    parser.add_argument(
        "--slow-delays",
        default="4,12",
        help="real seconds of the slow starts (comma-separated, one per channel)",
    )
    parser.add_argument(
        "--no-process-faults", action="store_true", help="no kills or restarts (for comparison)"
    )
    return parser.parse_args(argv)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    global RATE_LIMIT
    RATE_LIMIT = args.rate_limit
    signal.signal(signal.SIGTERM, _interrupt)
    soak = Soak(args)
    soak.plans = make_plans(args.recordings, args.seed, [float(x) for x in args.slow_delays.split(",")])
    code = 2
    try:
        soak.setup()
        soak.install_faults()
        soak.create()
        soak.run()
        soak.settle()
        code = soak.ledger()
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        code = 130
    except Exception as exc:
        traceback.print_exc()
        stack_log = soak.stack.log("web.log")[-1500:] if soak.stack is not None else ""
        print(f"\n== chaos ledger: NOT RUN ==\n{type(exc).__name__}: {str(exc)[:300]}\n{stack_log}")
        print(
            json.dumps({"seed": args.seed, "ok": False, "error": f"{type(exc).__name__}: {str(exc)[:500]}"})
        )
        log(f"the run could not complete (counted as a failure); logs in {soak.directory}")
        code = 1
    finally:
        if soak.chaos is not None:
            soak.chaos.cancel.set()
            soak.chaos.join(timeout=30)
        shutdown(soak.stack, soak.emulator)
        log(f"done in {time.time() - soak.started:.0f} s; logs and ledger.json in {soak.directory}")
    return code


if __name__ == "__main__":
    sys.exit(main())
