"""Recording orchestration: one idempotent job, :func:`advance`, moves a recording toward what is wanted.

``advance(recording_id)`` runs whenever something may have changed: the API created or stopped the recording,
callbacks for one of its sessions were applied (the drain job asks), or a timer it set itself fired (RQ's
scheduler). Each run holds the recording's lock, looks at the desired state, the current session, what the
callbacks say (hints) and what ``query`` says (the truth, ``agora-reference.md`` §1.9, §2), makes at most a few
Agora calls through the shared rate limit, saves the recording, and schedules its next look.

Agora's rules it follows (§2, §3.9): acquire then start at once; 206/65, 5xx and 62 retried with backoff
3/6/9 s, a new recorder uid after 3 failures in a row, re-acquire on 433/1001/502; 7/53 mean a task already
runs; 400/401 are fatal with Agora's reason. Confirm with query 5 s after start, with backoff; not running
after 90 s = failed attempt. 404 is tolerated for 90 s (start-up, HA failover) before the session counts as
gone. An abnormal end while recording is wanted (11 with exitStatus 1, web 71 with code ≠ 0, 72, a silent
death) starts a new session, bounded; a normal end (idle exit, web max hours) ends the recording. Stop: 49/404
= already stopped, 435 = nothing recorded, ``uploadingStatus`` decides between completed, backed_up and
waiting for the upload callbacks (31/32).

Times are multiplied by ``RECORDING_TIME_SCALE`` (tests run the same logic faster).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Iterator
from typing import Any, cast

import msgspec
import redis
from rq import get_current_job

from workers import keys
from workers.agora import (
    AcquireClientRequest,
    AcquireRequest,
    AgoraApiError,
    AgoraClient,
    AgoraError,
    AgoraRequestError,
    Outcome,
    RecordingReport,
    StartClientRequest,
    StartRequest,
    StopRequest,
    UpdateClientRequest,
    UpdateLayoutClientRequest,
    UpdateLayoutRequest,
    UpdateRequest,
    from_json_dict,
)
from workers.config import Settings, current_settings
from workers.notify import queue_notification
from workers.ratelimit import RateLimiter
from workers.recording_store import drop_commands, peek_commands, queue_advance
from workers.recordings import (
    AgoraSession,
    FileEntry,
    Recording,
    decode,
    encode,
    ended_outcome,
    files_from_event,
    merge_file,
    recorder_uid,
)
from workers.session_store import SessionView, read_session

log = logging.getLogger(__name__)

CONFIRM_AFTER = 5.0
CONFIRM_BACKOFF = (5.0, 10.0, 15.0)
START_WINDOW = 90.0
MISSING_WINDOW = 90.0
POLL_EVERY = 120.0
START_BACKOFF = (3.0, 6.0, 9.0)
ROTATE_UID_AFTER = 3
MAX_START_ATTEMPTS = 9
MAX_RESTARTS = 5
UPLOAD_CHECK_EVERY = 30.0
RATE_LIMITED_BACKOFF = 2.0
LOCK_TTL_MS = 60_000
TIMELINE_CAP = 2000


def now_ms() -> int:
    """Wall-clock milliseconds."""
    return int(time.time() * 1000)


class Orchestrator:
    """What ``advance`` needs: Redis, settings, the Agora client and the shared rate limit."""

    def __init__(
        self, connection: redis.Redis, settings: Settings, client: AgoraClient | None = None
    ) -> None:
        self.redis = connection
        self.settings = settings
        self.client = client or AgoraClient.from_settings(settings)
        self.limiter = RateLimiter(connection, settings.agora_app_id, settings.agora_rate_limit)
        self._views: dict[str, SessionView | None] = {}  # callbacks per sid, read once per step

    # -- persistence -------------------------------------------------------------------------------------

    def load(self, recording_id: str) -> Recording | None:
        """The stored recording, or None."""
        raw = self.redis.get(keys.recording(recording_id))
        return decode(raw) if isinstance(raw, bytes) else None

    def save(self, recording: Recording) -> None:
        """Store it (the caller holds the lock), and keep the index of recordings still to look after."""
        recording.updated_ms = now_ms()
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(keys.recording(recording.id), encode(recording))
        if recording.terminal:
            # Finished recordings are kept as long as sessions are (SESSION_RETENTION_SECONDS), then expire.
            retention = self.settings.session_retention_seconds
            pipe.zrem(keys.ACTIVE_RECORDINGS, recording.id)
            pipe.expire(keys.recording(recording.id), retention)
            pipe.expire(keys.recording_timeline(recording.id), retention)
        else:
            pipe.zadd(keys.ACTIVE_RECORDINGS, {recording.id: recording.updated_ms})
        pipe.execute()

    def note(self, recording: Recording, kind: str, **fields: Any) -> None:
        """Append a timeline entry (API call, transition, decision)."""
        entry = {"ts": now_ms(), "kind": kind, **fields}
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(keys.recording_timeline(recording.id), msgspec.json.encode(entry))
        pipe.ltrim(keys.recording_timeline(recording.id), -TIMELINE_CAP, -1)
        pipe.execute()

    def _note_error(self, recording: Recording, endpoint: str, exc: AgoraError) -> None:
        """An Agora call that did not succeed, on the timeline."""
        self.note(recording, "agora", **{**exc.as_dict(), "endpoint": endpoint})

    def transition(self, recording: Recording, state: str, cause: str, **fields: Any) -> None:
        """Change state, keeping the cause on the timeline."""
        if recording.state == state:
            return
        self.note(recording, "transition", **{"from": recording.state, "to": state, "cause": cause, **fields})
        log.info(
            "recording state",
            extra={"recording_id": recording.id, "from": recording.state, "to": state, "cause": cause},
        )
        recording.state = state
        if state in ("completed", "backed_up", "failed"):
            recording.ended_ms = now_ms()
        self._notify(recording)

    def _notify(self, recording: Recording) -> None:
        """recording.started / .restarted / .failed / .completed / .backed_up, once each (restarts: per restart)."""
        if recording.state == "recording":
            key = f"restarted:{recording.restarts}" if recording.restarts else "started"
            kind = "recording.restarted" if recording.restarts else "recording.started"
        elif recording.state in ("failed", "completed", "backed_up"):
            key, kind = recording.state, f"recording.{recording.state}"
        else:
            return
        if key in recording.notified or not self.settings.notify_url:
            return
        recording.notified.append(key)
        message_id = queue_notification(
            self.redis, self.settings.notify_url, kind, recording.public(), self.settings.recording_time_scale
        )
        self.note(recording, "notification", type=kind, webhookId=message_id)

    @contextlib.contextmanager
    def locked(self, recording_id: str) -> Iterator[bool]:
        """Hold the recording's lock (True) or learn that another worker holds it (False)."""
        token = secrets.token_hex(8)
        key = keys.recording_lock(recording_id)
        held = bool(self.redis.set(key, token, nx=True, px=LOCK_TTL_MS))
        try:
            yield held
        finally:
            if held:
                self.redis.eval(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
                    1,
                    key,
                    token,
                )

    def schedule(self, recording: Recording, seconds: float) -> None:
        """Look at the recording again after ``seconds`` (scaled)."""
        queue_advance(self.redis, recording.id, max(0.0, seconds * self.settings.recording_time_scale))

    def scaled_ms(self, seconds: float) -> int:
        """Milliseconds of a (scaled) duration."""
        return int(seconds * self.settings.recording_time_scale * 1000)

    def seconds_since(self, moment_ms: int, now: int | None = None) -> float:
        """Unscaled seconds from ``moment_ms`` to ``now`` (comparable with the constants above)."""
        return ((now_ms() if now is None else now) - moment_ms) / 1000 / self.settings.recording_time_scale

    # -- the step ------------------------------------------------------------------------------------------

    def advance(self, recording_id: str) -> str:
        """One look at a recording; returns its state afterwards."""
        with self.locked(recording_id) as held:
            if not held:
                recording = self.load(recording_id)
                if recording is not None and not recording.terminal:
                    self.schedule(recording, 1.0)
                return "busy"
            recording = self.load(recording_id)
            if recording is None:
                return "unknown"
            self._views.clear()
            applied = self._take_commands(recording)
            if not recording.terminal:
                try:
                    self._step(recording)
                except AgoraError as exc:  # unexpected here: keep it on the recording, look again later
                    recording.last_error = exc.as_dict()
                    self.schedule(recording, START_BACKOFF[-1])
            self.save(recording)
            drop_commands(self.redis, recording_id, applied)  # only now: a crash before the save loses none
            return recording.state

    def _take_commands(self, rec: Recording) -> int:
        """Apply what the API asked since the last step (stop, update, layout); returns how many."""
        commands = peek_commands(self.redis, rec.id)
        for command in commands:
            if command["op"] == "stop":
                if rec.desired != "stopped":
                    rec.desired = "stopped"
                    self.note(rec, "decision", what="stop requested by the app server")
            elif command["op"] in ("update", "layout"):
                if rec.terminal or rec.desired == "stopped":
                    self.note(
                        rec, "decision", what=f"{command['op']} dropped: the recording is stopping or over"
                    )
                else:
                    rec.pending_changes.append({"kind": command["op"], "body": command["body"]})
        return len(commands)

    def _step(self, rec: Recording) -> None:
        now = now_ms()
        self._absorb_callbacks(rec)
        if rec.desired == "recording" and rec.stop_at_ms is not None and now >= rec.stop_at_ms:
            rec.desired = "stopped"
            self.note(rec, "decision", what="max duration reached: stopping")
        self._apply_pending_changes(rec)
        session = rec.current
        if rec.desired == "stopped":
            self._stop(rec, session)
            return
        if session is None:
            self._start(rec)
            return
        if session.sid is None:  # acquired, start not yet accepted: retry the start
            self._start(rec)
            return
        ended = self._ended_by_callbacks(rec, session)
        if ended is not None:
            self._session_ended(rec, session, ended)
            return
        self._check(rec, session)

    # -- starting ------------------------------------------------------------------------------------------

    def _start(self, rec: Recording) -> None:
        now = now_ms()
        if rec.retry_at_ms is not None and now < rec.retry_at_ms:
            self.schedule(rec, -self.seconds_since(rec.retry_at_ms, now))
            return
        if rec.start_attempts >= MAX_START_ATTEMPTS:
            rec.reason = f"could not start a session after {rec.start_attempts} attempts"
            self.transition(rec, "failed", "start attempts exhausted")
            return
        if rec.state == "pending" or rec.state == "recording":
            self.transition(rec, "starting", "restart" if rec.sessions else "start requested")
        session = rec.current
        if session is None or session.sid is not None:
            uid = recorder_uid(rec.uid, rec.uid_index)
            if not self.limiter.take():
                self.schedule(rec, RATE_LIMITED_BACKOFF)
                return
            body = AcquireRequest(
                cname=rec.cname, uid=uid, client_request=AcquireClientRequest(scene=rec.scene)
            )
            try:
                answer = self.client.acquire(body, mode=rec.mode)
            except AgoraError as exc:
                self._start_failed(rec, "acquire", exc)
                return
            assert answer.resource_id is not None
            session = AgoraSession(resource_id=answer.resource_id, uid=uid, acquired_ms=now_ms())
            rec.sessions.append(session)
            self.note(rec, "agora", endpoint="acquire", outcome="ok", resourceId=answer.resource_id, uid=uid)
        if not self.limiter.take():
            self.schedule(rec, RATE_LIMITED_BACKOFF)
            return
        rec.start_attempts += 1
        try:
            request = from_json_dict(StartClientRequest, rec.request, "clientRequest")
            start_body = StartRequest(cname=rec.cname, uid=session.uid, client_request=request)
            started = self.client.start(session.resource_id, rec.mode, start_body)
        except AgoraError as exc:
            self._start_failed(rec, "start", exc, session)
            return
        session.sid = started.sid
        session.started_ms = now_ms()
        rec.retry_at_ms = None
        assert session.sid is not None
        self.redis.set(keys.recording_of_sid(session.sid), rec.id, ex=self.settings.session_retention_seconds)
        self.note(rec, "agora", endpoint="start", outcome="ok", sid=session.sid, uid=session.uid)
        self._query_later(rec, session, CONFIRM_AFTER)

    def _start_failed(
        self, rec: Recording, endpoint: str, exc: AgoraError, session: AgoraSession | None = None
    ) -> None:
        rec.last_error = exc.as_dict()
        self._note_error(rec, endpoint, exc)
        outcome = exc.outcome
        if outcome is Outcome.REJECTED or isinstance(exc, AgoraRequestError):
            rec.reason = f"Agora refused {endpoint}: {getattr(exc, 'reason', str(exc))}"
            if session is not None:
                session.ended_ms, session.outcome = now_ms(), "start_failed"
            self.transition(rec, "failed", f"{endpoint} rejected", code=rec.last_error["code"])
            return
        rec.failures_in_row += 1
        drop_resource = outcome in (Outcome.REACQUIRE, Outcome.ALREADY_RUNNING)
        if rec.failures_in_row >= ROTATE_UID_AFTER or outcome is Outcome.ALREADY_RUNNING:
            rec.uid_index += (
                1  # a new recorder uid (Agora's advice after repeated failures, or a task conflict)
            )
            rec.failures_in_row = 0
            drop_resource = True
        if session is not None and drop_resource:
            session.ended_ms, session.outcome = now_ms(), "start_failed"
        if outcome is Outcome.RATE_LIMITED:
            backoff = RATE_LIMITED_BACKOFF
        elif outcome is Outcome.REACQUIRE:
            backoff = 0.0
        else:
            backoff = START_BACKOFF[max(0, min(rec.failures_in_row, 3) - 1)]
        rec.retry_at_ms = now_ms() + self.scaled_ms(backoff)
        self.schedule(rec, backoff)

    # -- running -------------------------------------------------------------------------------------------

    def _check(self, rec: Recording, session: AgoraSession) -> None:
        """Query the running session and act on the answer."""
        assert session.sid is not None
        if session.next_query_ms is not None and now_ms() < session.next_query_ms:
            return  # a callback woke us: its files and exit are absorbed; the query waits for its timer
        if not self.limiter.take():
            self._query_later(rec, session, RATE_LIMITED_BACKOFF)
            return
        now = now_ms()
        age = self.seconds_since(session.started_ms or now, now)
        try:
            report = self.client.query(session.resource_id, session.sid, rec.mode)
        except AgoraApiError as exc:
            if exc.outcome is Outcome.NOT_FOUND:
                self._missing(rec, session, age)
            else:
                rec.last_error = exc.as_dict()
                self._query_later(
                    rec,
                    session,
                    RATE_LIMITED_BACKOFF if exc.outcome is Outcome.RATE_LIMITED else CONFIRM_BACKOFF[0],
                )
            return
        except AgoraError as exc:
            rec.last_error = exc.as_dict()
            self._query_later(rec, session, CONFIRM_BACKOFF[0])
            return
        session.missing_since_ms = None
        session.status = report.status
        self._merge_report(rec, session, report, "recorded", "query")
        if report.running:
            if session.confirmed_ms is None:
                session.confirmed_ms = now
                session.outcome = "running"
                rec.failures_in_row = 0
                rec.start_attempts = 0
                self.note(
                    rec, "agora", endpoint="query", outcome="running", sid=session.sid, status=report.status
                )
            self.transition(rec, "recording", "query confirmed the session", sid=session.sid)
            self._query_later(rec, session, self._next_poll(rec))
            return
        if session.confirmed_ms is None and age >= START_WINDOW:
            self.note(rec, "decision", what="not running 90 s after start: failed attempt", sid=session.sid)
            self._abandon(rec, session, "not_started")
            self._start(rec)
            return
        self._query_later(
            rec,
            session,
            CONFIRM_BACKOFF[min(int(age // 15), 2)] if session.confirmed_ms is None else self._next_poll(rec),
        )

    def _query_later(self, rec: Recording, session: AgoraSession, seconds: float) -> None:
        """Query this session again after ``seconds`` (scaled); callback wake-ups before then do not query."""
        session.next_query_ms = now_ms() + self.scaled_ms(seconds)
        self.schedule(rec, seconds)

    def _next_poll(self, rec: Recording) -> float:
        if rec.stop_at_ms is not None:
            until_stop = -self.seconds_since(rec.stop_at_ms)
            return max(0.0, min(POLL_EVERY, until_stop))
        return POLL_EVERY

    def _missing(self, rec: Recording, session: AgoraSession, age: float) -> None:
        """query answered 404: starting up, migrating (HA), or gone."""
        now = now_ms()
        if session.missing_since_ms is None:
            session.missing_since_ms = now
        missing_for = self.seconds_since(session.missing_since_ms, now)
        if missing_for < MISSING_WINDOW:
            self._query_later(rec, session, 10.0)
            return
        self.note(rec, "decision", what="query 404 for 90 s: session gone", sid=session.sid)
        ended = self._ended_by_callbacks(rec, session)
        self._session_ended(rec, session, ended or "died")

    def _abandon(self, rec: Recording, session: AgoraSession, outcome: str) -> None:
        """Give up a session: best-effort stop, then mark it ended."""
        if session.sid is not None and self.limiter.take(1.0):
            with contextlib.suppress(AgoraError):
                self.client.stop(
                    session.resource_id, session.sid, rec.mode, StopRequest(cname=rec.cname, uid=session.uid)
                )
        session.ended_ms, session.outcome = now_ms(), outcome

    # -- callbacks -----------------------------------------------------------------------------------------

    def _view(self, sid: str) -> SessionView | None:
        """A session's callbacks, read from Redis once per step (or again after a stop, see ``_stop``)."""
        if sid not in self._views:
            self._views[sid] = read_session(self.redis, sid)
        return self._views[sid]

    def _absorb_callbacks(self, rec: Recording) -> None:
        """Files and failover uids from every session's callbacks (hints, merged order-independently)."""
        for session in rec.sessions:
            if session.sid is None:
                continue
            view = self._view(session.sid)
            if view is None:
                continue
            if view.state.failover_uid and view.state.failover_uid != session.failover_uid:
                session.failover_uid = view.state.failover_uid
                session.missing_since_ms = None  # HA: 404s start counting anew
                self.note(rec, "callback", what="HA failover", sid=session.sid, newUid=session.failover_uid)
            for event in view.events:
                for entry in files_from_event(session.sid, event["eventType"], event.get("details") or {}):
                    if merge_file(rec.files, entry):
                        rec.last_upload_change_ms = now_ms()

    def _ended_by_callbacks(self, rec: Recording, session: AgoraSession) -> str | None:
        """``exited`` (normal end), ``exited_abnormally``, or None when the callbacks say it still runs."""
        if session.sid is None:
            return None
        view = self._view(session.sid)
        if view is None:
            return None
        return ended_outcome(view.state, view.events)

    def _session_ended(self, rec: Recording, session: AgoraSession, outcome: str) -> None:
        session.ended_ms, session.outcome = now_ms(), outcome
        self.note(rec, "session_ended", sid=session.sid, outcome=outcome)
        if outcome == "exited":  # idle exit or maxRecordingHour: the recording is over
            rec.desired = "stopped"
            self._finish(rec)
            return
        rec.restarts += 1
        if rec.restarts > MAX_RESTARTS:
            rec.reason = f"session ended abnormally {rec.restarts} times"
            self.transition(rec, "failed", "restart budget exhausted")
            return
        rec.uid_index += 1  # a new session with another uid, as Agora advises
        rec.retry_at_ms = None
        self.note(rec, "decision", what="restarting after abnormal end", restarts=rec.restarts)
        self._start(rec)

    # -- stopping ------------------------------------------------------------------------------------------

    def _stop(self, rec: Recording, session: AgoraSession | None) -> None:
        if session is None or session.sid is None:
            if session is not None:
                session.ended_ms, session.outcome = now_ms(), "not_started"
            self._finish(rec)
            return
        self.transition(rec, "stopping", "stop requested")
        if not self.limiter.take():
            self.schedule(rec, RATE_LIMITED_BACKOFF)
            return
        try:
            report = self.client.stop(
                session.resource_id, session.sid, rec.mode, StopRequest(cname=rec.cname, uid=session.uid)
            )
        except AgoraApiError as exc:
            self._views.clear()  # upload callbacks may have been applied while Agora stopped the task
            self._note_error(rec, "stop", exc)
            if exc.outcome is Outcome.NOTHING_RECORDED:
                session.ended_ms, session.outcome = now_ms(), "nothing_recorded"
                rec.reason = "nothing was recorded (nobody published)"
                self._finish(rec)
            elif exc.outcome is Outcome.ALREADY_STOPPED:
                session.ended_ms, session.outcome = now_ms(), "stopped"
                self._finish(rec)
            elif exc.outcome in (Outcome.RETRY, Outcome.RATE_LIMITED):
                self.schedule(rec, START_BACKOFF[0])
            else:
                rec.last_error = exc.as_dict()
                session.ended_ms, session.outcome = now_ms(), "stopped"
                self._finish(rec)
            return
        except AgoraError as exc:
            rec.last_error = exc.as_dict()
            self.schedule(rec, START_BACKOFF[0])
            return
        self._views.clear()  # upload callbacks may have been applied while Agora stopped the task
        session.ended_ms, session.outcome = now_ms(), "stopped"
        status = {"uploaded": "uploaded", "backuped": "backed_up"}.get(
            report.uploading_status or "", "recorded"
        )
        self._merge_report(rec, session, report, status, "stop")
        self.note(
            rec,
            "agora",
            endpoint="stop",
            outcome="ok",
            uploadingStatus=report.uploading_status,
            sid=session.sid,
        )
        self._finish(rec, uploading_status=report.uploading_status, sid=session.sid)

    def _finish(self, rec: Recording, uploading_status: str | None = None, sid: str | None = None) -> None:
        """No session runs: completed, backed_up, or uploading until every file is accounted for."""
        self._absorb_callbacks(rec)
        uploads = self._upload_results(rec)
        if not rec.files:
            self.transition(rec, "completed", rec.reason or "stopped; no files were reported")
            return
        for entry in rec.files.values():
            if entry.status != "recorded":
                continue
            if uploading_status == "uploaded" and entry.sid == sid:  # every file of that session is stored
                entry.status, entry.source = "uploaded", "stop"
            elif uploads.get(entry.sid) == "uploaded":  # 31 without a file list still closes the session
                entry.status, entry.source = "uploaded", "31"
        pending = [f for f in rec.files.values() if f.status == "recorded"]
        backed = [f for f in rec.files.values() if f.status == "backed_up"]
        if uploading_status == "backuped" or "backed_up" in uploads.values():
            self.transition(
                rec, "backed_up", "Agora holds files in its backup", files=[f.name for f in backed]
            )
            return
        if not pending:
            self.transition(rec, "completed", "every file uploaded")
            return
        self.transition(rec, "uploading", "waiting for the upload callbacks")
        quiet = (now_ms() - (rec.last_upload_change_ms or rec.updated_ms)) / 1000
        if (
            quiet > self.settings.upload_stuck_seconds * self.settings.recording_time_scale
            and not rec.upload_stuck
        ):
            rec.upload_stuck = True
            self.note(rec, "decision", what="upload stuck: no progress", files=[f.name for f in pending])
        self.schedule(rec, UPLOAD_CHECK_EVERY)

    def _upload_results(self, rec: Recording) -> dict[str, str]:
        """sid -> the upload outcome its callbacks report (uploaded / backed_up), for sessions that have one."""
        results = {}
        for session in rec.sessions:
            if session.sid is None:
                continue
            view = self._view(session.sid)
            if view is not None and view.state.upload in ("uploaded", "backed_up"):
                results[session.sid] = view.state.upload
        return results

    # -- changes -------------------------------------------------------------------------------------------

    def _apply_pending_changes(self, rec: Recording) -> None:
        """update / updateLayout asked through the API, applied one at a time, in order."""
        session = rec.current
        while (
            rec.pending_changes and session is not None and session.confirmed_ms is not None and session.sid
        ):
            change = rec.pending_changes[0]
            if not self.limiter.take():
                self.schedule(rec, RATE_LIMITED_BACKOFF)
                return
            try:
                if change["kind"] == "layout":
                    layout = from_json_dict(UpdateLayoutClientRequest, change["body"], "clientRequest")
                    self.client.update_layout(
                        session.resource_id,
                        session.sid,
                        UpdateLayoutRequest(cname=rec.cname, uid=session.uid, client_request=layout),
                    )
                else:
                    update = from_json_dict(UpdateClientRequest, change["body"], "clientRequest")
                    self.client.update(
                        session.resource_id,
                        session.sid,
                        rec.mode,
                        UpdateRequest(cname=rec.cname, uid=session.uid, client_request=update),
                    )
                if change["kind"] == "update" and "storageConfig" not in change["body"]:
                    _remember_change(rec, change)
                self.note(
                    rec,
                    "agora",
                    endpoint="updateLayout" if change["kind"] == "layout" else "update",
                    outcome="ok",
                    sid=session.sid,
                )
            except AgoraError as exc:
                self._note_error(rec, change["kind"], exc)
                if exc.outcome in (Outcome.RETRY, Outcome.RATE_LIMITED, Outcome.NOT_FOUND):
                    self.schedule(rec, START_BACKOFF[0])
                    return
                rec.last_error = exc.as_dict()
            rec.pending_changes.pop(0)

    def _merge_report(
        self, rec: Recording, session: AgoraSession, report: RecordingReport, status: str, source: str
    ) -> None:
        assert session.sid is not None
        for reported in report.files:
            entry = FileEntry(
                name=reported.file_name,
                sid=session.sid,
                status=status,
                track_type=reported.track_type,
                uid=reported.uid,
                slice_start_time=reported.slice_start_time,
                source=source,
            )
            if merge_file(rec.files, entry):
                rec.last_upload_change_ms = now_ms()


def _remember_change(rec: Recording, change: dict[str, Any]) -> None:
    """Keep subscription / web changes in the request, so a restarted session records the same way."""
    body = change["body"]
    web = body.get("webRecordingConfig")
    if web is not None:
        for service in rec.request.get("extensionServiceConfig", {}).get("extensionServices", []):
            if service.get("serviceName") == "web_recorder_service":
                service.setdefault("serviceParam", {})["onhold"] = web.get("onhold")
    rtmp = body.get("rtmpPublishConfig")
    if rtmp is not None:
        for service in rec.request.get("extensionServiceConfig", {}).get("extensionServices", []):
            if service.get("serviceName") == "rtmp_publish_service":
                service.setdefault("serviceParam", {})["outputs"] = rtmp.get("outputs")


def advance(recording_id: str) -> str:
    """RQ job: one orchestration step for a recording (see the module docstring)."""
    job = get_current_job()
    settings = current_settings()
    connection = job.connection if job is not None else redis.Redis.from_url(settings.redis_url)
    return Orchestrator(connection, settings).advance(recording_id)


def wake_recordings(connection: redis.Redis, sids: list[str]) -> int:
    """Queue ``advance`` for the recordings owning these sessions (callbacks arrived for them)."""
    if not sids:
        return 0
    owners = connection.mget([keys.recording_of_sid(sid) for sid in sids])
    ids = sorted({o.decode() for o in owners if isinstance(o, bytes)})
    for recording_id in ids:
        queue_advance(connection, recording_id)
    return len(ids)


#: A non-terminal recording nobody looked at for this long (scaled) gets a fresh ``advance`` from the sweep.
STALE_AFTER = 2 * POLL_EVERY + 30
SWEEP_BATCH = 100


def sweep_recordings(connection: redis.Redis, settings: Settings, now: int | None = None) -> list[str]:
    """Reconciliation: queue ``advance`` for active recordings whose own timers went quiet (a lost job, a
    worker killed mid-step). ``advance`` then queries Agora within the shared rate budget."""
    now = now_ms() if now is None else now
    threshold = now - int(STALE_AFTER * settings.recording_time_scale * 1000)
    stale = [
        m.decode()
        for m in cast(
            list[bytes],
            connection.zrangebyscore(keys.ACTIVE_RECORDINGS, "-inf", threshold, start=0, num=SWEEP_BATCH),
        )
    ]
    # The listing index forgets recordings whose document expired (finished longer ago than the retention).
    expired_before = (now - settings.session_retention_seconds * 1000 - 86_400_000) * 1000
    connection.zremrangebyscore(keys.RECORDINGS_INDEX, "-inf", expired_before)
    for recording_id in stale:
        connection.zadd(keys.ACTIVE_RECORDINGS, {recording_id: now})  # not again before it had its chance
        queue_advance(connection, recording_id)
    if stale:
        log.info("recordings swept", extra={"count": len(stale)})
    return stale
