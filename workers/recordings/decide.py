"""The orchestration's decisions, as pure functions: (recording, evidence, now) -> at most one Agora call.

Nothing here touches Redis, the network or the clock. :class:`Step` looks at a recording, the callbacks of
its sessions (:class:`Evidence`) and the time, changes the recording, and returns a :class:`Plan`: the one
Agora call to make next (or none), when to look again, timeline entries and notifications. After the call
the runner hands Agora's answer (or error) back to :meth:`Step.absorb`, saves, and asks again. So every
answer is saved before the next call is made, and a test can drive the whole machine with a fake clock and a
scripted Agora.

The rules (``docs/agora.md``): acquire, then start at once. A start that may have created a task without
telling us its sid (a timeout, 5xx, 206/65, 62, a step killed after sending it, 201/7) is *ambiguous*: it is
retried with the **same** resourceId and the **same** uid until Agora says what became of it (200 with the
sid, 7 = a task runs on it, 433/1001 = no task), and its task is adopted when a callback names its sid. A
recording uses one recorder uid at a time and moves to another only when no task of the old one can be
alive; since Agora refuses a second task for the same channel and uid (53), a recording can never have two
recorders. Tasks found in callbacks on our channel and uid that nobody asked for are stopped (nothing is
started while such a stop waits for its retry; a task whose callbacks say it ended is never adopted, and a
sid Agora says is of none of our resources is left alone). Confirm with query 5 s after start with backoff;
not running after 90 s = stop it and start another. 404 is tolerated for 90 s (HA failover), watched without
long gaps, before the session counts as gone. An abnormal end while recording is wanted restarts
with a new uid; a normal end (idle exit, web maximum hours) ends the recording once no contradicting
callback (72, 71 with an abnormal code) arrived within the settle window. Stop: 49 = already stopped, 404 is
retried through the HA window, 435 = nothing recorded; ``uploadingStatus`` and 31/32 decide between
completed, backed_up and uploading, which ends as ``upload_unconfirmed`` after ``UPLOAD_STUCK_SECONDS``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

from workers.agora import AgoraApiError, AgoraError, AgoraRequestError, Outcome, RecordingReport
from workers.ncs.files import FileEntry, merge_file
from workers.recordings.machine import TERMINAL, Cause, Desired, SessionOutcome, State, edge
from workers.recordings.model import AgoraSession, Recording, recorder_uid
from workers.recordings.polling import MISSING_WINDOW, POLL_EVERY, POLL_EVERY_MAX, POLL_JITTER

CONFIRM_AFTER = 5.0
CONFIRM_BACKOFF = (5.0, 10.0, 15.0)
START_WINDOW = 90.0
MISSING_RETRY = 10.0
#: However late the answers come (a busy rate limit, lagging workers), 404s for this long mean gone: Agora
#: documents at most 3 migrations of at most 90 s each.
MISSING_LIMIT = 360.0
#: A run of 404s counts only while watched: an answer this much later than due (a lagging worker) starts it
#: anew, since the task may have come back and migrated again unseen (timers fire about every 0.5 s).
UNWATCHED_AFTER = 30.0
#: Agora answered 406 (concurrency quota taken): ask again after these waits, never a failure.
CAPACITY_BACKOFF = (5.0, 10.0, 20.0, 30.0, 60.0)
#: A queued recording looks at the queue again this often (a freed slot wakes the head of the queue at once).
QUEUE_RECHECK = 60.0
START_BACKOFF = (3.0, 6.0, 9.0)
QUERY_BACKOFF = (5.0, 10.0, 15.0, 30.0)
ROTATE_UID_AFTER = 3
MAX_START_ATTEMPTS = 9
RATE_LIMITED_BACKOFF = 2.0
STOP_RETRY = 3.0
#: A stop Agora refuses (401 while credentials rotate, 400, 433, ...) is sent again this often, this many
#: times (an hour), before the session is given up with the reason on the timeline.
STOP_REFUSED_RETRY = 30.0
MAX_STOP_REFUSALS = 120
#: A normal end reported by callbacks is final only once no contradicting callback came for this long.
SETTLE = 30.0
#: While a task runs whose sid we do not know, its resourceId is probed this often (7 = still there).
PROBE_EVERY = 30.0
#: A task Agora said runs (7/53) but whose sid no callback revealed in this long is given up on (noted).
SID_WAIT_LIMIT = 600.0
#: A step may query this many (real) milliseconds before the query is due rather than set a timer for it.
EARLY_MS = 250


@dataclass(frozen=True)
class Timing:
    """Durations of the rules above, scaled (``RECORDING_TIME_SCALE``; tests run the same rules faster)."""

    scale: float = 1.0
    upload_stuck_seconds: float = 3600.0

    def ms(self, seconds: float) -> int:
        """Milliseconds of a rule's duration."""
        return int(seconds * self.scale * 1000)


@dataclass(frozen=True)
class SessionFacts:
    """What the callbacks of one sid say."""

    sid: str
    uids: frozenset[str] = frozenset()
    failover_uid: str | None = None
    ended: SessionOutcome | None = None  # EXITED or EXITED_ABNORMALLY
    upload: str | None = None  # uploaded | backed_up (31 / 32)
    files: tuple[FileEntry, ...] = ()
    fatal_error: str | None = None  # the newest event 1 with errorLevel 5, as a stable mark


@dataclass(frozen=True)
class Evidence:
    """The callbacks a step knows of: per sid (ours and strays), and sids seen on our channel and uids that
    none of our sessions has (``strays``)."""

    sessions: dict[str, SessionFacts] = field(default_factory=dict)
    strays: tuple[str, ...] = ()


