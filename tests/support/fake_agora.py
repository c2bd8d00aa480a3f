"""A small deterministic Agora for the decision tests, and a driver that runs the runner's loop against it.

:class:`FakeAgora` keeps tasks by sid (cname, uid, resourceId, alive), hands out fresh resource ids, and
follows the emulator's rules (``agora_emulator/world.py``): ``start`` answers 201/7 when the resource was used
and its task is alive, 433 when used and not alive, 53 when a live task has the same cname + uid, else it
creates a task; ``query``/``stop`` answer 404 when the task is gone (and while it migrates), ``stop`` 49 when
it already exits, 206/435 when nothing was recorded, else the files and ``uploadingStatus``. Answers are built
as :meth:`workers.agora.client.AgoraClient._answer` builds them (``Answer`` / ``RecordingReport``, or
``AgoraApiError`` with the outcome of :func:`workers.agora.outcomes.classify`), and a call that gets no answer
raises ``AgoraTransportError``.

Faults are scripted per endpoint (:meth:`FakeAgora.script`): a status/code answer instead of serving the call,
``slow`` (the call acts, the answer never arrives) or ``timeout`` (nothing acts, no answer). Session faults:
:meth:`die` (silently gone), :meth:`exit` (exitStatus), :meth:`capability_limit` (web 72 + 71 code 2),
:meth:`failover` (12 with a new uid, 404s while it migrates), :meth:`backup` (the upload ends in the backup).

Every task produces NCS callbacks (the envelopes Agora sends). They wait in :attr:`FakeAgora.outbox` until a
test delivers, loses, duplicates or reorders them (or ``auto_deliver`` delivers each at once); what was
delivered becomes :class:`~workers.recordings.decide.SessionFacts` through the same reducer and conversion
the service uses.

Time is a fake clock in milliseconds (:attr:`FakeAgora.now`); Agora's own timeline (recorder up after 1 s,
first files after 15 s, upload progress every minute, idle exit, HA migration, the 60 s linger after an exit) runs on it.

:class:`Driver` is the runner's loop without Redis: take the API's commands, ``Step(...).decide()``, and for a
call ``sending``, a write-ahead snapshot when ``plan.save_before``, the call against the fake, ``absorb`` and a
save; at most ``MAX_CALLS_PER_STEP`` calls, then the clock moves to the saved wake-up (or to the next callback
that wakes the recording). A step can be killed after sending a call: Agora acted, the answer is never
absorbed, and the next step loads what was saved last.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from workers.agora import (
    AgoraApiError,
    AgoraError,
    AgoraTransportError,
    Answer,
    Outcome,
    RecordingReport,
    classify,
)
from workers.core.coerce import as_int
from workers.ncs.envelope import parse_event
from workers.ncs.reducer import SessionState, apply_event
from workers.recordings.decide import (
    POLL_EVERY,
    Call,
    Evidence,
    Plan,
    SessionFacts,
    Step,
    Timing,
    error_of,
    requested_onhold,
    take_commands,
    with_onhold,
)
from workers.recordings.machine import TERMINAL, Desired
from workers.recordings.model import Recording, decode, encode
from workers.recordings.runner import facts_of
from workers.recordings.timers import LEASE_MS, MAX_CALLS_PER_STEP

START_MS = 1_700_000_000_000
RESOURCE_TTL_MS = 300_000
STARTUP_MS = 1_000
FIRST_FILE_MS = {"individual": 30_000, "mix": 15_000, "web": 10_000}
LINGER_MS = 60_000
PROGRESS_MS = 60_000
DEFAULT_IDLE_S = 30
WEB_STOP_CODES = {"stop": 0, "max_hour": 1, "capability": 2}
WRITE_AHEAD_WAKE_MS = 10_000


class Reject(Exception):
    """An answer other than success, as (HTTP status, body)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, body)
        self.status, self.body = status, body


def refuse(code: int, reason: str, status: int = 400) -> Reject:
    """A refusal with Agora's code and reason."""
    return Reject(status, {"code": code, "reason": reason})


def not_found(resource_id: str, sid: str) -> Reject:
    """404 ``failed to find worker``."""
    return Reject(
        404, {"resourceId": resource_id, "sid": sid, "code": 404, "reason": "failed to find worker"}
    )


@dataclass
class FakeTask:
    """One recording session (a sid) as Agora runs it."""

    sid: str
    resource_id: str
    cname: str
    uid: str
    mode: str
    config: dict[str, Any]
    started_ms: int
    state: str = "starting"  # starting | running | migrating | exited | gone
    running_since: int | None = None  # recording since (after start, after each migration)
    status: int = 1
    first_uid: str | None = None  # the uid it started with, after a failover
    failovers: int = 0
    recorded: bool = False
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    backup: bool = False
    sequence: int = 0
    exit_reason: str | None = None
    exit_status: int | None = None
    changes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    idle_token: int = 0
    foreign: bool = False  # started by somebody else, not through a driver
    onhold: bool = False  # web: the page is on hold (start's serviceParam, then update)

    @property
    def alive(self) -> bool:
        """Still recording (or migrating)."""
        return self.state in ("starting", "running", "migrating")


