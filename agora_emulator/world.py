"""The emulated Agora: resource IDs, recording tasks, channels and what each task reports and calls back.

Timeline of a task (emulated seconds after start; ``docs/agora.md`` §1.6, §1.7, §3.6, §3.10):

- 0: status 1; 0.5: uploader ready (30), status 3; 1: recorder started (40 / web 70), status 4;
- every ``TICK`` s: which subscribed users publish -> stream state events (43/44), first slice (42);
  the first playlist is uploaded 15 s (mix, web) or 30 s (individual) after data arrived -> 4, status 5;
- every 60 s: upload progress (33);
- exit (stop, idle for ``maxIdleTime``, ``maxRecordingHour``, a fault): status 6, leave (41) or web stop (71),
  status 7, progress 10000, uploaded (31) or backed up (32) when anything was recorded, session exit (11),
  status 8. Then ``stop`` answers 49 for ``LINGER`` s, and 404 afterwards, like ``query``.

Channels: users with a role (host / audience) publishing audio and/or video. A channel never configured gets
``default_publishers`` publishing hosts, so a demo recording has something to record.

Concurrency quota (``docs/agora.md`` §2 Limits): at most ``max_recorders`` individual/mix recorders and
``max_web_recorders`` web page recorders per App ID (0: no limit). A class's usage is its alive tasks (starting,
running, migrating) plus the resources acquired for it (scene 1: web) and not started within ``RESOURCE_TTL``,
as Agora allocates a worker at acquire. At the limit, acquire answers 400 ``{"code": 406, "reason":
"vendor_over_load"}``; a task that exits frees its place at once.
"""

from __future__ import annotations

import base64
import random
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import msgspec

from agora_emulator import validate
from agora_emulator.clock import Clock, Scheduler
from agora_emulator.faults import SESSION_KINDS, SLOW_DELAY, Fault
from agora_emulator.ncs import NcsSender
from agora_emulator.validate import Reject, invalid

RESOURCE_TTL = 300.0
TICK = 5.0
LINGER = 60.0
STARTUP = 1.0
FIRST_FILE_DELAY = {"individual": 30.0, "mix": 15.0, "web": 10.0}
PROGRESS_EVERY = 60.0
MAX_FAILOVERS = 3
SERVICE_TYPE = {
    1: 0,
    2: 0,
    3: 0,
    4: 0,
    11: 0,
    12: 0,
    30: 2,
    31: 2,
    32: 2,
    33: 2,
    40: 1,
    41: 1,
    42: 1,
    43: 1,
    44: 1,
    45: 1,
}
SERVICE_TYPE |= {70: 6, 71: 6, 72: 6, 73: 6, 100: 6}
MSG_NAMES = {
    1: "cloud_recording_error",
    4: "cloud_recording_file_infos",
    11: "session_exit",
    12: "session_failover",
    30: "uploader_started",
    31: "uploaded",
    32: "backuped",
    33: "uploading_progress",
    40: "recorder_started",
    41: "recorder_leave",
    42: "recorder_slice_start",
    43: "recorder_audio_stream_state_changed",
    44: "recorder_video_stream_state_changed",
    45: "recorder_snapshot_file",
    70: "web_recorder_started",
    71: "web_recorder_stopped",
    72: "web_recorder_capability_limit",
    100: "rtmp_publish_status",
}
WEB_STOP_CODES = {
    "stop": (0, "ok"),
    "max_hour": (1, "max_recording_hour"),
    "capability": (2, "capability_limit"),
}
LEAVE_CLIENT, LEAVE_NO_USERS = 16, 4


@dataclass
class User:
    """One user in a channel."""

    uid: str
    host: bool = True
    audio: bool = True
    video: bool = True