@dataclass(frozen=True)
class Call:
    """One Agora call to make: ``session`` indexes ``recording.sessions`` (acquire: the uid to acquire)."""

    endpoint: str  # acquire | start | query | stop | update | updateLayout
    session: int = -1
    uid: str | None = None
    hold: bool | None = None  # update: web pause (True) or resume (False) instead of a waiting change


@dataclass
class Plan:
    """What a step decided."""

    call: Call | None = None
    save_before: bool = False  # write-ahead: the call may create or end a task; save that it was sent
    wake_at: int | None = None
    notes: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[str] = field(default_factory=list)
    claims: list[str] = field(default_factory=list)  # recorder uids to register for this channel
    owned_sids: list[str] = field(default_factory=list)  # sids to map to this recording


def take_commands(rec: Recording, commands: list[dict[str, Any]], now: int) -> list[dict[str, Any]]:
    """Apply what the API asked (stop, pause, resume, update, layout) in order; returns timeline entries."""
    notes: list[dict[str, Any]] = []
    for command in commands:
        op = command.get("op")
        if op == "stop":
            if rec.desired != Desired.STOPPED:
                rec.desired, rec.stopped_ms = Desired.STOPPED, now
                notes.append({"ts": now, "kind": "decision", "what": "stop requested by the app server"})
        elif op in ("pause", "resume"):
            wanted = Desired.PAUSED if op == "pause" else Desired.RECORDING
            if rec.terminal or rec.desired in (Desired.STOPPED, wanted):
                continue  # idempotent; a stop wins
            rec.desired = wanted
            if op == "pause":
                rec.pauses += 1
            notes.append({"ts": now, "kind": "decision", "what": f"{op} requested by the app server"})
        elif command.get("op") in ("update", "layout"):
            if rec.terminal or rec.desired == Desired.STOPPED:
                what = f"{command['op']} dropped: the recording is stopping or over"
                notes.append({"ts": now, "kind": "decision", "what": what})
            else:
                rec.pending_changes.append({"kind": command["op"], "body": command.get("body") or {}})
    return notes