@dataclass
class Fault:
    """The next answer of an endpoint, scripted."""

    endpoint: str
    status: int | None = None
    code: int | None = None
    reason: str = ""
    act: bool = False  # serve the call first (then answer as scripted)
    transport: bool = False  # no answer at all
    sid: str | None = None


@dataclass(frozen=True)
class Logged:
    """One call Agora received and what it answered (``status`` None: no answer reached the caller)."""

    endpoint: str
    status: int | None
    code: int | None
    resource_id: str | None = None
    sid: str | None = None
    at: int = 0


class FakeAgora:
    """Agora's REST API, tasks and callbacks, on a fake clock (see the module docstring)."""

    def __init__(self, *, auto_deliver: bool = True, now: int = START_MS) -> None:
        self.now = now
        self.auto_deliver = auto_deliver
        self.tasks: dict[str, FakeTask] = {}
        self.resources: dict[str, tuple[str, str, int, str | None]] = {}  # id -> cname, uid, acquired, sid
        self.faults: list[Fault] = []
        self.silent_channels: set[str] = set()  # channels where nobody publishes
        self.backup_channels: set[str] = set()
        self.log: list[Logged] = []
        self.outbox: list[dict[str, Any]] = []  # callbacks sent, not yet delivered
        self.inbox: list[dict[str, Any]] = []  # callbacks delivered (duplicates included), in arrival order
        self.on_deliver: Callable[[dict[str, Any]], None] | None = None
        self._timers: list[tuple[int, int, Callable[[], None]]] = []
        self._ids = itertools.count(1)
        self._notices = itertools.count(1)

    # -- time ----------------------------------------------------------------------------------------------

    def later(self, delay_ms: int, action: Callable[[], None]) -> None:
        """Run ``action`` on Agora's side ``delay_ms`` from now."""
        heapq.heappush(self._timers, (self.now + delay_ms, next(self._ids), action))

    def next_event_at(self) -> int | None:
        """When Agora does something by itself next."""
        return self._timers[0][0] if self._timers else None

    def run_next(self) -> None:
        """Move the clock to the next thing Agora does by itself, and do it."""
        at, _, action = heapq.heappop(self._timers)
        self.now = max(self.now, at)
        action()

    def advance_to(self, at: int) -> None:
        """Move the clock to ``at``, doing on the way whatever Agora does by itself."""
        while self._timers and self._timers[0][0] <= at:
            self.run_next()
        self.now = max(self.now, at)

    def advance(self, ms: int) -> None:
        """Move the clock ``ms`` forward."""
        self.advance_to(self.now + ms)

    # -- faults --------------------------------------------------------------------------------------------

    def script(
        self,
        endpoint: str,
        status: int | None = None,
        code: int | None = None,
        reason: str = "",
        *,
        times: int = 1,
        act: bool = False,
        sid: str | None = None,
    ) -> None:
        """The next ``times`` calls to ``endpoint`` are answered ``status`` / ``code`` instead of being served
        (with ``act``: served first, then answered so)."""
        for _ in range(times):
            self.faults.append(Fault(endpoint, status, code, reason or f"scripted {code}", act=act, sid=sid))

    def slow(self, endpoint: str, *, times: int = 1) -> None:
        """The next calls to ``endpoint`` are served, but the answer never reaches the caller (read timeout)."""
        for _ in range(times):
            self.faults.append(Fault(endpoint, act=True, transport=True))

    def timeout(self, endpoint: str, *, times: int = 1) -> None:
        """The next calls to ``endpoint`` never reach Agora (connect timeout): nothing acts, no answer."""
        for _ in range(times):
            self.faults.append(Fault(endpoint, transport=True))

    def _fault(self, endpoint: str, sid: str | None) -> Fault | None:
        for fault in self.faults:
            if fault.endpoint == endpoint and fault.sid in (None, sid):
                self.faults.remove(fault)
                return fault
        return None

    # -- channels and session faults -----------------------------------------------------------------------

    def set_publishers(self, cname: str, present: bool) -> None:
        """Somebody publishes in the channel (or nobody: idle exit after ``maxIdleTime``)."""
        if present:
            self.silent_channels.discard(cname)
        else:
            self.silent_channels.add(cname)
        for task in self.tasks.values():
            if task.cname == cname and task.state == "running":
                self._watch_idle(task)
                if present:
                    self._recording_begins(task)

    def backup(self, cname: str) -> None:
        """Uploads of tasks on this channel end in Agora's backup (32, ``backuped``)."""
        self.backup_channels.add(cname)

    def die(self, sid: str) -> None:
        """The task vanishes silently: no callback, query and stop answer 404."""
        task = self.tasks[sid]
        if task.alive:
            task.state, task.status, task.exit_reason = "gone", 20, "died"

    def exit(self, sid: str, exit_status: int = 1) -> None:
        """The task ends by itself (exitStatus 1: abnormally, after an error callback)."""
        task = self.tasks[sid]
        if not task.alive:
            return
        if exit_status:
            self.emit(task, 1, {"module": 0, "errorLevel": 5, "errorCode": 110, "errorMsg": "fatal error"})
        self._exit(task, "abnormal" if exit_status else "max_hour", exit_status)

    def capability_limit(self, sid: str) -> None:
        """Web: the page needs more than the recorder offers (72), then the recorder stops (71 code 2)."""
        task = self.tasks[sid]
        if task.alive and task.mode == "web":
            self.emit(task, 72, {"limitType": "WebGL"})
            self._exit(task, "capability", 0)

    def failover(self, sid: str, *, window_ms: int = 40_000, new_uid: str | None = None) -> str:
        """HA failover: 12 with a new uid, 404s for ``window_ms``, then the task records again (``bak0_``)."""
        task = self.tasks[sid]
        uid = new_uid or str(3_000_000_000 + next(self._ids))
        self.emit(task, 12, {"newUid": int(uid)})
        task.state = "migrating"
        task.first_uid = task.first_uid or task.uid

        def migrated() -> None:
            if task.state != "migrating":
                return
            task.uid, task.state, task.failovers = uid, "running", task.failovers + 1
            task.running_since = self.now
            self.emit(task, 70 if task.mode == "web" else 40, {"status": 0})
            if task.recorded:
                self.later(FIRST_FILE_MS[task.mode], lambda: self._first_files(task))

        self.later(window_ms, migrated)
        return uid

    def foreign_task(self, cname: str, uid: str, mode: str = "mix") -> FakeTask:
        """A task somebody else started on this channel and uid (not through a driver)."""
        resource_id = self._acquire(cname, uid)
        status, body = self._start(resource_id, mode, cname, uid, {})
        assert status == 200, body
        task = self.tasks[body["sid"]]
        task.foreign = True
        return task

    # -- the REST API (answers and errors as the real client returns and raises them) ----------------------

    def acquire(self, cname: str, uid: str) -> Answer:
        """``acquire``: a fresh resource id."""
        return self._serve(
            "acquire", None, None, lambda: (200, self._answer_ids(cname, uid, self._acquire(cname, uid)))
        )

    def start(self, resource_id: str, mode: str, cname: str, uid: str, config: dict[str, Any]) -> Answer:
        """``start``: a new task, or 201/7, 433, 53 as Agora answers them."""
        answer = self._serve(
            "start", resource_id, None, lambda: self._start(resource_id, mode, cname, uid, config)
        )
        if not answer.sid:  # as the client: a success without sid is malformed
            raise AgoraApiError(
                endpoint="start",
                status=200,
                code=None,
                reason="answer without sid",
                request_id=answer.request_id,
                outcome=Outcome.RETRY,
            )
        return answer

    def query(self, resource_id: str, sid: str, mode: str) -> RecordingReport:
        """``query``: status and files while the task runs; 404 when it is gone, migrating or exited."""
        answer = self._serve("query", resource_id, sid, lambda: self._query(resource_id, sid, mode))
        return RecordingReport(answer.raw, answer.request_id)

    def stop(self, resource_id: str, sid: str, mode: str, cname: str, uid: str) -> RecordingReport:
        """``stop``: the upload result and files; 206/435 nothing recorded; 49 already exiting; 404 gone."""
        answer = self._serve("stop", resource_id, sid, lambda: self._stop(resource_id, sid, mode, cname, uid))
        return RecordingReport(answer.raw, answer.request_id)

    def update(self, endpoint: str, resource_id: str, sid: str, mode: str, body: dict[str, Any]) -> Answer:
        """``update`` / ``updateLayout``: kept on the task, in the order they arrive."""
        return self._serve(
            endpoint, resource_id, sid, lambda: self._update(endpoint, resource_id, sid, mode, body)
        )

    def _serve(
        self,
        endpoint: str,
        resource_id: str | None,
        sid: str | None,
        serve: Callable[[], tuple[int, dict[str, Any]]],
    ) -> Answer:
        fault = self._fault(endpoint, sid)
        result: tuple[int, dict[str, Any]] | None = None
        if fault is None or fault.act:
            try:
                result = serve()
            except Reject as refused:
                result = (refused.status, refused.body)
        if fault is not None and fault.transport:  # logged with the sid a start made, though nobody hears it
            made = sid or (result[1].get("sid") if result is not None else None)
            self.log.append(Logged(endpoint, None, None, resource_id, made, self.now))
            raise AgoraTransportError(
                "no answer from 1 host(s): ReadTimeout", endpoint=endpoint, hosts=("https://fake.agora",)
            )
        if fault is not None:
            result = (int(fault.status or 500), {"code": fault.code, "reason": fault.reason})
        assert result is not None
        status, body = result
        answer_sid = sid or body.get("sid")
        self.log.append(Logged(endpoint, status, as_int(body.get("code")), resource_id, answer_sid, self.now))
        return self._answer(endpoint, status, body)

    def _answer(self, endpoint: str, status: int, payload: dict[str, Any]) -> Answer:
        """As ``AgoraClient._answer``: the code and reason read leniently, the outcome from the one table."""
        request_id = f"req-{next(self._ids)}"
        code = as_int(payload.get("code"))
        reason = str(payload.get("reason") or payload.get("message") or "")
        outcome = classify(endpoint, status, code)
        if outcome is Outcome.OK:
            return Answer(payload, request_id)
        raise AgoraApiError(
            endpoint=endpoint, status=status, code=code, reason=reason, request_id=request_id, outcome=outcome
        )

    @staticmethod
    def _answer_ids(cname: str, uid: str, resource_id: str) -> dict[str, Any]:
        return {"cname": cname, "uid": uid, "resourceId": resource_id}

    def _acquire(self, cname: str, uid: str) -> str:
        resource_id = f"res-{next(self._ids)}"
        self.resources[resource_id] = (cname, uid, self.now, None)
        return resource_id

    def _start(
        self, resource_id: str, mode: str, cname: str, uid: str, config: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        if resource_id not in self.resources:
            raise refuse(1001, "resource id parse failed")
        r_cname, r_uid, acquired, used = self.resources[resource_id]
        if used is not None:
            task = self.tasks[used]
            if task.alive:
                body = {**self._answer_ids(task.cname, task.first_uid or task.uid, resource_id), "code": 7}
                return 201, {**body, "reason": "already started"}
            raise refuse(433, "resource id expired")
        if self.now - acquired > RESOURCE_TTL_MS:
            raise refuse(433, "resource id expired")
        if (cname, uid) != (r_cname, r_uid):
            raise refuse(432, "parameter error: cname or uid does not match the resource id")
        if any(t.alive and t.cname == cname and t.uid == uid for t in self.tasks.values()):
            raise refuse(53, "task conflict")
        sid = f"sid{next(self._ids):04d}"
        task = FakeTask(sid, resource_id, cname, uid, mode, config, self.now)
        task.onhold = mode == "web" and requested_onhold(config)
        task.backup = cname in self.backup_channels
        self.tasks[sid] = task
        self.resources[resource_id] = (r_cname, r_uid, acquired, sid)
        self.later(500, lambda: self._uploader_ready(task))
        self.later(STARTUP_MS, lambda: self._recorder_started(task))
        return 200, {**self._answer_ids(cname, uid, resource_id), "sid": sid}

    def _find(self, resource_id: str, sid: str, mode: str) -> FakeTask:
        task = self.tasks.get(sid)
        if task is None or task.state == "gone":
            raise not_found(resource_id, sid)
        if task.resource_id != resource_id:
            raise refuse(1003, "sid does not match resource id")
        if task.mode != mode:
            raise refuse(432, "parameter error: mode does not match the task")
        return task

    def _query(self, resource_id: str, sid: str, mode: str) -> tuple[int, dict[str, Any]]:
        task = self._find(resource_id, sid, mode)
        if task.state in ("migrating", "exited"):
            raise not_found(resource_id, sid)
        return 200, {**self._ids_of(task), "serverResponse": self._server_response(task)}

    def _stop(
        self, resource_id: str, sid: str, mode: str, cname: str, uid: str
    ) -> tuple[int, dict[str, Any]]:
        task = self._find(resource_id, sid, mode)
        if task.state == "migrating":
            raise not_found(resource_id, sid)
        if not task.alive:
            raise refuse(49, "invalid operation")
        if cname != task.cname or uid not in (task.uid, task.first_uid):
            raise refuse(432, "parameter error: cname or uid does not match the task")
        self._exit(task, "stop", 0)
        if not task.recorded:
            return 206, {"resourceId": resource_id, "sid": sid, "code": 435, "reason": "no recorded data"}
        response = self._server_response(task)
        uploading = "backuped" if task.backup else "uploaded"
        if mode == "web":
            response["extensionServiceState"].append(
                {"serviceName": "upload_service", "payload": {"uploadingStatus": uploading}}
            )
        else:
            response["uploadingStatus"] = uploading
        response.pop("status", None)
        return 200, {**self._ids_of(task), "serverResponse": response}

    def _update(
        self, endpoint: str, resource_id: str, sid: str, mode: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        task = self._find(resource_id, sid, "mix" if endpoint == "updateLayout" else mode)
        if not task.alive or task.state == "migrating":
            raise not_found(resource_id, sid)
        task.changes.append((endpoint, body))
        web = body.get("webRecordingConfig")
        if isinstance(web, dict) and "onhold" in web:
            task.onhold = bool(web["onhold"])
        return 200, self._ids_of(task)

    @staticmethod
    def _ids_of(task: FakeTask) -> dict[str, Any]:
        return {
            "cname": task.cname,
            "uid": task.first_uid or task.uid,
            "resourceId": task.resource_id,
            "sid": task.sid,
        }

    def _server_response(self, task: FakeTask) -> dict[str, Any]:
        files = list(task.files.values())
        if task.mode == "web":
            state = {"starting": "init", "running": "inProgress", "migrating": "inProgress"}.get(
                task.state, "exit"
            )
            services: list[dict[str, Any]] = [
                {
                    "serviceName": "web_recorder_service",
                    "payload": {
                        "fileList": [
                            {"filename": f["fileName"], "sliceStartTime": f["sliceStartTime"]} for f in files
                        ],
                        "onhold": task.onhold,
                        "state": state,
                    },
                }
            ]
            if web_outputs(task.config):
                outputs = [{"rtmpUrl": url, "status": "publishing"} for url in web_outputs(task.config)]
                services.append(
                    {"serviceName": "rtmp_publish_service", "payload": {"outputs": outputs, "state": state}}
                )
            return {"status": task.status, "extensionServiceState": services}
        return {"status": task.status, "fileListMode": "json", "fileList": files}

    # -- a task's own life ---------------------------------------------------------------------------------

    def _uploader_ready(self, task: FakeTask) -> None:
        if task.state == "starting":
            task.status = 3
            self.emit(task, 30, {"status": 0})

    def _recorder_started(self, task: FakeTask) -> None:
        if task.state != "starting":
            return
        task.state, task.status, task.running_since = "running", 4, self.now
        self.emit(task, 70 if task.mode == "web" else 40, {"status": 0})
        self._watch_idle(task)
        self._recording_begins(task)

    def _recording_begins(self, task: FakeTask) -> None:
        if task.recorded or (task.mode != "web" and task.cname in self.silent_channels):
            return
        task.recorded = True
        self.later(FIRST_FILE_MS[task.mode], lambda: self._first_files(task))
        self.later(PROGRESS_MS, lambda: self._progress(task))

    def _progress(self, task: FakeTask) -> None:
        """Upload progress (33) every minute while it lives: a live task keeps calling back."""
        if task.alive:
            self.emit(task, 33, {"progress": 9000})
            self.later(PROGRESS_MS, lambda: self._progress(task))

    def _watch_idle(self, task: FakeTask) -> None:
        task.idle_token += 1
        if task.mode == "web" or task.cname not in self.silent_channels:
            return
        token = task.idle_token
        idle_s = int((task.config.get("recordingConfig") or {}).get("maxIdleTime", DEFAULT_IDLE_S))

        def idle() -> None:
            if task.state == "running" and task.idle_token == token:
                self._exit(task, "idle", 0)

        self.later(idle_s * 1000, idle)

    def _first_files(self, task: FakeTask) -> None:
        if task.state != "running" and task.alive:
            return
        bak = f"bak{task.failovers - 1}_" if task.failovers else ""
        base = f"{bak}{task.sid}_{task.cname}"
        if task.mode == "individual":
            names = [f"{base}__uid_s_1001__uid_e_audio.m3u8", f"{base}__uid_s_1001__uid_e_video.m3u8"]
        else:
            names = [f"{base}.m3u8"]
            if "mp4" in ((task.config.get("recordingFileConfig") or {}).get("avFileType") or []):
                names.append(f"{base}_0.mp4")
        for name in names:
            if name in task.files:
                continue
            task.files[name] = {
                "fileName": name,
                "trackType": "audio_and_video",
                "uid": "0",
                "sliceStartTime": self.now,
            }
            if name.endswith(".m3u8") and task.alive:
                self.emit(task, 4, {"fileList": name})
        task.status = 5 if task.alive else task.status

    def _exit(self, task: FakeTask, reason: str, exit_status: int) -> None:
        """Leave, upload, call back (71/41, 31/32, 11), linger (stop answers 49), then vanish."""
        task.state, task.status, task.exit_reason, task.exit_status = "exited", 6, reason, exit_status
        if task.recorded and not task.files:
            self._first_files(task)
        files = list(task.files.values())
        if task.mode == "web":
            code = WEB_STOP_CODES.get(reason, 6)
            listed = [{"filename": f["fileName"], "sliceStartTime": f["sliceStartTime"]} for f in files]
            self.emit(task, 71, {"code": code, "message": reason, "fileList": listed})
        else:
            self.emit(task, 41, {"leaveCode": 16 if reason == "stop" else 4})
        if task.recorded:
            self.emit(task, 33, {"progress": 10000})
            self.emit(task, 32 if task.backup else 31, {"fileList": files, "status": 0})
        task.status = 8
        self.emit(task, 11, {"exitStatus": exit_status})

        def vanish() -> None:
            task.state = "gone"

        self.later(LINGER_MS, vanish)

    # -- callbacks -----------------------------------------------------------------------------------------

    def emit(self, task: FakeTask, event_type: int, details: dict[str, Any]) -> None:
        """One callback of a task (delivered at once with ``auto_deliver``, else kept in the outbox)."""
        envelope = {
            "noticeId": f"n{next(self._notices)}",
            "productId": 3,
            "eventType": event_type,
            "notifyMs": self.now,
            "payload": {
                "cname": task.cname,
                "uid": task.uid,
                "sid": task.sid,
                "sequence": task.sequence,
                "sendts": self.now,
                "details": details,
            },
        }
        task.sequence += 1
        self.outbox.append(envelope)
        if self.auto_deliver:
            self.deliver(envelope)

    def pending(self, sid: str | None = None, *types: int) -> list[dict[str, Any]]:
        """Callbacks not delivered yet (of one sid, of some event types)."""
        return [
            e
            for e in self.outbox
            if (sid is None or e["payload"]["sid"] == sid) and (not types or e["eventType"] in types)
        ]

    def deliver(self, *envelopes: dict[str, Any]) -> None:
        """Deliver these callbacks (from the outbox, or again: a duplicate) in this order."""
        for envelope in envelopes:
            if envelope in self.outbox:
                self.outbox.remove(envelope)
            self.inbox.append(envelope)
            if self.on_deliver is not None:
                self.on_deliver(envelope)

    def deliver_all(self, sid: str | None = None) -> None:
        """Deliver every pending callback (of one sid)."""
        self.deliver(*self.pending(sid))

    def flow(self) -> None:
        """Deliver what is pending, and every callback at once from now on."""
        self.auto_deliver = True
        self.deliver_all()

    def lose(self, *envelopes: dict[str, Any]) -> None:
        """These callbacks never arrive."""
        for envelope in envelopes:
            self.outbox.remove(envelope)

    def facts(self, sid: str) -> SessionFacts | None:
        """What the delivered callbacks of a sid say, as the runner reads them (None: none arrived): the
        session's reduced state (any order, any duplicates) through the runner's own conversion."""
        state: SessionState | None = None
        for envelope in self.inbox:
            if envelope["payload"]["sid"] == sid:
                state = apply_event(state, parse_event(msgspec.json.encode(envelope), self.now))
        return None if state is None else facts_of(state)


def web_outputs(config: dict[str, Any]) -> list[str]:
    """The CDN URLs of a web recording's start request."""
    services = (config.get("extensionServiceConfig") or {}).get("extensionServices") or []
    for service in services:
        if service.get("serviceName") == "rtmp_publish_service":
            return [o["rtmpUrl"] for o in (service.get("serviceParam") or {}).get("outputs") or []]
    return []


def request_for(mode: str, *, idle: int = 300, mp4: bool = True, cdn: bool = False) -> dict[str, Any]:
    """A start clientRequest of the shape the store builds (only what the fake reads matters)."""
    request: dict[str, Any] = {
        "recordingConfig": {"channelType": 0, "maxIdleTime": idle},
        "recordingFileConfig": {"avFileType": ["hls", "mp4"] if mp4 else ["hls"]},
        "storageConfig": {"vendor": 1, "region": 0, "bucket": "b", "accessKey": "k", "secretKey": "s"},
    }
    if mode == "web":
        services: list[dict[str, Any]] = [
            {
                "serviceName": "web_recorder_service",
                "serviceParam": {"url": "https://example.com", "maxRecordingHour": 2},
            }
        ]
        if cdn:
            services.append(
                {
                    "serviceName": "rtmp_publish_service",
                    "serviceParam": {"outputs": [{"rtmpUrl": "rtmp://cdn/live/k"}]},
                }
            )
        request["extensionServiceConfig"] = {"extensionServices": services}
    return request


def new_recording(
    mode: str = "mix",
    *,
    cname: str = "class1",
    uid: str = "527841",
    now: int = START_MS,
    max_duration_s: int | None = None,
    request: dict[str, Any] | None = None,
) -> Recording:
    """A recording as the store creates it (pending, desired recording)."""
    return Recording(
        id="rec_test",
        cname=cname,
        mode=mode,  # type: ignore[arg-type]
        uid=uid,
        request=request if request is not None else request_for(mode),
        scene=1 if mode == "web" else 0,
        max_duration_seconds=max_duration_s,
        created_ms=now,
        updated_ms=now,
        wake_at_ms=now,
    )


class InvariantError(AssertionError):
    """The decisions broke a rule every plan must keep."""


@dataclass
class StepTrace:
    """What one step (a job) did."""

    at: int
    calls: list[Call] = field(default_factory=list)
    killed: bool = False


class Driver:
    """The runner's loop for one recording, against a :class:`FakeAgora`, with a stored copy instead of Redis.

    ``stored`` is the saved recording (bytes, as in Redis); every step loads it, and only saves change it.
    """

    def __init__(self, agora: FakeAgora, recording: Recording, timing: Timing | None = None) -> None:
        self.agora = agora
        self.timing = timing or Timing(upload_stuck_seconds=600.0)
        self.stored = encode(recording)
        self.commands: list[dict[str, Any]] = []
        self.claims: set[str] = set()  # recorder uids claimed on our channel
        self.owned: set[str] = set()  # sids mapped to the recording
        self.found: set[str] = set()  # sids routed to us by a claim
        self.notifications: list[str] = []
        self.notes: list[dict[str, Any]] = []
        self.steps: list[StepTrace] = []
        self.woken = False  # a callback or a command woke the recording
        self.kill: Callable[[Call], bool] | None = None  # kill the step after sending this call?
        self.transitions: list[tuple[str, str]] = []
        self.timer: int | None = recording.wake_at_ms  # the recording's entry in the timers index
        self.queue_place = 0  # the admission queue's answer (0: holds a slot of the concurrency quota)
        self.poll_every = POLL_EVERY  # the routine poll interval the fleet's size allows
        agora.on_deliver = self._routed

    @property
    def rec(self) -> Recording:
        """The recording as saved."""
        return decode(self.stored)

    def command(self, op: str, body: dict[str, Any] | None = None) -> None:
        """An API command (stop, update, layout); it wakes the recording."""
        self.commands.append({"op": op, "body": body or {}})
        self.woken = True

    def _routed(self, envelope: dict[str, Any]) -> None:
        """``routing.wake_recordings``: the owner of the sid, else the claimant of its channel and uid."""
        payload = envelope["payload"]
        sid = payload["sid"]
        if sid in self.owned:
            self.woken = True
        elif payload["cname"] == self.rec.cname and str(payload["uid"]) in self.claims:
            self.found.add(sid)
            self.woken = True

    # -- one step ------------------------------------------------------------------------------------------

    def evidence(self, rec: Recording) -> Evidence:
        """``Runner.evidence``: facts of our sids (unless terminal) and of the strays found on our claims."""
        known = {s.sid for s in rec.sessions if s.sid}
        strays = sorted(self.found - known)
        wanted = strays if rec.terminal else sorted(known) + strays
        facts = {sid: f for sid in wanted if (f := self.agora.facts(sid)) is not None}
        return Evidence(sessions=facts, strays=tuple(s for s in strays if s in facts))

    def step(self) -> StepTrace:
        """One job: decide, call, absorb, save; up to MAX_CALLS_PER_STEP calls."""
        trace = StepTrace(self.agora.now)
        self.steps.append(trace)
        self.woken = False
        self.timer = self.agora.now + LEASE_MS  # claimed: fires again after the lease unless a save moves it
        for calls in range(MAX_CALLS_PER_STEP + 1):
            now = self.agora.now
            rec = self.rec
            commands = list(self.commands)
            notes = take_commands(rec, commands, now)
            step = Step(
                rec,
                self.evidence(rec),
                now,
                self.timing,
                queue_place=self._admission(rec),
                poll_every=self.poll_every,
            )
            plan = step.decide()
            plan.notes[:0] = notes
            call = plan.call
            if call is None:
                self._check_idle_plan(rec, plan)
                self.save(rec, plan, len(commands))
                return trace
            if calls == MAX_CALLS_PER_STEP:
                plan.call, plan.wake_at = None, now
                self.save(rec, plan, len(commands))
                return trace
            trace.calls.append(call)
            step.sending(call)
            if plan.save_before:
                self.save(rec, plan, len(commands), wake_at=now + WRITE_AHEAD_WAKE_MS)
                commands = []
            answer, error = self.perform(rec, call)
            if self.kill is not None and self.kill(call):  # the answer is lost with the worker
                trace.killed = True
                return trace
            step.now = self.agora.now
            step.absorb(call, answer, error)
            self.save(rec, plan, len(commands), wake_at=step.now)
        return trace

    def _admission(self, rec: Recording) -> int:
        """As ``Runner._fleet``: only a recording that wants to record and never held a slot waits."""
        if rec.admitted or rec.sessions or not rec.holds_capacity or rec.desired == Desired.STOPPED:
            return 0
        return self.queue_place

    def _check_idle_plan(self, rec: Recording, plan: Plan) -> None:
        """A plan without a call must say when to look again (unless nothing is left to do)."""
        if not rec.terminal and plan.wake_at is None:
            raise InvariantError(f"a {rec.state} recording planned no wake-up: {rec}")
        if rec.terminal and any(s.live and s.sid for s in rec.sessions) and plan.wake_at is None:
            raise InvariantError("a recording with a task to stop planned no wake-up")

    def save(self, rec: Recording, plan: Plan, drop: int, *, wake_at: int | None = None) -> None:
        """``Runner.save`` without Redis: the document, its one timer, claims, sid ownership, notifications."""
        rec.updated_ms = self.agora.now
        rec.version += 1
        due = wake_at if wake_at is not None else plan.wake_at
        if not rec.terminal and due is None:
            due = rec.updated_ms + self.timing.ms(120.0)
        if rec.terminal and not any(s.live and s.sid for s in rec.sessions):
            due = None
        rec.wake_at_ms = self.timer = due
        self.stored = encode(rec)
        del self.commands[:drop]
        self.claims.update(plan.claims)
        self.owned.update(plan.owned_sids)
        for note in plan.notes:
            if note["kind"] == "transition":
                self.transitions.append((note["from"], note["to"]))
        self.notes.extend(plan.notes)
        self.notifications.extend(plan.notifications)
        plan.notes.clear()
        plan.claims.clear()
        plan.owned_sids.clear()
        plan.notifications = []

    def perform(self, rec: Recording, call: Call) -> tuple[Any, AgoraError | None]:
        """``Runner.perform`` against the fake."""
        try:
            return self._send(rec, call), None
        except Exception as exc:  # as the runner: every failure is an answer
            return None, error_of(exc)

    def _send(self, rec: Recording, call: Call) -> Any:
        agora = self.agora
        if call.endpoint == "acquire":
            return agora.acquire(rec.cname, str(call.uid))
        session = rec.sessions[call.session]
        if call.endpoint == "start":
            config = with_onhold(rec.request, session.onhold) if rec.mode == "web" else rec.request
            return agora.start(session.resource_id, rec.mode, rec.cname, session.uid, config)
        assert session.sid is not None
        if call.endpoint == "query":
            return agora.query(session.resource_id, session.sid, rec.mode)
        if call.endpoint == "stop":
            return agora.stop(session.resource_id, session.sid, rec.mode, rec.cname, session.uid)
        if call.hold is not None:
            body: dict[str, Any] = {"webRecordingConfig": {"onhold": call.hold}}
        else:
            body = rec.pending_changes[0]["body"]
        return agora.update(call.endpoint, session.resource_id, session.sid, rec.mode, body)

    # -- running -------------------------------------------------------------------------------------------

    def run(
        self,
        until: Callable[[Recording], bool] | None = None,
        *,
        within_ms: int = 3_600_000,
        max_steps: int = 2_000,
    ) -> Recording:
        """Steps at each saved wake-up (and whenever a callback or command woke the recording) until
        ``until(recording)`` holds (default: terminal), the recording has nothing left to do, or ``within_ms``
        of fake time passed; returns the recording as saved."""
        until = until or (lambda r: r.state in TERMINAL)
        deadline = self.agora.now + within_ms
        self.step()
        for _ in range(max_steps):
            rec = self.rec
            if until(rec):
                return rec
            wake = self.timer
            if self.woken:
                self.step()
                continue
            event_at = self.agora.next_event_at()
            if wake is None and event_at is None:
                return rec
            if event_at is not None and (wake is None or event_at < wake):
                if event_at > deadline:
                    return rec
                self.agora.run_next()
                continue
            assert wake is not None
            if wake > deadline:
                return rec
            self.agora.advance_to(wake)
            self.step()
        raise AssertionError(f"still going after {max_steps} steps: {self.rec}")

    def wait(self, ms: int) -> Recording:
        """Let ``ms`` of fake time pass, stepping as the recording asks."""
        return self.run(lambda _rec: False, within_ms=ms)

    # -- reading -------------------------------------------------------------------------------------------

    def calls(self, endpoint: str | None = None) -> list[Logged]:
        """The calls Agora received (of one endpoint)."""
        return [c for c in self.agora.log if endpoint is None or c.endpoint == endpoint]

    def live_tasks(self) -> list[FakeTask]:
        """Tasks Agora runs on this recording's channel that are not somebody else's."""
        cname = self.rec.cname
        return [t for t in self.agora.tasks.values() if t.alive and t.cname == cname and not t.foreign]