@dataclass
class Task:
    """One recording session (a ``sid``)."""

    sid: str
    resource_id: str
    cname: str
    uid: str
    mode: str
    info: dict[str, Any]
    started: float
    number: int
    faults: list[Fault] = field(default_factory=list)
    status: int = 1
    state: str = "starting"  # starting | running | migrating | exiting | exited | gone
    recorded_since: float | None = None
    last_present: float = 0.0
    receiving: dict[tuple[str, str], bool] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    sequence: int = 0
    failovers: int = 0
    onhold: bool = False
    exit_reason: str | None = None
    exit_status: int | None = None
    ended_at: float | None = None
    rtmp_status: str = "connecting"

    def fault(self, kind: str) -> Fault | None:
        """This task's fault of a kind, if it took one."""
        return next((f for f in self.faults if f.kind == kind), None)

    @property
    def alive(self) -> bool:
        """Still recording (or migrating)."""
        return self.state in ("starting", "running", "migrating")

    def summary(self) -> dict[str, Any]:
        """For the control API."""
        return {
            "sid": self.sid,
            "resourceId": self.resource_id,
            "cname": self.cname,
            "uid": self.uid,
            "mode": self.mode,
            "status": self.status,
            "state": self.state,
            "alive": self.alive,
            "onhold": self.onhold,
            "failovers": self.failovers,
            "exitReason": self.exit_reason,
            "exitStatus": self.exit_status,
            "recorded": self.recorded_since is not None,
            "files": list(self.files.values()),
            "faults": [f.kind for f in self.faults],
            "subscriptions": self.info.get("subscriptions"),
            "rtmpUrls": self.info.get("rtmpUrls"),
        }