class Step:
    """One decision about one recording (see the module docstring). Mutates ``rec``; returns plans."""

    def __init__(
        self,
        rec: Recording,
        evidence: Evidence,
        now: int,
        timing: Timing,
        *,
        queue_place: int = 0,
        poll_every: float = POLL_EVERY,
    ) -> None:
        self.rec = rec
        self.evidence = evidence
        self.now = now
        self.timing = timing
        #: 0 when the recording holds a slot of the concurrency quota, else its place in the queue
        self.queue_place = queue_place
        #: the routine poll interval the fleet's size allows (:func:`poll_interval`)
        self.poll_every = poll_every
        self.plan = Plan()
        self.holding = False  # a stray's stop is still to be retried: nothing may be started meanwhile

    # -- bookkeeping ---------------------------------------------------------------------------------------

    def note(self, kind: str, **fields: Any) -> None:
        """A timeline entry."""
        self.plan.notes.append({"ts": self.now, "kind": kind, **fields})

    def decision(self, what: str, **fields: Any) -> None:
        """A decision on the timeline."""
        self.note("decision", what=what, **fields)

    def wake(self, at: int) -> None:
        """Look again at ``at`` at the latest."""
        if self.plan.wake_at is None or at < self.plan.wake_at:
            self.plan.wake_at = at

    def after(self, seconds: float) -> int:
        """``now`` plus a rule's (scaled) duration."""
        return self.now + self.timing.ms(seconds)

    def transition(self, target: State, cause: Cause, **fields: Any) -> None:
        """Change state through the table (an edge not in it raises)."""
        rec = self.rec
        if rec.state == target:
            return
        found = edge(rec.state, target, cause)
        self.note(
            "transition", **{"from": rec.state.value, "to": target.value, "cause": cause.value, **fields}
        )
        rec.state = target
        if target in TERMINAL:
            rec.ended_ms = self.now
        if found.notification is None:
            return
        kind, key = found.notification, found.notification
        if kind == "recording.started" and rec.paused_announced:
            if "recording.started" in rec.notified:  # the first session after a resume
                kind = "recording.resumed"
            else:  # paused before it ever recorded: its first session is its start
                rec.paused_announced = False
        elif kind == "recording.started" and rec.restarts and "recording.started" in rec.notified:
            kind, key = "recording.restarted", f"recording.restarted:{rec.restarts}"
        if kind in ("recording.paused", "recording.resumed"):
            # the app server hears paused and resumed alternately: a resume undone by a pause before any
            # session ran again, or a pause undone before it took effect, says nothing
            if (kind == "recording.paused") == rec.paused_announced:
                return
            rec.paused_announced = kind == "recording.paused"
            key = f"{kind}:{rec.pauses}"
        if key not in rec.notified:
            rec.notified.append(key)
            self.plan.notifications.append(kind)

    def _call(
        self,
        endpoint: str,
        session: int = -1,
        *,
        uid: str | None = None,
        ahead: bool = False,
        hold: bool | None = None,
    ) -> Plan:
        if self.holding and endpoint in ("acquire", "start"):  # may create a task: after the stray's stop
            return self.plan
        self.plan.call = Call(endpoint, session, uid, hold)
        self.plan.save_before = ahead
        return self.plan

    # -- deciding ------------------------------------------------------------------------------------------

    def decide(self) -> Plan:
        """The next call, or when to look again."""
        rec = self.rec
        self._absorb_evidence()
        stray = next((i for i, s in enumerate(rec.sessions) if s.live and s.stop_wanted and s.sid), None)
        if stray is not None:  # never two tasks: what should not run is stopped before anything else
            self._stop(stray)
            if self.plan.call is not None:
                return self.plan
            self.holding = True  # its stop is retried later; the rest goes on, but nothing starts meanwhile
        if rec.terminal:
            return self.plan
        if rec.desired != Desired.STOPPED and rec.stop_at_ms is not None and self.now >= rec.stop_at_ms:
            rec.desired, rec.stopped_ms = Desired.STOPPED, self.now
            self.decision("max duration reached: stopping")
        if rec.stop_at_ms is not None and rec.desired != Desired.STOPPED:
            self.wake(rec.stop_at_ms)
        if rec.desired == Desired.STOPPED:
            return self._stopping()
        if self.queue_place:
            return self._queued()
        rec.admitted = True
        if rec.desired == Desired.PAUSED and not self.keeps_session:
            return self._pausing()
        return self._recording()

    @property
    def keeps_session(self) -> bool:
        """A session should run: recording is wanted, or a web recording is paused (its page on hold)."""
        rec = self.rec
        return rec.desired == Desired.RECORDING or (rec.desired == Desired.PAUSED and rec.mode == "web")

    def _absorb_evidence(self) -> None:
        """Files, failover uids and ends from the callbacks; stray tasks adopted or marked for stopping."""
        rec = self.rec
        for sid in self.evidence.strays:
            self._found(sid)
        for session in rec.sessions:
            facts = self.evidence.sessions.get(session.sid or "")
            if facts is None:
                continue
            if facts.failover_uid and facts.failover_uid != session.failover_uid:
                session.failover_uid = facts.failover_uid
                session.missing_since_ms = session.first_missing_ms = None  # HA: 404s count anew
                self.note("callback", what="HA failover", sid=session.sid, newUid=facts.failover_uid)
            for entry in facts.files:
                if merge_file(rec.files, entry):
                    rec.last_upload_change_ms = self.now
            if session.live and facts.ended is not None:
                self._ended_by_callbacks(session, facts.ended)
            elif session.live and facts.fatal_error and facts.fatal_error != session.fatal_error:
                # Agora: on a fatal error (1, errorLevel 5) query and act; its exit callback may be lost.
                session.fatal_error = facts.fatal_error
                if session.next_query_ms is None or session.next_query_ms > self.after(CONFIRM_AFTER):
                    session.next_query_ms = self.after(CONFIRM_AFTER)
                self.decision("fatal error reported: querying the session", sid=session.sid)

    def _found(self, sid: str) -> None:
        """A task on our channel with one of our uids whose sid none of our sessions has: adopt it if it can
        be the task of an ambiguous start, else stop it. Either way it becomes one of our sessions."""
        rec = self.rec
        facts = self.evidence.sessions.get(sid)
        if facts is None or sid in rec.foreign_sids or any(s.sid == sid for s in rec.sessions):
            return
        if facts.ended is not None:  # over already: nothing to stop, and it may be somebody else's (an
            return  # ambiguous start of ours resolves by itself: 7 while its task lives, then 433)
        candidates = [s for s in reversed(rec.sessions) if s.sid is None and s.uid in facts.uids]
        if not candidates:
            self.decision("task of unknown origin on our uid: its resourceId is unknown", sid=sid)
            return
        session = candidates[0]
        session.sid, session.adopted = sid, True
        session.start_in_flight = session.start_unresolved = session.sid_unknown = False
        session.started_ms = session.started_ms or self.now
        session.next_query_ms = self.now
        self.plan.owned_sids.append(sid)
        if session.ended_ms is not None:  # given up on, yet it runs
            session.ended_ms, session.outcome, session.given_up = None, None, False
        other = rec.current
        wanted = not rec.terminal and self.keeps_session and (other is None or other is session)
        if not wanted:
            session.stop_wanted = True
        self.decision(
            "task found in callbacks " + ("adopted" if wanted else "to be stopped (not wanted)"),
            sid=sid,
            uid=session.uid,
            resourceId=session.resource_id,
        )

    def _ended_by_callbacks(self, session: AgoraSession, ended: SessionOutcome) -> None:
        """Callbacks say a live session ended. An abnormal end is final at once; a normal one only once the
        settle window passed without a contradicting callback (while the recording should go on)."""
        if ended == SessionOutcome.EXITED_ABNORMALLY or session.stop_wanted:
            self._session_over(session, ended)
            return
        if not self.keeps_session:
            self._session_over(session, SessionOutcome.EXITED)
            return
        if session.exit_seen_ms is None:
            session.exit_seen_ms = self.now
            self.decision("callbacks report a normal end: settling before ending", sid=session.sid)
        settled_at = session.exit_seen_ms + self.timing.ms(SETTLE)
        if self.now < settled_at:
            self.wake(settled_at)
            return
        self._session_over(session, SessionOutcome.EXITED)
        self.rec.desired, self.rec.stopped_ms = Desired.STOPPED, self.now
        self.decision("the session ended by itself (idle exit or maximum hours): the recording is over")

    def _session_over(self, session: AgoraSession, outcome: SessionOutcome) -> None:
        """A session ended; when it should have gone on, the recording restarts (bounded)."""
        if not session.live:
            return
        session.end(outcome, self.now)
        self.note("session_ended", sid=session.sid, outcome=outcome.value)
        rec = self.rec
        abnormal = outcome in (SessionOutcome.EXITED_ABNORMALLY, SessionOutcome.DIED)
        if not abnormal or session.stop_wanted or not self.keeps_session or rec.terminal:
            return
        rec.restarts += 1
        rec.uid_index += 1  # the old task is known gone: a new uid, as Agora advises
        rec.retry_at_ms = None
        if rec.restarts > rec.max_restarts:
            rec.reason = f"the session ended abnormally {rec.restarts} times (maxRestarts {rec.max_restarts})"
            self.transition(State.FAILED, Cause.BUDGET_EXHAUSTED)
            return
        self.decision("restarting after an abnormal end", restarts=rec.restarts)
        if rec.state in (State.RECORDING, State.PAUSED):
            self.transition(State.STARTING, Cause.RESTART)

    # -- admission and pause -------------------------------------------------------------------------------

    def _queued(self) -> Plan:
        """No slot of the concurrency quota yet: wait in the queue (a freed slot wakes its head at once)."""
        rec = self.rec
        if rec.state == State.PENDING:
            self.transition(State.QUEUED, Cause.OVER_QUOTA, place=self.queue_place)
        self.wake(self.after(QUEUE_RECHECK))
        return self.plan

    def _pausing(self) -> Plan:
        """Individual and mix: a pause ends the session (its files stay in the manifest); resuming starts a
        new one with another uid (the old task is known to have ended)."""
        rec = self.rec
        rec.capacity_waits = 0  # no acquire while paused: not waiting for Agora's capacity
        if not self._end_sessions():
            return self.plan
        if rec.state != State.PAUSED:
            if rec.sessions:
                rec.uid_index += 1
            rec.retry_at_ms = None
            self.transition(State.PAUSED, Cause.PAUSED)
        self.wake(self.after(POLL_EVERY_MAX))  # nothing to watch: a resume or a stop wakes it at once
        return self.plan

    # -- recording -----------------------------------------------------------------------------------------

    def _recording(self) -> Plan:
        rec = self.rec
        current = rec.current
        if current is None:
            return self._begin()
        index = rec.sessions.index(current)
        if current.exit_seen_ms is not None:  # settling (see _ended_by_callbacks)
            return self.plan
        if current.sid is None:
            return self._start(index)
        return self._watch(index)

    def _begin(self) -> Plan:
        """No live session: acquire a resource for a new one (unless waiting for a backoff)."""
        rec = self.rec
        if rec.state == State.FAILED:
            return self.plan
        if rec.retry_at_ms is not None and self.now < rec.retry_at_ms:
            self.wake(rec.retry_at_ms)
            return self.plan
        if rec.start_attempts >= MAX_START_ATTEMPTS:
            rec.reason = f"could not start a session after {rec.start_attempts} attempts"
            self.transition(State.FAILED, Cause.BUDGET_EXHAUSTED)
            return self.plan
        if rec.state == State.PENDING:
            self.transition(State.STARTING, Cause.START_REQUESTED)
        elif rec.state == State.QUEUED:
            self.transition(State.STARTING, Cause.ADMITTED)
        elif rec.state == State.RECORDING:
            self.transition(State.STARTING, Cause.RESTART)
        elif rec.state == State.PAUSED:
            self.transition(State.STARTING, Cause.RESUMED)
        uid = recorder_uid(rec.uid, rec.uid_index)
        self.plan.claims.append(uid)
        return self._call("acquire", uid=uid)

    def _start(self, index: int) -> Plan:
        """Send start for an acquired session (again, with the same resourceId, when it was ambiguous)."""
        rec = self.rec
        session = rec.sessions[index]
        if session.sid_unknown:  # Agora said a task runs (7/53); its callbacks will name it
            return self._await_sid(index)
        if rec.retry_at_ms is not None and self.now < rec.retry_at_ms:
            self.wake(rec.retry_at_ms)
            return self.plan
        if session.start_in_flight:  # the step that sent it died: it may have created a task
            session.start_unresolved = True
            self.decision(
                "a start was sent but its answer never saved: asking again", resourceId=session.resource_id
            )
        return self._call("start", index, ahead=True)

    def _await_sid(self, index: int) -> Plan:
        """A task runs on this session's resource (or with its uid) but we do not know its sid: wait for a
        callback to name it, probing the resource now and then (7 = still there, 433 = gone)."""
        session = self.rec.sessions[index]
        since = session.started_ms or session.acquired_ms
        if self.now - since > self.timing.ms(SID_WAIT_LIMIT):
            self.decision("no callback named the task in time: given up on", resourceId=session.resource_id)
            self.rec.reason = "a task Agora reported running never showed its sid (no callback named it)"
            session.end(SessionOutcome.NOT_STARTED, self.now)
            session.given_up = True
            self.wake(self.now)  # decide again at once: another session, or the end
            return self.plan
        probe_at = (self.rec.retry_at_ms or since) + self.timing.ms(PROBE_EVERY)
        if self.now < probe_at:
            self.wake(probe_at)
            return self.plan
        return self._call("start", index, ahead=True)

    def _watch(self, index: int) -> Plan:
        """A live session with a sid: apply waiting changes once confirmed, query when due."""
        rec = self.rec
        session = rec.sessions[index]
        if session.next_query_ms is None:
            session.next_query_ms = self.now
        if rec.pending_changes and session.confirmed_ms is not None:
            if rec.retry_at_ms is None or self.now >= rec.retry_at_ms:
                change = rec.pending_changes[0]
                return self._call("updateLayout" if change["kind"] == "layout" else "update", index)
            self.wake(rec.retry_at_ms)
        elif rec.mode == "web" and session.confirmed_ms is not None and rec.pauses:
            # once paused through the API, the page's hold follows pause/resume (before, it stays as the
            # start asked or as the app's own updates set it)
            hold = rec.desired == Desired.PAUSED
            if session.onhold != hold:  # pause / resume: the page on hold through update
                if rec.retry_at_ms is None or self.now >= rec.retry_at_ms:
                    return self._call("update", index, hold=hold)
                self.wake(rec.retry_at_ms)
        if self.now + EARLY_MS < session.next_query_ms:
            self.wake(session.next_query_ms)
            return self.plan
        return self._call("query", index)

    # -- stopping ------------------------------------------------------------------------------------------

    def _stopping(self) -> Plan:
        rec = self.rec
        rec.capacity_waits = 0  # no acquire any more: not waiting for Agora's capacity
        if rec.live_sessions and rec.state in (State.QUEUED, State.STARTING, State.RECORDING, State.PAUSED):
            self.transition(State.STOPPING, Cause.STOP_REQUESTED)
        if not self._end_sessions():
            return self.plan
        return self._finish()

    def _end_sessions(self) -> bool:
        """Stop every live session (or find out whether an ambiguous start left a task); True once none is
        live. The first call that is due goes; the others keep their wake-ups."""
        rec = self.rec
        for session in rec.live_sessions:
            index = rec.sessions.index(session)
            if session.sid is not None:
                self._stop(index)
            elif session.sid_unknown:
                self._await_sid(index)
            elif session.ambiguous:  # find out: the same start again answers 7 if its task exists
                self._start(index)
            else:
                session.end(SessionOutcome.NOT_STARTED, self.now)  # acquired only: no task
            if self.plan.call is not None:
                return False
        return not rec.live_sessions  # else each waits for its retry

    def _stop(self, index: int) -> Plan:
        session = self.rec.sessions[index]
        if session.retry_stop_at_ms is not None and self.now < session.retry_stop_at_ms:
            self.wake(session.retry_stop_at_ms)
            return self.plan
        return self._call("stop", index, ahead=True)

    def _finish(self) -> Plan:
        """No session runs: completed, backed_up, failed, or uploading until every file is accounted for."""
        rec = self.rec
        if rec.fail_reason is not None:
            rec.reason = rec.fail_reason
            self.transition(State.FAILED, Cause.REJECTED)
            return self.plan
        uploads = {sid: f.upload for sid, f in self.evidence.sessions.items() if f.upload}
        by_sid = {s.sid: s for s in rec.sessions if s.sid}
        for entry in rec.files.values():
            if entry.status != "recorded":
                continue
            session = by_sid.get(entry.sid)
            reported = session.upload_status if session is not None else None
            if reported == "uploaded" or uploads.get(entry.sid) == "uploaded":
                entry.status, entry.source = "uploaded", "stop" if reported == "uploaded" else "31"
            elif reported == "backed_up" or uploads.get(entry.sid) == "backed_up":
                entry.status, entry.source = "backed_up", "stop" if reported == "backed_up" else "32"
        pending = sorted(f.name for f in rec.files.values() if f.status == "recorded")
        backed = [f.name for f in rec.files.values() if f.status == "backed_up"]
        if not rec.files:
            nothing = any(s.outcome == SessionOutcome.NOTHING_RECORDED for s in rec.sessions)
            if nothing:
                rec.reason = rec.reason or "nothing was recorded (nobody published)"
            started = any(s.sid for s in rec.sessions)
            cause = Cause.NOTHING_RECORDED if nothing or started else Cause.STOPPED_BEFORE_START
            if cause == Cause.STOPPED_BEFORE_START and rec.state not in (
                State.PENDING,
                State.QUEUED,
                State.STARTING,
            ):
                cause = Cause.NOTHING_RECORDED
            self.transition(State.COMPLETED, cause)
            return self.plan
        if not pending:
            if backed:
                self.transition(State.BACKED_UP, Cause.BACKED_UP, files=backed)
            else:
                self.transition(State.COMPLETED, Cause.UPLOADED)
            return self.plan
        dead = {s.sid for s in rec.sessions if s.outcome == SessionOutcome.DIED}
        last_end = max((s.ended_ms or 0 for s in rec.sessions), default=self.now)
        deadline = max(last_end, rec.last_upload_change_ms or 0) + int(
            self.timing.upload_stuck_seconds * self.timing.scale * 1000
        )
        if all(rec.files[name].sid in dead for name in pending) or self.now >= deadline:
            rec.files_in_doubt = pending
            rec.reason = "the upload of some files was never confirmed"
            self.transition(State.UPLOAD_UNCONFIRMED, Cause.UPLOAD_UNCONFIRMED, files=pending)
            return self.plan
        if rec.state != State.UPLOADING:
            self.transition(State.UPLOADING, Cause.SESSION_OVER, waiting=len(pending))
        self.wake(deadline)
        return self.plan

    # -- answers -------------------------------------------------------------------------------------------

    def sending(self, call: Call) -> None:
        """The call is about to be sent (a rate-limit slot was taken): write its intent into the recording,
        to be saved before it goes when ``plan.save_before`` (write-ahead)."""
        if call.endpoint != "start":
            return
        rec = self.rec
        session = rec.sessions[call.session]
        if session.sid_unknown:  # a probe of a task Agora said runs: not a new attempt
            rec.retry_at_ms = self.now
        else:
            rec.start_attempts += 1
            if rec.stop_at_ms is None and rec.max_duration_seconds:  # counted from the first start sent
                rec.stop_at_ms = self.after(rec.max_duration_seconds)
            # web: a paused recording's page starts on hold (as asked at creation, until a pause or resume)
            asked = rec.desired == Desired.PAUSED or (rec.pauses == 0 and requested_onhold(rec.request))
            session.onhold = rec.mode == "web" and asked
        session.start_sent += 1
        session.start_in_flight = True

    def absorb(self, call: Call, answer: Any, error: AgoraError | None) -> None:
        """Take Agora's answer (or the error) to ``call`` into the recording."""
        if call.endpoint == "acquire":
            self._acquired(call, answer, error)
        elif call.endpoint == "start":
            self._started(call.session, answer, error)
        elif call.endpoint == "query":
            self._queried(call.session, answer, error)
        elif call.endpoint == "stop":
            self._stopped(call.session, answer, error)
        elif call.hold is not None:
            self._held(call, error)
        else:
            self._changed(call, error)

    def _agora_note(self, endpoint: str, error: AgoraError | None, **fields: Any) -> None:
        if error is None:
            self.note("agora", endpoint=endpoint, outcome="ok", **fields)
        else:
            self.note("agora", **{**error.as_dict(), "endpoint": endpoint, **fields})
            if error.outcome not in (Outcome.OK,):
                self.rec.last_error = error.as_dict()

    def _backoff(self, table: tuple[float, ...], failures: int) -> float:
        return table[max(0, min(failures, len(table)) - 1)]

    def _acquired(self, call: Call, answer: Any, error: AgoraError | None) -> None:
        rec = self.rec
        self._agora_note("acquire", error, uid=call.uid, resourceId=getattr(answer, "resource_id", None))
        if error is None:
            rec.sessions.append(
                AgoraSession(resource_id=answer.resource_id, uid=str(call.uid), acquired_ms=self.now)
            )
            rec.capacity_waits = 0
            return
        self._start_trouble(error)

    def _start_trouble(self, error: AgoraError) -> None:
        """acquire or start failed without leaving a task we could not know of."""
        rec = self.rec
        if error.outcome == Outcome.REJECTED or isinstance(error, AgoraRequestError):
            reason = getattr(error, "reason", str(error))
            rec.reason = f"Agora refused {error.endpoint or 'the request'}: {reason}"
            self.transition(State.FAILED, Cause.REJECTED, code=rec.last_error and rec.last_error.get("code"))
            return
        if error.outcome == Outcome.RATE_LIMITED:
            rec.retry_at_ms = self.after(RATE_LIMITED_BACKOFF)
            return
        if error.outcome == Outcome.OVER_CAPACITY:  # wait for capacity: not a failure, no attempt spent
            rec.capacity_waits += 1
            wait = self._backoff(CAPACITY_BACKOFF, rec.capacity_waits)
            rec.retry_at_ms = self.after(wait)
            self.decision("Agora's concurrency quota is taken (406): waiting for capacity", seconds=wait)
            self.transition(State.QUEUED, Cause.AGORA_FULL)
            return
        rec.failures_in_row += 1
        rec.retry_at_ms = self.after(self._backoff(START_BACKOFF, rec.failures_in_row))

    def _started(self, index: int, answer: Any, error: AgoraError | None) -> None:
        rec = self.rec
        session = rec.sessions[index]
        session.start_in_flight = False
        self._agora_note(
            "start", error, resourceId=session.resource_id, uid=session.uid, sid=getattr(answer, "sid", None)
        )
        if error is None and answer.sid:
            session.sid = answer.sid
            session.start_unresolved = session.sid_unknown = False
            session.started_ms = self.now
            session.next_query_ms = self.after(CONFIRM_AFTER)
            rec.retry_at_ms = None
            self.plan.owned_sids.append(answer.sid)
            return
        code = getattr(error, "code", None)
        if error is None or (error.outcome == Outcome.ALREADY_RUNNING and code != 53):
            # 201/7 (or a 200 without sid): a task runs on this resource; a callback will tell its sid.
            session.sid_unknown, session.start_unresolved = True, False
            session.started_ms = session.started_ms or self.now
            rec.retry_at_ms = self.now
            self.decision(
                "Agora runs a task on this resource but did not say its sid: waiting for its callbacks"
            )
            return
        if error.outcome == Outcome.ALREADY_RUNNING:  # 53: a task runs for this channel and uid
            ours = any(s.uid == session.uid and s.start_sent and s is not session for s in rec.sessions)
            if ours or session.start_unresolved or session.sid_unknown or session.start_sent > 1:
                session.sid_unknown = True
                session.started_ms = session.started_ms or self.now
                rec.retry_at_ms = self.now
                self.decision(
                    "a task of ours runs with this uid (53): waiting for its callbacks", uid=session.uid
                )
                return
            session.end(SessionOutcome.NOT_STARTED, self.now)
            rec.uid_index += 1  # somebody else records with this uid
            rec.retry_at_ms = None
            self.decision("uid taken by another task in the channel (53): another uid", uid=session.uid)
            return
        if error.outcome == Outcome.REACQUIRE:  # 433/1001/502: no task came of this resource
            session.end(SessionOutcome.NOT_STARTED, self.now)
            rec.retry_at_ms = None
            self._rotate_if_advised()
            return
        if error.outcome == Outcome.RATE_LIMITED:  # refused at the gate: nothing happened
            rec.retry_at_ms = self.after(RATE_LIMITED_BACKOFF)
            return
        if error.outcome == Outcome.REJECTED or isinstance(error, AgoraRequestError):
            reason = getattr(error, "reason", str(error))
            if session.ambiguous:  # an earlier attempt may have created a task: stop before failing
                rec.fail_reason = f"Agora refused start: {reason}"
                rec.desired, rec.stopped_ms = Desired.STOPPED, self.now
                # Asking again gets the same refusal: wait for its callbacks, probing now and then (7 / 433).
                session.start_unresolved, session.sid_unknown = False, True
                session.started_ms = session.started_ms or self.now
                rec.retry_at_ms = self.now
                return
            session.end(SessionOutcome.START_FAILED, self.now)
            rec.reason = f"Agora refused start: {reason}"
            self.transition(State.FAILED, Cause.REJECTED, code=code)
            return
        # 5xx, 206/65, 62, a timeout: it may or may not have started: ask again with the same resource
        session.start_unresolved = True
        rec.failures_in_row += 1
        rec.retry_at_ms = self.after(self._backoff(START_BACKOFF, rec.failures_in_row))

    def _rotate_if_advised(self) -> None:
        """After repeated failures Agora advises another uid; only when no task of the old one can live."""
        rec = self.rec
        uid = recorder_uid(rec.uid, rec.uid_index)
        if rec.failures_in_row >= ROTATE_UID_AFTER and not any(
            s.live or (s.given_up and s.uid == uid) for s in rec.sessions
        ):  # a task given up on may run with this uid: keeping it, Agora's 53 keeps a second one out
            rec.uid_index += 1
            rec.failures_in_row = 0
            self.decision("another recorder uid after repeated failures")

    def _queried(self, index: int, answer: Any, error: AgoraError | None) -> None:
        rec = self.rec
        session = rec.sessions[index]
        if error is not None:
            self._agora_note("query", error, sid=session.sid)
            if error.outcome == Outcome.NOT_FOUND:
                self._missing(session)
            elif session.adopted and error.outcome == Outcome.REJECTED:
                self._reassign(index)
            else:
                session.query_failures += 1
                session.next_query_ms = self.after(self._backoff(QUERY_BACKOFF, session.query_failures))
            return
        report: RecordingReport = answer
        session.missing_since_ms = session.first_missing_ms = None
        session.query_failures = 0
        session.status = report.status
        self._merge_report(session, report, "recorded", "query")
        age = self.now - (session.started_ms or self.now)
        if report.running:
            if session.confirmed_ms is None:
                session.confirmed_ms, session.outcome = self.now, SessionOutcome.RUNNING
                rec.failures_in_row = 0
                rec.start_attempts = 0
                self.note("agora", endpoint="query", outcome="running", sid=session.sid, status=report.status)
            if not session.stop_wanted:
                self._confirmed_state(session)
            session.next_query_ms = self.after(self._poll_wait(session))
            return
        if session.confirmed_ms is None and age >= self.timing.ms(START_WINDOW):
            self.decision("not running 90 s after start: stopping it, then another session", sid=session.sid)
            session.stop_wanted = True
            return
        wait = (
            CONFIRM_BACKOFF[min(int(age / max(1, self.timing.ms(15))), 2)]
            if session.confirmed_ms is None
            else MISSING_RETRY
        )
        session.next_query_ms = self.after(wait)

    def _confirmed_state(self, session: AgoraSession) -> None:
        """A running session: recording, or paused when its page is on hold as wanted (web)."""
        rec = self.rec
        if session.onhold and rec.desired == Desired.PAUSED:
            self.transition(State.PAUSED, Cause.PAUSED, sid=session.sid)
        elif rec.state != State.PAUSED:
            self.transition(State.RECORDING, Cause.CONFIRMED, sid=session.sid)
        elif not session.onhold and rec.desired == Desired.RECORDING:  # the page runs again
            self.transition(State.RECORDING, Cause.RESUMED, sid=session.sid)

    def _poll_wait(self, session: AgoraSession) -> float:
        """The next routine query in seconds: the fleet's interval, shortened by up to POLL_JITTER (never
        longer: the interval is a promise), stable per sid and time so the decision stays a pure function."""
        spread = zlib.crc32(f"{session.sid}:{self.now}".encode()) % 1001 / 1000
        return self.poll_every * (1.0 - POLL_JITTER * spread)

    def _missing(self, session: AgoraSession) -> None:
        """query answered 404: starting up, migrating (HA), or gone."""
        if session.missing_since_ms is None or self._unobserved(session.next_query_ms):
            session.missing_since_ms = self.now
        if not self._gone(session):
            session.next_query_ms = self.after(MISSING_RETRY)
            return
        self.decision("query answered 404 for 90 s: the session is gone", sid=session.sid)
        self._session_over(session, SessionOutcome.DIED)

    def _gone(self, session: AgoraSession) -> bool:
        """404s for the HA window (watched), or for MISSING_LIMIT since the first of them, however watched."""
        if session.first_missing_ms is None:
            session.first_missing_ms = self.now
        assert session.missing_since_ms is not None
        watched = self.now - session.missing_since_ms >= self.timing.ms(MISSING_WINDOW)
        return watched or self.now - session.first_missing_ms >= self.timing.ms(MISSING_LIMIT)

    def _unobserved(self, due: int | None) -> bool:
        """This answer comes so long after it was due that the task may have come back (and migrated again)
        unseen since the last 404: the run of 404s starts anew (a run counts only if it was watched)."""
        return due is not None and self.now - due > self.timing.ms(UNWATCHED_AFTER)

    def _reassign(self, index: int) -> None:
        """An adopted sid that Agora says is not of this resource: try the next candidate of the same uid."""
        rec = self.rec
        session = rec.sessions[index]
        sid = session.sid
        older = [s for s in rec.sessions[:index] if s.sid is None and s.uid == session.uid]
        session.sid, session.adopted = None, False
        session.end(SessionOutcome.NOT_STARTED, self.now)
        if older:
            target = older[-1]
            target.sid, target.adopted, target.ended_ms, target.outcome = sid, True, None, None
            target.next_query_ms, target.stop_wanted = self.now, session.stop_wanted
            self.decision("adopted sid belongs to an older resource of the same uid", sid=sid)
        elif sid is not None:  # of none of our resources: somebody else's task, never adopted again
            rec.foreign_sids.append(sid)
            self.decision("adopted sid belongs to none of our resources: left alone", sid=sid)

    def _stopped(self, index: int, answer: Any, error: AgoraError | None) -> None:
        rec = self.rec
        session = rec.sessions[index]
        self._agora_note(
            "stop", error, sid=session.sid, uploadingStatus=getattr(answer, "uploading_status", None)
        )
        if error is None:
            session.end(SessionOutcome.STOPPED, self.now)
            report: RecordingReport = answer
            status = {"uploaded": "uploaded", "backuped": "backed_up"}.get(report.uploading_status or "")
            session.upload_status = status
            self._merge_report(session, report, status or "recorded", "stop")
            return
        if error.outcome == Outcome.NOTHING_RECORDED:
            session.end(SessionOutcome.NOTHING_RECORDED, self.now)
            return
        if error.outcome == Outcome.ALREADY_STOPPED and getattr(error, "code", None) == 49:
            session.end(SessionOutcome.STOPPED, self.now)
            return
        if error.outcome == Outcome.ALREADY_STOPPED:  # 404: gone, or migrating (HA) and coming back
            if session.missing_since_ms is None or self._unobserved(session.retry_stop_at_ms):
                session.missing_since_ms = self.now
            if self._gone(session):
                # gone without a callback saying it ended (that would have ended it): it died silently
                self.decision("stop answered 404 for 90 s: the session is gone", sid=session.sid)
                session.end(SessionOutcome.DIED, self.now)
                return
            session.retry_stop_at_ms = self.after(MISSING_RETRY)
            return
        if session.adopted and error.outcome == Outcome.REJECTED:
            self._reassign(index)
            return
        if error.outcome == Outcome.REJECTED:  # 401 while credentials rotate, 400/2, ...: the task still runs
            session.stop_refusals += 1
            if session.stop_refusals >= MAX_STOP_REFUSALS:
                self.decision(
                    "Agora refused the stop every time: given up, the task may still run", sid=session.sid
                )
                rec.reason = "Agora refused to stop a session; its task may run until Agora's idle exit"
                session.end(SessionOutcome.STOPPED, self.now)
                return
            self.decision("Agora refused the stop: asking again later", sid=session.sid)
            session.retry_stop_at_ms = self.after(STOP_REFUSED_RETRY)
            return
        session.retry_stop_at_ms = self.after(
            RATE_LIMITED_BACKOFF if error.outcome == Outcome.RATE_LIMITED else STOP_RETRY
        )

    def _held(self, call: Call, error: AgoraError | None) -> None:
        """Web pause (hold) or resume answered."""
        rec = self.rec
        session = rec.sessions[call.session]
        self._agora_note("update", error, sid=session.sid, onhold=call.hold)
        if error is not None:  # retried (a refusal too: the page must follow the app server's wish)
            wait = STOP_REFUSED_RETRY if error.outcome == Outcome.REJECTED else STOP_RETRY
            rec.retry_at_ms = self.after(wait)
            return
        rec.retry_at_ms = None
        session.onhold = bool(call.hold)
        remember_change(rec, {"kind": "update", "body": {"webRecordingConfig": {"onhold": call.hold}}})
        if call.hold:
            self.transition(State.PAUSED, Cause.PAUSED, sid=session.sid)
        elif rec.state == State.PAUSED:
            self.transition(State.RECORDING, Cause.RESUMED, sid=session.sid)

    def _changed(self, call: Call, error: AgoraError | None) -> None:
        rec = self.rec
        session = rec.sessions[call.session]
        change = rec.pending_changes[0]
        self._agora_note(call.endpoint, error, sid=session.sid)
        if error is not None and error.outcome in (Outcome.RETRY, Outcome.RATE_LIMITED, Outcome.NOT_FOUND):
            rec.retry_at_ms = self.after(STOP_RETRY)
            return
        rec.retry_at_ms = None
        rec.pending_changes.pop(0)
        if error is None and change["kind"] == "update" and "storageConfig" not in change["body"]:
            remember_change(rec, change)
            web = change["body"].get("webRecordingConfig")
            if web is not None and "onhold" in web:
                session.onhold = bool(web["onhold"])

    def _merge_report(self, session: AgoraSession, report: RecordingReport, status: str, source: str) -> None:
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
            if merge_file(self.rec.files, entry):
                self.rec.last_upload_change_ms = self.now


