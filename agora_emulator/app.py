"""The emulator's HTTP face: Agora's REST paths, and a control API under ``/_emulator/``.

REST answers follow ``docs/agora.md`` §3.2, §3.3, §3.9: 401 ``Unauthorized`` / ``Invalid authentication
credentials`` from the gateway, 404 ``no Route matched with those values`` for unknown paths and methods, 429
``API rate limit exceeded`` over the App ID's QPS, 400 code 8 for a non-JSON content type or body, then the
service's own checks (:mod:`agora_emulator.validate`, :mod:`agora_emulator.world`). Every answer carries an
``X-Request-ID``. Over the App ID's concurrency quota, acquire answers 400 code 406 ``vendor_over_load``
(:class:`agora_emulator.world.World`; ``/_emulator/quota`` shows and changes the limits). Every call is
recorded (storage keys and tokens replaced by a short hash) for the control API.

A ``slow`` fault holds an answer back for real seconds after the call was served and recorded, on the request's
own thread and without the world lock, so other calls and the task's timers go on meanwhile.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from agora_emulator.clock import Clock, Scheduler
from agora_emulator.faults import SESSION_ENDPOINTS, Fault, FaultError, parse_fault
from agora_emulator.ncs import NcsSender
from agora_emulator.validate import Reject
from agora_emulator.world import Task, World

log = logging.getLogger(__name__)

PREFIX = "/v1/apps/<appid>/cloud_recording"
SESSION = PREFIX + "/resourceid/<resource_id>/sid/<sid>/mode/<mode>"
REST_RULES = Map(
    [
        Rule(PREFIX + "/acquire", endpoint="acquire", methods=["POST"]),
        Rule(PREFIX + "/resourceid/<resource_id>/mode/<mode>/start", endpoint="start", methods=["POST"]),
        Rule(SESSION + "/query", endpoint="query", methods=["GET"]),
        Rule(SESSION + "/update", endpoint="update", methods=["POST"]),
        Rule(SESSION + "/updateLayout", endpoint="updateLayout", methods=["POST"]),
        Rule(SESSION + "/stop", endpoint="stop", methods=["POST"]),
    ],
    strict_slashes=False,
)
CONTROL_RULES = Map(
    [
        Rule("/_emulator/state", endpoint="state", methods=["GET"]),
        Rule("/_emulator/reset", endpoint="reset", methods=["POST"]),
        Rule("/_emulator/faults", endpoint="faults", methods=["GET", "POST", "DELETE"]),
        Rule("/_emulator/channels/<cname>", endpoint="channel", methods=["GET", "PUT"]),
        Rule("/_emulator/requests", endpoint="requests", methods=["GET"]),
        Rule("/_emulator/notifications", endpoint="notifications", methods=["GET"]),
        Rule("/_emulator/tasks/<sid>", endpoint="task", methods=["GET"]),
        Rule("/_emulator/tasks/<sid>/faults", endpoint="task_fault", methods=["POST"]),
        Rule("/_emulator/rate-limit", endpoint="rate_limit", methods=["GET", "PUT"]),
        Rule("/_emulator/quota", endpoint="quota", methods=["GET", "PUT"]),
    ]
)
MODES = ("individual", "mix", "web")
SECRET_KEYS = ("accessKey", "secretKey", "stsToken", "token", "secret")


@dataclass
class Config:
    """How one emulator instance behaves (command-line flags map onto these)."""

    app_id: str = "emulator-app-id"
    customer_id: str = "emulator-customer-id"
    customer_secret: str = "emulator-customer-secret"
    notify_url: str | None = None
    ncs_secret: str = "emulator-ncs-secret"
    seed: int | None = None  # None: a fresh random seed per run
    time_scale: float = 1.0
    rate_limit: int = 10
    default_publishers: int = 2
    ncs_timeout: float = 10.0
    max_recorders: int = 50  # concurrent individual/mix recorders per App ID, then 406 (0: no limit)
    max_web_recorders: int = 200  # concurrent web page recorders per App ID, then 406 (0: no limit)
    faults: list[Fault] = field(default_factory=list)


def redact(value: Any) -> Any:
    """A copy of a JSON body with secrets replaced by a short, stable hash (bodies stay comparable)."""
    if isinstance(value, dict):
        return {
            key: (
                f"<redacted:{hashlib.sha256(str(item).encode()).hexdigest()[:12]}>"
                if key in SECRET_KEYS and isinstance(item, str)
                else redact(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


class QuietHandler(WSGIRequestHandler):
    """No access log line per request (the control API lists the calls)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class RateLimiter:
    """Requests per App ID in the last real second; counts what it saw and refused."""

    def __init__(self, qps: int) -> None:
        self.qps = qps
        self._stamps: deque[float] = deque()
        self.max_in_window = 0
        self.limited = 0
        self._lock = threading.Lock()

    def admit(self) -> bool:
        """Count one request; False when it goes over the limit (it is then refused, and not counted)."""
        now = time.monotonic()
        with self._lock:
            while self._stamps and now - self._stamps[0] >= 1.0:
                self._stamps.popleft()
            if self.qps and len(self._stamps) >= self.qps:
                self.limited += 1
                return False
            self._stamps.append(now)
            self.max_in_window = max(self.max_in_window, len(self._stamps))
            return True

    def to_json(self) -> dict[str, int]:
        """Limit, busiest second seen, refusals."""
        return {"qps": self.qps, "maxInOneSecond": self.max_in_window, "limited": self.limited}