class World:
    """All emulated state, behind one lock; REST handlers and timers both go through it."""

    def __init__(
        self,
        *,
        app_id: str,
        clock: Clock,
        scheduler: Scheduler,
        sender: NcsSender,
        rng: random.Random,
        default_publishers: int = 2,
        max_recorders: int = 50,
        max_web_recorders: int = 200,
    ) -> None:
        self.app_id = app_id
        self.clock = clock
        self.scheduler = scheduler
        self.sender = sender
        self.rng = rng
        self.default_publishers = default_publishers
        self.lock = threading.RLock()
        self.channels: dict[str, dict[str, User]] = {}
        self.tasks: dict[str, Task] = {}
        self.used_resources: dict[str, str] = {}  # resourceId -> sid
        self.faults: list[Fault] = []
        self.fault_ids = 0
        self.task_count = 0
        self.notice_base = rng.randrange(10**9, 2 * 10**9)
        self.notice_count = 0
        self.requests: deque[dict[str, Any]] = deque(maxlen=10_000)
        self.request_count = 0
        # Concurrency quota, per class (True: web page recording). Reserved resources are kept in acquire
        # order (the clock is monotonic), so the expired ones are pruned from the front.
        self.max_recorders = max_recorders
        self.max_web_recorders = max_web_recorders
        self.quota_refused = 0
        self.alive_count: dict[bool, int] = {False: 0, True: 0}
        self.reserved: dict[bool, dict[str, float]] = {False: {}, True: {}}  # resourceId -> acquired at

    # -- identifiers ---------------------------------------------------------------------------------------

    def _hex(self, size: int) -> str:
        return "".join(self.rng.choice("0123456789abcdef") for _ in range(size))

    def _resource_id(self, cname: str, uid: str, scene: int, hours: int, at: float) -> str:
        token = {
            "a": self.app_id,
            "c": cname,
            "u": uid,
            "s": scene,
            "h": hours,
            "t": at,
            "n": self._hex(24),
        }
        raw = base64.urlsafe_b64encode(msgspec.json.encode(token)).decode().rstrip("=")
        return raw + "-" + self._hex(40)

    @staticmethod
    def parse_resource(resource_id: str) -> dict[str, Any]:
        """The facts a resource ID encodes; 1001 when it cannot be read."""
        raw = resource_id.rsplit("-", 1)[0]
        try:
            token = msgspec.json.decode(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        except (ValueError, msgspec.DecodeError):
            raise invalid("resource id parse failed", code=1001) from None
        if not isinstance(token, dict) or not {"a", "c", "u", "s", "t"} <= token.keys():
            raise invalid("resource id parse failed", code=1001)
        return token

    # -- channels ------------------------------------------------------------------------------------------

    def users(self, cname: str) -> dict[str, User]:
        """The channel's users (a never-configured channel gets the default publishers)."""
        if cname not in self.channels:
            self.channels[cname] = {
                str(1000 + i): User(str(1000 + i)) for i in range(1, self.default_publishers + 1)
            }
        return self.channels[cname]

    def set_users(self, cname: str, users: list[dict[str, Any]]) -> None:
        """Replace a channel's users."""
        parsed = {}
        for item in users:
            uid = str(item.get("uid", ""))
            if not validate.is_uid(uid):
                raise ValueError(f"bad uid {uid!r}")
            parsed[uid] = User(
                uid,
                bool(item.get("host", True)),
                bool(item.get("audio", True)),
                bool(item.get("video", True)),
            )
        self.channels[cname] = parsed

    # -- REST operations (called with the lock held) --------------------------------------------------------

    def acquire(self, body: dict[str, Any]) -> dict[str, Any]:
        """``acquire``: a resource ID for cname + uid, or 406 ``vendor_over_load`` when its class is full."""
        cname, uid, scene, hours = validate.acquire(body)
        web = scene == 1
        limit = self.max_web_recorders if web else self.max_recorders
        if limit > 0 and self.in_use(web) >= limit:
            self.quota_refused += 1
            raise invalid("vendor_over_load", code=406)
        now = self.clock.now()
        resource_id = self._resource_id(cname, uid, scene, hours, now)
        self.reserved[web][resource_id] = now
        return {"cname": cname, "uid": uid, "resourceId": resource_id}

    # -- concurrency quota ---------------------------------------------------------------------------------

    def in_use(self, web: bool) -> int:
        """Recorders of a class counted against the quota: alive tasks plus unexpired unstarted resources."""
        reserved = self.reserved[web]
        expired_before = self.clock.now() - RESOURCE_TTL
        while reserved:
            oldest = next(iter(reserved))
            if reserved[oldest] >= expired_before:
                break
            del reserved[oldest]
        return self.alive_count[web] + len(reserved)

    def quota(self) -> dict[str, int]:
        """Limits, usage per class, and acquires refused with 406 (for the control API)."""
        return {
            "maxRecorders": self.max_recorders,
            "maxWebRecorders": self.max_web_recorders,
            "recorders": self.in_use(False),
            "webRecorders": self.in_use(True),
            "refused": self.quota_refused,
        }

    def _no_longer_alive(self, task: Task) -> None:
        """Call before a task leaves the alive states: its place in the quota is free at once."""
        if task.alive:
            self.alive_count[task.mode == "web"] -= 1

    def start(self, resource_id: str, mode: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``start``: a new task, or the answer Agora gives for a spent, expired or mismatched resource."""
        token = self.parse_resource(resource_id)
        if token["a"] != self.app_id:
            raise invalid("appid does not match resource id", code=1003)
        if resource_id in self.used_resources:
            task = self.tasks.get(self.used_resources[resource_id])
            if task is not None and task.alive:
                return 201, {
                    "cname": task.cname,
                    "uid": task.uid,
                    "resourceId": resource_id,
                    "code": 7,
                    "reason": "already started",
                }
            raise invalid("resource id expired", code=433)
        if self.clock.now() - float(token["t"]) > RESOURCE_TTL:
            raise invalid("resource id expired", code=433)
        web = mode == "web"
        cname, uid = validate.channel(body, "Start", web=web)
        if (cname, uid) != (token["c"], token["u"]):
            raise invalid("parameter error: cname or uid does not match the resource id", code=432)
        if web != (token["s"] == 1):
            raise invalid("parameter error: scene of the resource id does not fit the mode", code=432)
        info = validate.start(body, mode)
        if any(t.alive and t.cname == cname and t.uid == uid for t in self.tasks.values()):
            raise invalid("task conflict", code=53)
        self.task_count += 1
        task = Task(
            sid=self._hex(32),
            resource_id=resource_id,
            cname=cname,
            uid=uid,
            mode=mode,
            info=info,
            started=self.clock.now(),
            number=self.task_count,
            onhold=bool(info.get("onhold", False)),
        )
        task.last_present = task.started
        for fault in self.faults:
            if fault.kind in SESSION_KINDS and fault.matches(cname):
                fault.take()
                task.faults.append(fault)
        self.tasks[task.sid] = task
        self.used_resources[resource_id] = task.sid
        self.reserved[web].pop(resource_id, None)
        self.alive_count[web] += 1
        self._begin(task)
        return 200, {"cname": cname, "uid": uid, "resourceId": resource_id, "sid": task.sid}

    def find(self, resource_id: str, sid: str, mode: str) -> Task:
        """The task a session call names; 1001/1003/404 as Agora answers them."""
        token = self.parse_resource(resource_id)
        if token["a"] != self.app_id:
            raise invalid("appid does not match resource id", code=1003)
        task = self.tasks.get(sid)
        if task is None or task.state == "gone":
            raise self.not_found(resource_id, sid)
        if task.resource_id != resource_id:
            raise invalid("sid does not match resource id", code=1003)
        if task.mode != mode:
            raise invalid("parameter error: mode does not match the task", code=432)
        return task

    @staticmethod
    def not_found(resource_id: str, sid: str) -> Reject:
        """404 ``failed to find worker``."""
        return Reject(
            404, {"resourceId": resource_id, "sid": sid, "code": 404, "reason": "failed to find worker"}
        )

    def query(self, resource_id: str, sid: str, mode: str) -> dict[str, Any]:
        """``query``: status and files while the task lives."""
        task = self.find(resource_id, sid, mode)
        if task.state in ("migrating", "exited"):
            raise self.not_found(resource_id, sid)
        return self._answer(task, self._server_response(task))

    def update(self, resource_id: str, sid: str, mode: str, body: dict[str, Any]) -> dict[str, Any]:
        """``update``: subscriptions, web onhold, RTMP URL, storage credentials."""
        task = self.find(resource_id, sid, mode)
        validate.channel(body, "Update", web=mode == "web")
        if not task.alive or task.state == "migrating":
            raise self.not_found(resource_id, sid)
        self._same_channel(task, body)
        changes = validate.update(body, mode)
        if "subscriptions" in changes:
            task.info["subscriptions"] = {**task.info.get("subscriptions", {}), **changes["subscriptions"]}
            for media in ("Audio", "Video"):
                if changes["subscriptions"].get(f"subscribe{media}") is not None:
                    task.info["subscriptions"][f"unsubscribe{media}"] = None
                if changes["subscriptions"].get(f"unsubscribe{media}") is not None:
                    task.info["subscriptions"][f"subscribe{media}"] = None
        if "onhold" in changes:
            task.onhold = changes["onhold"]
            if task.info.get("rtmpUrls"):
                self._rtmp_status(task, "onhold" if task.onhold else "publishing")
        if "rtmpUrls" in changes:
            task.info["rtmpUrls"] = changes["rtmpUrls"]
            self._rtmp_status(task, "connecting")
            self.scheduler.call_later(1.0, lambda: self._locked(self._rtmp_status, task, "publishing"))
        return self._answer(task, None)

    def update_layout(self, resource_id: str, sid: str, body: dict[str, Any]) -> dict[str, Any]:
        """``updateLayout`` (mix): the whole layout is replaced."""
        task = self.find(resource_id, sid, "mix")
        validate.channel(body, "UpdateLayout", web=False)
        if not task.alive or task.state == "migrating":
            raise self.not_found(resource_id, sid)
        self._same_channel(task, body)
        request = validate.obj(body.get("clientRequest"), "clientRequest", "UpdateLayout")
        validate.layout(request, "UpdateLayout")
        task.info["layout"] = request
        return self._answer(task, None)

    def stop(self, resource_id: str, sid: str, mode: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``stop``: 200 with the upload result, 206/435 when nothing was recorded, 49 when already exiting."""
        task = self.find(resource_id, sid, mode)
        validate.channel(body, "Stop", web=mode == "web")
        if task.state == "migrating":
            raise self.not_found(resource_id, sid)
        if not task.alive:
            raise invalid("invalid operation", code=49)
        self._same_channel(task, body)
        request = body.get("clientRequest") or {}
        async_stop = isinstance(request, dict) and request.get("async_stop") is True
        self._exit(task, "stop", exit_status=0, leave_code=LEAVE_CLIENT)
        if task.recorded_since is None:
            return 206, {"resourceId": resource_id, "sid": sid, "code": 435, "reason": "no recorded data"}
        response = self._server_response(task)
        uploading = "unknown" if async_stop else ("backuped" if task.fault("backup") else "uploaded")
        if mode == "web":
            response["extensionServiceState"].append(
                {"serviceName": "upload_service", "payload": {"uploadingStatus": uploading}}
            )
        else:
            response["uploadingStatus"] = uploading
        response.pop("status", None)
        return 200, self._answer(task, response)

    def _same_channel(self, task: Task, body: dict[str, Any]) -> None:
        if body.get("cname") != task.cname or body.get("uid") not in (
            task.uid,
            task.info.get("firstUid", task.uid),
        ):
            raise invalid("parameter error: cname or uid does not match the task", code=432)

    @staticmethod
    def _answer(task: Task, server_response: dict[str, Any] | None) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "cname": task.cname,
            "uid": task.info.get("firstUid", task.uid),
            "resourceId": task.resource_id,
            "sid": task.sid,
        }
        if server_response is not None:
            answer["serverResponse"] = server_response
        return answer

    def _server_response(self, task: Task) -> dict[str, Any]:
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
            if task.info.get("rtmpUrls"):
                outputs = [{"rtmpUrl": url, "status": task.rtmp_status} for url in task.info["rtmpUrls"]]
                services.append(
                    {"serviceName": "rtmp_publish_service", "payload": {"outputs": outputs, "state": state}}
                )
            return {"status": task.status, "extensionServiceState": services}
        response: dict[str, Any] = {"status": task.status}
        if task.mode == "mix" and task.info["fileTypes"] == ["hls"]:
            response["fileListMode"] = "string"
            response["fileList"] = files[0]["fileName"] if files else ""
        else:
            response["fileListMode"] = "json"
            response["fileList"] = files
        if task.recorded_since is not None:
            response["sliceStartTime"] = self._wall(task.recorded_since)
        return response

    # -- lifecycle -----------------------------------------------------------------------------------------

    def _locked(self, function: Any, *args: Any) -> None:
        with self.lock:
            function(*args)

    def _later(self, delay: float, function: Any, *args: Any) -> None:
        self.scheduler.call_later(delay, lambda: self._locked(function, *args))

    def _wall(self, emulated: float) -> int:
        return self.clock.wall_ms() - int((self.clock.now() - emulated) * 1000)

    def _begin(self, task: Task) -> None:
        self._later(0.5, self._components_ready, task)
        self._later(STARTUP, self._recorder_started, task)
        self._later(STARTUP + 0.5, self._tick, task)
        self._later(PROGRESS_EVERY, self._progress, task)
        if task.mode == "web":
            self._later(float(task.info["maxRecordingHour"]) * 3600, self._max_hour, task)
        for fault in task.faults:
            self._arm(task, fault, default_after=10.0)

    def inject(self, task: Task, fault: Fault) -> None:
        """Apply a session fault to a running task now (plus its ``after``)."""
        task.faults.append(fault)
        self._arm(task, fault, default_after=0.0)

    def _arm(self, task: Task, fault: Fault, default_after: float) -> None:
        """Schedule what a timed session fault does (``backup`` acts at exit, not on a timer)."""
        handlers = {
            "die": self._die,
            "failover": self._failover,
            "abnormal_exit": self._abnormal,
            "capability_limit": self._capability,
        }
        handler = handlers.get(fault.kind)
        if handler is not None:
            self._later(fault.number("after", default_after), handler, task, fault)

    def _components_ready(self, task: Task) -> None:
        if task.state != "starting":
            return
        task.status = 3
        self.emit(task, 30, {"status": 0})

    def _recorder_started(self, task: Task) -> None:
        if task.state != "starting":
            return
        task.state, task.status = "running", 4
        if task.mode == "web":
            self.emit(task, 70, {"recorderStartTime": self.clock.wall_ms()})
            if task.info.get("rtmpUrls"):
                self._rtmp_status(task, "connecting")
                self._later(1.0, self._rtmp_status, task, "publishing")
        else:
            self.emit(task, 40, {"status": 0})

    def _rtmp_status(self, task: Task, status: str) -> None:
        if not task.alive or not task.info.get("rtmpUrls"):
            return
        if task.onhold and status == "publishing":
            status = "onhold"
        task.rtmp_status = status
        for url in task.info["rtmpUrls"]:
            self.emit(task, 100, {"rtmpUrl": url, "status": status})

    def _subscribed(self, task: Task, uid: str, media: str) -> bool:
        subs = task.info.get("subscriptions") or {}
        white, black = subs.get(f"subscribe{media}"), subs.get(f"unsubscribe{media}")
        if white is not None:
            return white == ["#allstream#"] or uid in white
        return black is None or uid not in black

    def _tick(self, task: Task) -> None:
        if task.state not in ("running", "migrating"):
            return
        now = self.clock.now()
        if task.state == "running":
            self._observe(task, now)
        if task.state == "running" and task.mode != "web":
            idle_limit = float(task.info.get("maxIdleTime", 30))
            if now - task.last_present >= idle_limit:
                self._exit(task, "idle", exit_status=0, leave_code=LEAVE_NO_USERS)
                return
        self._later(TICK, self._tick, task)

    def _observe(self, task: Task, now: float) -> None:
        """Who is present and what is received; slice, stream-state and file events follow from it."""
        users = self.users(task.cname)
        live = task.info.get("channelType") == 1
        present = any(u.host for u in users.values()) if live else bool(users)
        if present or task.mode == "web":
            task.last_present = now
        receiving_uids: set[str] = set()
        if task.mode == "web":
            if not task.onhold:
                receiving_uids.add("0")
        else:
            stream_types = task.info.get("streamTypes", 2)
            for user in users.values():
                for media, kind, event, on in (
                    ("Audio", "audio", 43, user.audio),
                    ("Video", "video", 44, user.video),
                ):
                    wanted = stream_types == 2 or (stream_types == 0) == (kind == "audio")
                    receiving = on and wanted and self._subscribed(task, user.uid, media)
                    previous = task.receiving.get((user.uid, kind))
                    if previous is not None and previous != receiving or previous is None and receiving:
                        self.emit(
                            task,
                            event,
                            {
                                "streamUid": int(user.uid),
                                "state": 0 if receiving else 1,
                                "UtcMs": self.clock.wall_ms(),
                            },
                        )
                    task.receiving[(user.uid, kind)] = receiving
                    if receiving:
                        receiving_uids.add(user.uid)
        if receiving_uids and task.recorded_since is None:
            task.recorded_since = now
            start_ms = self.clock.wall_ms()
            track = "audio_and_video"
            self.emit(
                task,
                42,
                {
                    "startUtcMs": start_ms,
                    "discontinueUtcMs": start_ms,
                    "mixedAllUser": task.mode != "individual",
                    "streamUid": "0",
                    "trackType": track,
                },
            )
            self._later(FIRST_FILE_DELAY[task.mode], self._first_files, task)
        if task.recorded_since is not None and task.status == 5 and task.mode == "individual":
            self._individual_files(task)
        interval = task.info.get("captureInterval")
        if interval and task.mode == "individual" and now - task.info.get("lastSnapshot", -1e9) >= interval:
            task.info["lastSnapshot"] = now
            stamp = self.clock.wall_ms()
            for uid in sorted({uid for (uid, kind), on in task.receiving.items() if on and kind == "video"}):
                prefix = "/".join(task.info.get("prefix", []))
                name = f"{task.sid}_{task.cname}__uid_s_{uid}__uid_e_video_{stamp}.jpg"
                self.emit(task, 45, {"fileName": f"{prefix}/{name}" if prefix else name})

    def _first_files(self, task: Task, force: bool = False) -> None:
        if task.state != "running" and not force:
            return
        if task.mode == "individual":
            self._individual_files(task)
        else:
            self._add_file(task, self._name(task, ".m3u8"), "audio_and_video", "0", True)
            if "mp4" in task.info["fileTypes"]:
                self._add_file(task, self._name(task, "_0.mp4"), "audio_and_video", "0", True, announce=False)
        task.status = 5

    def _individual_files(self, task: Task) -> None:
        for (uid, kind), receiving in task.receiving.items():
            if receiving:
                self._add_file(task, self._name(task, f"__uid_s_{uid}__uid_e_{kind}.m3u8"), kind, uid, False)

    def _name(self, task: Task, suffix: str) -> str:
        cname = re.sub(r"[^A-Za-z0-9_-]", "-", task.cname) if task.mode == "web" else task.cname
        bak = f"bak{task.failovers - 1}_" if task.failovers else ""
        prefix = "".join(f"{directory}/" for directory in task.info.get("prefix", []))
        return f"{prefix}{bak}{task.sid}_{cname}{suffix}"

    def _add_file(
        self, task: Task, name: str, track: str, uid: str, mixed: bool, announce: bool = True
    ) -> None:
        if name in task.files:
            return
        task.files[name] = {
            "fileName": name,
            "trackType": track,
            "uid": uid,
            "mixedAllUser": mixed,
            "isPlayable": True,
            "sliceStartTime": self._wall(task.recorded_since or self.clock.now()),
        }
        if announce and name.endswith(".m3u8"):
            self.emit(task, 4, {"fileList": name})

    def _progress(self, task: Task) -> None:
        if not task.alive:
            return
        if task.recorded_since is not None:
            self.emit(task, 33, {"progress": self.rng.randrange(9000, 10000)})
        self._later(PROGRESS_EVERY, self._progress, task)

    def _max_hour(self, task: Task) -> None:
        if task.alive:
            self._exit(task, "max_hour", exit_status=0, leave_code=LEAVE_CLIENT)

    def _die(self, task: Task, _fault: Fault) -> None:
        """Start was accepted, then the task vanished: no callbacks, query answers 404."""
        if task.alive:
            self._no_longer_alive(task)
            task.state, task.status, task.exit_reason, task.ended_at = "gone", 20, "died", self.clock.now()

    def _abnormal(self, task: Task, fault: Fault) -> None:
        if not task.alive:
            return
        code = int(fault.number("errorCode", 110))
        self.emit(
            task, 1, {"module": 0, "errorLevel": 5, "errorCode": code, "stat": 0, "errorMsg": "fatal error"}
        )
        self._exit(task, "abnormal", exit_status=1, leave_code=0)

    def _capability(self, task: Task, fault: Fault) -> None:
        if not task.alive or task.mode != "web":
            return
        self.emit(task, 72, {"limitType": str(fault.params.get("limitType", "WebGL"))})
        self._exit(task, "capability", exit_status=0, leave_code=LEAVE_CLIENT)

    def _failover(self, task: Task, fault: Fault) -> None:
        if task.state != "running":
            return
        new_uid = str(self.rng.randrange(2**31, 2**32 - 1))
        self.emit(task, 12, {"newUid": int(new_uid)})
        if task.failovers >= MAX_FAILOVERS:
            self._exit(task, "abnormal", exit_status=1, leave_code=0)
            return
        task.state = "migrating"
        task.info.setdefault("firstUid", task.uid)
        self._later(fault.number("window", 30.0), self._migrated, task, new_uid, fault)

    def _migrated(self, task: Task, new_uid: str, fault: Fault) -> None:
        if task.state != "migrating":
            return
        task.uid, task.state = new_uid, "running"
        task.failovers += 1
        task.receiving.clear()
        self.emit(
            task,
            70 if task.mode == "web" else 40,
            {"status": 0} if task.mode != "web" else {"recorderStartTime": self.clock.wall_ms()},
        )
        if task.recorded_since is not None:
            self._later(FIRST_FILE_DELAY[task.mode], self._first_files, task)
        remaining = int(fault.number("count", 1)) - 1
        if remaining > 0:
            fault.params["count"] = remaining
            self._later(fault.number("after", 10.0), self._failover, task, fault)

    def _exit(self, task: Task, reason: str, *, exit_status: int, leave_code: int) -> None:
        """Leave the channel, upload, call back, and linger (stop answers 49) before vanishing."""
        self._no_longer_alive(task)
        task.state, task.status, task.exit_reason, task.exit_status = "exiting", 6, reason, exit_status
        task.ended_at = self.clock.now()
        files = list(task.files.values())
        if task.recorded_since is not None and not files:
            self._first_files(task, force=True)
            files = list(task.files.values())
        if task.mode == "web":
            code, message = WEB_STOP_CODES.get(reason, (6, "recorder_error"))
            self.emit(
                task,
                71,
                {
                    "code": code,
                    "message": message,
                    "details": message,
                    "fileList": [
                        {"filename": f["fileName"], "sliceStartTime": f["sliceStartTime"]} for f in files
                    ],
                },
            )
        else:
            self.emit(task, 41, {"leaveCode": leave_code})
        task.status = 7
        if task.recorded_since is not None:
            self.emit(task, 33, {"progress": 10000})
            event = 32 if task.fault("backup") else 31
            self.emit(task, event, {"fileList": files, "status": 0})
        task.status = 8
        self.emit(task, 11, {"exitStatus": exit_status})
        task.state = "exited"
        self._later(LINGER, self._vanish, task)

    def _vanish(self, task: Task) -> None:
        task.state = "gone"

    # -- callbacks ------------------------------------------------------------------------------------------

    def emit(self, task: Task, event_type: int, details: dict[str, Any]) -> None:
        """Send one callback for a task, with the channel's ``ncs`` fault."""
        self.notice_count += 1
        payload = {
            "cname": task.cname,
            "uid": task.uid,
            "sid": task.sid,
            "sequence": task.sequence,
            "sendts": self.clock.wall_ms(),
            "serviceType": SERVICE_TYPE.get(event_type, 0),
            "details": {"msgName": MSG_NAMES.get(event_type, "unknown"), **details},
        }
        task.sequence += 1
        envelope = {
            "noticeId": f"{self.notice_base}:{task.number}:{self.notice_count}",
            "productId": 3,
            "eventType": event_type,
            "notifyMs": self.clock.wall_ms(),
            "sid": task.sid,
            "payload": payload,
        }
        fault: dict[str, float] = {}
        for spec in self.faults:
            if spec.kind == "ncs" and spec.matches(task.cname, task.sid):
                for name in ("loss", "duplicate", "reorder", "delay"):
                    fault[name] = max(fault.get(name, 0.0), spec.number(name, 0.0))
        self.sender.send(envelope, fault)

    # -- faults --------------------------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> Fault:
        """Switch a fault on."""
        self.fault_ids += 1
        fault.id = self.fault_ids
        self.faults.append(fault)
        return fault

    def _next_fault(self, kind: str, endpoint: str, cname: str | None, sid: str | None) -> Fault | None:
        """The first ``kind`` fault (answer, slow) for a call to ``endpoint``, consumed; None when none applies."""
        for fault in self.faults:
            if fault.kind != kind or fault.params.get("endpoint", "*") not in ("*", endpoint):
                continue
            if fault.cname is not None and cname is None:
                continue
            if not fault.matches(cname, sid):
                continue
            fault.take()
            return fault
        return None

    def slow_answer(self, endpoint: str, cname: str | None, sid: str | None = None) -> float | None:
        """Real seconds to hold back the answer to this call by the next ``slow`` fault (consumed), if any."""
        fault = self._next_fault("slow", endpoint, cname, sid)
        return None if fault is None else fault.number("delay", SLOW_DELAY)

    def scripted_answer(self, endpoint: str, cname: str | None, sid: str | None = None) -> Reject | None:
        """The next ``answer`` fault for this call, if any (consumed)."""
        fault = self._next_fault("answer", endpoint, cname, sid)
        if fault is None:
            return None
        status = int(fault.number("status", 500))
        if "message" in fault.params:
            return Reject(status, {"message": str(fault.params["message"])})
        code = int(fault.number("code", status))
        reason = str(fault.params.get("reason", DEFAULT_REASONS.get(code, "error")))
        return Reject(status, {"code": code, "reason": reason})


DEFAULT_REASONS = {
    500: "internal_error",
    501: "no_worker_manager_available",
    502: "Failed to allocate worker",
    504: "allocate_timeout",
    62: "request timeout",
    65: "request not completed",
}