def remember_change(rec: Recording, change: dict[str, Any]) -> None:
    """Keep subscription / web changes in the request, so a restarted session records the same way."""
    body = change["body"]
    services = rec.request.get("extensionServiceConfig", {}).get("extensionServices", [])
    web = body.get("webRecordingConfig")
    rtmp = body.get("rtmpPublishConfig")
    for service in services:
        if web is not None and service.get("serviceName") == "web_recorder_service":
            service.setdefault("serviceParam", {})["onhold"] = web.get("onhold")
        if rtmp is not None and service.get("serviceName") == "rtmp_publish_service":
            service.setdefault("serviceParam", {})["outputs"] = rtmp.get("outputs")


def requested_onhold(request: dict[str, Any]) -> bool:
    """The web recorder's ``onhold`` in a start request (as created, or as the last update left it)."""
    services = request.get("extensionServiceConfig", {}).get("extensionServices", [])
    return any(
        s.get("serviceName") == "web_recorder_service" and bool(s.get("serviceParam", {}).get("onhold"))
        for s in services
    )


def with_onhold(request: dict[str, Any], onhold: bool) -> dict[str, Any]:
    """A copy of a web start request with the page's ``onhold`` set."""
    copy = {**request}
    config = request.get("extensionServiceConfig")
    if isinstance(config, dict):
        services = []
        for service in config.get("extensionServices", []):
            if service.get("serviceName") == "web_recorder_service":
                service = {**service, "serviceParam": {**service.get("serviceParam", {}), "onhold": onhold}}
            services.append(service)
        copy["extensionServiceConfig"] = {**config, "extensionServices": services}
    return copy


def error_of(exc: BaseException) -> AgoraError:
    """An exception from a call as an AgoraError (anything unexpected counts as an ambiguous failure)."""
    if isinstance(exc, AgoraError):
        return exc
    return AgoraApiError(
        endpoint="", status=599, code=None, reason=type(exc).__name__, request_id=None, outcome=Outcome.RETRY
    )