class Emulator:
    """One emulated Agora: the world, its clock, its NCS sender, and the WSGI app serving both APIs."""

    def __init__(self, config: Config) -> None:
        for name in ("max_recorders", "max_web_recorders"):
            if getattr(config, name) < 0:
                raise ValueError(f"{name} must be 0 (no limit) or more")
        self.config = config
        self.rng = random.Random(config.seed)
        self.clock = Clock(config.time_scale)
        self.scheduler = Scheduler(self.clock)
        self.sender = NcsSender(
            clock=self.clock,
            scheduler=self.scheduler,
            rng=self.rng,
            notify_url=config.notify_url,
            secret=config.ncs_secret,
            timeout=config.ncs_timeout,
        )
        self.world = self._new_world()
        self.limiter = RateLimiter(config.rate_limit)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()  # wakes answers held back by a slow fault

    def _new_world(self, limits: tuple[int, int] | None = None) -> World:
        max_recorders, max_web_recorders = limits or (
            self.config.max_recorders,
            self.config.max_web_recorders,
        )
        world = World(
            app_id=self.config.app_id,
            clock=self.clock,
            scheduler=self.scheduler,
            sender=self.sender,
            rng=self.rng,
            default_publishers=self.config.default_publishers,
            max_recorders=max_recorders,
            max_web_recorders=max_web_recorders,
        )
        for fault in self.config.faults:
            world.add_fault(fault)
        return world

    # -- serving -------------------------------------------------------------------------------------------

    def serve_in_thread(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on a background thread; returns the base URL."""
        self._server = make_server(host, port, self, threaded=True, request_handler=QuietHandler)
        # Looks for a shutdown request every 10 ms (socketserver's default, half a second, made every close()
        # of an in-process emulator wait that long).
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.01,), name="emulator-http", daemon=True
        )
        self._thread.start()
        return f"http://{host}:{self._server.server_port}"

    def serve_forever(self, host: str, port: int) -> None:
        """Serve in the foreground until interrupted."""
        self._server = make_server(host, port, self, threaded=True, request_handler=QuietHandler)
        self._server.serve_forever()

    def close(self) -> None:
        """Stop serving, timers and deliveries."""
        self._closing.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.scheduler.stop()
        self.sender.stop()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if request.path.startswith("/_emulator/"):
            response = self._control(request)
        else:
            response = self._rest(request)
        return response(environ, start_response)

    # -- REST ----------------------------------------------------------------------------------------------

    def _rest(self, request: Request) -> Response:
        request_id = f"{self.rng.getrandbits(64):016x}"
        endpoint: str = ""
        args: dict[str, Any] = {}
        body: Any = None
        slow: float | None = None
        try:
            try:
                endpoint, matched = REST_RULES.bind_to_environ(request.environ).match()
                args = dict(matched)
            except Exception:
                raise Reject(404, {"message": "no Route matched with those values"}) from None
            self._authenticate(request)
            if not self.limiter.admit():
                raise Reject(429, {"message": "API rate limit exceeded"})
            if request.method == "POST":
                body = self._json_body(request)
            with self.world.lock:
                sid = args.get("sid")
                cname = body.get("cname") if isinstance(body, dict) else self._cname_of(sid)
                slow = self.world.slow_answer(endpoint, cname, sid)
                scripted = self.world.scripted_answer(endpoint, cname, sid)
                if scripted is not None:
                    raise scripted
                status, answer = self._dispatch(endpoint, args, body)
        except Reject as reject:
            status, answer = reject.status, reject.body
        self._record(request, request_id, endpoint, body, status, answer, slow)
        if slow:
            # Served and recorded; the caller waits (lock released). A caller gone by then is werkzeug's
            # "connection dropped": no traceback, the server goes on.
            self._closing.wait(slow)
        return Response(
            msgspec.json.encode(answer),
            status=status,
            content_type="application/json",
            headers={"X-Request-ID": request_id},
        )

    def _cname_of(self, sid: str | None) -> str | None:
        task = self.world.tasks.get(sid or "")
        return task.cname if task else None

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("Authorization")
        if not header:
            raise Reject(401, {"message": "Unauthorized"})
        scheme, _, encoded = header.partition(" ")
        expected = f"{self.config.customer_id}:{self.config.customer_secret}".encode()
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except ValueError:
            given = b""
        if scheme.lower() != "basic" or not hmac.compare_digest(given, expected):
            raise Reject(401, {"message": "Invalid authentication credentials"})

    @staticmethod
    def _json_body(request: Request) -> dict[str, Any]:
        if request.mimetype != "application/json":
            raise Reject(
                400, {"code": 8, "reason": "invalid Content-Type, expected application/json;charset=utf-8"}
            )
        try:
            body = msgspec.json.decode(request.get_data())
        except msgspec.DecodeError:
            raise Reject(400, {"code": 8, "reason": "request body is not JSON"}) from None
        if not isinstance(body, dict):
            raise Reject(400, {"code": 2, "reason": "invalid request body"})
        return body

    def _dispatch(self, endpoint: str, args: dict[str, str], body: Any) -> tuple[int, dict[str, Any]]:
        if args["appid"] != self.config.app_id:
            if endpoint == "acquire":
                raise Reject(400, {"code": 400, "reason": "invalid_appid"})
            raise Reject(400, {"message": "appid is invalid"})
        mode = args.get("mode")
        if mode is not None and mode not in MODES:
            raise Reject(404, {"message": "no Route matched with those values"})
        world = self.world
        if endpoint == "acquire":
            return 200, world.acquire(body)
        if endpoint == "start":
            return world.start(args["resource_id"], args["mode"], body)
        if endpoint == "query":
            return 200, world.query(args["resource_id"], args["sid"], args["mode"])
        if endpoint == "update":
            return 200, world.update(args["resource_id"], args["sid"], args["mode"], body)
        if endpoint == "updateLayout":
            if mode != "mix":
                raise Reject(400, {"code": 2, "reason": "updateLayout is only available in mix mode"})
            return 200, world.update_layout(args["resource_id"], args["sid"], body)
        return world.stop(args["resource_id"], args["sid"], args["mode"], body)

    def _record(
        self,
        request: Request,
        request_id: str,
        endpoint: str,
        body: Any,
        status: int,
        answer: dict[str, Any],
        slow: float | None = None,
    ) -> None:
        entry = {
            "requestId": request_id,
            "at": self.clock.wall_ms(),
            "method": request.method,
            "path": request.path,
            "endpoint": endpoint or None,
            "contentType": request.headers.get("Content-Type"),
            "body": redact(body),
            "status": status,
            "answer": answer,
        }
        if slow is not None:
            entry["slowSeconds"] = slow
        with self.world.lock:
            self.world.request_count += 1  # ids keep counting once the log keeps only the newest
            self.world.requests.append({"id": self.world.request_count, **entry})
        log.info("agora call", extra={"endpoint": endpoint, "status": status, "code": answer.get("code")})

    # -- control API ---------------------------------------------------------------------------------------

    def _control(self, request: Request) -> Response:
        try:
            name, args = CONTROL_RULES.bind_to_environ(request.environ).match()
        except Exception:
            return _json({"error": "unknown control endpoint"}, 404)
        try:
            with self.world.lock:
                handler: Callable[..., Response] = getattr(self, f"_control_{name}")
                return handler(request, **args)
        except (FaultError, ValueError, KeyError, TypeError, msgspec.DecodeError) as exc:
            return _json({"error": str(exc)}, 400)

    def _control_state(self, _request: Request) -> Response:
        world = self.world
        return _json(
            {
                "appId": self.config.app_id,
                "timeScale": self.config.time_scale,
                "emulatedSeconds": round(self.clock.now(), 3),
                "rateLimit": self.limiter.to_json(),
                "tasks": [task.summary() for task in world.tasks.values()],
                "liveTasks": sum(task.alive for task in world.tasks.values()),
                "quota": world.quota(),
                "faults": [fault.to_json() for fault in world.faults],
                "requests": len(world.requests),
                "notifications": len(self.sender.deliveries),
            }
        )

    def _control_reset(self, _request: Request) -> Response:
        self.scheduler.clear()
        self.sender.deliveries.clear()
        self.world = self._new_world((self.world.max_recorders, self.world.max_web_recorders))
        self.limiter = RateLimiter(self.limiter.qps)
        return _json({"reset": True})

    def _control_faults(self, request: Request) -> Response:
        if request.method == "POST":
            spec = msgspec.json.decode(request.get_data())
            specs = spec if isinstance(spec, list) else [spec]
            added = [self.world.add_fault(parse_fault(item)).to_json() for item in specs]
            return _json({"faults": added}, 201)
        if request.method == "DELETE":
            self.world.faults.clear()
        return _json({"faults": [fault.to_json() for fault in self.world.faults]})

    def _control_channel(self, request: Request, cname: str) -> Response:
        if request.method == "PUT":
            spec = msgspec.json.decode(request.get_data())
            self.world.set_users(cname, spec.get("users", []) if isinstance(spec, dict) else [])
        users = self.world.users(cname)
        return _json({"cname": cname, "users": [vars(user) for user in users.values()]})

    def _control_requests(self, request: Request) -> Response:
        since = int(request.args.get("since", 0))
        endpoint = request.args.get("endpoint")
        items = [
            r
            for r in self.world.requests
            if r["id"] > since and (endpoint is None or r["endpoint"] == endpoint)
        ]
        return _json({"requests": items})

    def _control_notifications(self, request: Request) -> Response:
        sid = request.args.get("sid")
        items = [
            d.to_json()
            for d in list(self.sender.deliveries)
            if sid is None or d.envelope["payload"].get("sid") == sid
        ]
        return _json({"notifications": items})

    def _task(self, sid: str) -> Task:
        task = self.world.tasks.get(sid)
        if task is None:
            raise KeyError(f"no task {sid}")
        return task

    def _control_task(self, _request: Request, sid: str) -> Response:
        return _json(self._task(sid).summary())

    def _control_task_fault(self, request: Request, sid: str) -> Response:
        task = self._task(sid)
        spec = msgspec.json.decode(request.get_data())
        fault = parse_fault(dict(spec, sid=sid, cname=task.cname))
        if fault.kind in ("answer", "slow") and fault.params.get("endpoint", "*") not in SESSION_ENDPOINTS:
            raise FaultError(f"a task's {fault.kind} fault is for {', '.join(SESSION_ENDPOINTS)}")
        if fault.kind in ("ncs", "answer", "slow"):
            self.world.add_fault(fault)
        else:
            self.world.inject(task, fault)
        return _json({"fault": fault.to_json()}, 201)

    def _control_rate_limit(self, request: Request) -> Response:
        if request.method == "PUT":
            spec = msgspec.json.decode(request.get_data())
            self.limiter.qps = int(spec["qps"])
        return _json(self.limiter.to_json())

    def _control_quota(self, request: Request) -> Response:
        if request.method == "PUT":
            spec = msgspec.json.decode(request.get_data())
            fields = {"maxRecorders": "max_recorders", "maxWebRecorders": "max_web_recorders"}
            if not isinstance(spec, dict) or not spec or not spec.keys() <= fields.keys():
                raise ValueError('PUT /_emulator/quota takes {"maxRecorders": n, "maxWebRecorders": n}')
            for key, value in spec.items():
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"{key} must be an integer >= 0 (0: no limit)")
            for key, value in spec.items():
                setattr(self.world, fields[key], value)
        return _json(self.world.quota())


def _json(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status=status, content_type="application/json")
