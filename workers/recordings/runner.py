"""One orchestration step of a recording: load, decide, act, save — fenced by the recording's lock.

:func:`advance` is the RQ job (queued by :mod:`workers.recordings.timers`). A step:

1. clears the recording's "queued" flag (a wake-up from now on queues the next step) and takes the lock, a
   random token and this process's holder id in ``acr:rec:<id>:lock`` with a TTL
   (:data:`~workers.recordings.timers.LOCK_TTL_MS`) longer than the worst Agora call; a lock whose holder
   died is taken over (:mod:`workers.recordings.liveness`); if a live step holds it, the timer is brought
   forward and this one ends;
2. loads the recording, the API's commands and its sessions' callbacks (:class:`Evidence`), and lets
   :class:`~workers.recordings.decide.Step` decide;
3. for a call: extends the lock, takes a slot of the shared rate limit, saves the intent first when the call
   may create or end a task (write-ahead), sends it, hands the answer to the step and saves again — so
   resourceId and sid are stored the moment Agora returns them; then decides again (at most
   :data:`~workers.recordings.timers.MAX_CALLS_PER_STEP` calls per job);
4. every save is one script that writes only if the lock still holds this step's token: a step that lost its
   lock (it outlived the TTL) writes nothing but a timeline entry.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, cast

import msgspec
import redis
from rq import get_current_job

from workers.agora import (
    AcquireClientRequest,
    AcquireRequest,
    AgoraClient,
    AgoraError,
    StartClientRequest,
    StartRequest,
    StopRequest,
    UpdateClientRequest,
    UpdateLayoutClientRequest,
    UpdateLayoutRequest,
    UpdateRequest,
    from_json_dict,
)
from workers.agora.ratelimit import RateLimiter
from workers.core import schema, scripts
from workers.core.coerce import as_int
from workers.core.config import Settings, current_settings
from workers.core.measure import record_agora, record_state
from workers.core.redact import redact
from workers.ncs.reducer import SessionState
from workers.ncs.store import read_states
from workers.recordings.admission import (
    admission_mark,
    admit,
    capacity_class,
    slots_for,
)
from workers.recordings.decide import (
    Call,
    Evidence,
    Plan,
    SessionFacts,
    Step,
    Timing,
    error_of,
    take_commands,
    with_onhold,
)
from workers.recordings.liveness import keep_alive, take_over_if_dead
from workers.recordings.machine import Desired, SessionOutcome
from workers.recordings.model import Recording, encode
from workers.recordings.notify import queue_notification
from workers.recordings.polling import poll_interval
from workers.recordings.store import TIMELINE_CAP, load, peek_commands
from workers.recordings.timers import (
    LOCK_TTL_MS,
    MAX_CALLS_PER_STEP,
    WORST_CALL_SECONDS,
    record_max,
    soon,
)

log = logging.getLogger(__name__)

FATAL_ERROR_LEVEL = 5
BUSY_RETRY_MS = 2000
#: A step waits this long at most for a rate-limit slot; beyond, it sets its timer for when one frees (plus
#: jitter) and gives the worker back: a saturated budget must not hold every worker in a wait.
SLOT_WAIT_MS = 150
RATE_LIMITED_JITTER_MS = 100


def facts_of(state: SessionState) -> SessionFacts:
    """What a session's callbacks say, for the decisions (from its reduced state: one read per session)."""
    ended = state.ended
    return SessionFacts(
        sid=state.sid,
        uids=frozenset(u for u in (*state.uids, state.uid, state.failover_uid) if u),
        failover_uid=state.failover_uid,
        ended=None if ended is None else SessionOutcome(ended),
        upload=state.upload if state.upload in ("uploaded", "backed_up") else None,
        files=tuple(state.files.values()),
        fatal_error=fatal_mark(state),
    )


def fatal_mark(state: SessionState) -> str | None:
    """A stable mark of the session's newest error callback when it is fatal (errorLevel 5), else None."""
    error = state.last_error
    if not error or as_int(error.get("errorLevel")) != FATAL_ERROR_LEVEL:
        return None
    return ":".join(str(part) for part in state.error_key)


#: (lock, token, recording id) of steps that ended while Redis was unreachable (see :func:`release_pending`).
UNRELEASED: list[tuple[str, str, str]] = []


def release_pending(connection: redis.Redis) -> int:
    """Release the locks left by steps that ended while Redis was away, and bring their recordings' timers
    forward (the step's save may be lost, and its timer left a whole lease ahead); returns how many."""
    released = 0
    while UNRELEASED:
        lock, token, recording_id = UNRELEASED[0]
        scripts.RELEASE_LOCK(connection, keys=[lock], args=[token])
        soon(connection, recording_id, 0)
        UNRELEASED.pop(0)
        released += 1
    return released


class LostLockError(Exception):
    """The step no longer holds the recording's lock: it must not write."""


class Runner:
    """What a step needs: Redis, settings, the Agora client, the shared rate limit and a clock."""

    def __init__(
        self,
        connection: redis.Redis,
        settings: Settings,
        client: AgoraClient | Any | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.redis = connection
        self.settings = settings
        self.client = client if client is not None else AgoraClient.from_settings(settings)
        worst = getattr(self.client, "worst_case_seconds", None)
        if worst is not None and worst() > WORST_CALL_SECONDS:
            raise ValueError(f"one Agora call may take {worst():.0f} s, longer than the lock allows")
        self.limiter = RateLimiter(connection, settings.agora_app_id, settings.agora_rate_limit)
        self._call_tier = "start"
        if isinstance(self.client, AgoraClient) and self.client.before_retry is None:
            self.client.before_retry = lambda: self.limiter.take(max_wait_seconds=2.0, tier=self._call_tier)
        if isinstance(self.client, AgoraClient) and self.client.before_send is None:
            self.client.before_send = self.limiter.fresh
        if isinstance(self.client, AgoraClient) and self.client.observe is None:
            self.client.observe = lambda endpoint, outcome, seconds: record_agora(
                connection, endpoint, outcome, seconds
            )
        # The state the step found, and the one last noted for /metrics (workers.core.measure.record_state).
        self._loaded_state: str | None = None
        self._noted_state: str | None = None
        # Redis's clock, as the timers use it: a worker whose own clock is off neither spins nor runs late.
        self.clock = clock or self._redis_ms
        self.timing = Timing(settings.recording_time_scale, float(settings.upload_stuck_seconds))

    def _redis_ms(self) -> int:
        seconds, micros = self.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    # -- the job -------------------------------------------------------------------------------------------

    def advance(self, recording_id: str) -> str:
        """One step for a recording; returns its state afterwards (or busy / unknown / lost_lock)."""
        self.redis.delete(schema.recording_queued(recording_id))
        self._loaded_state = self._noted_state = None
        token = f"{secrets.token_hex(8)}|{keep_alive(self.redis)}"
        lock = schema.recording_lock(recording_id)
        taken = bool(self.redis.set(lock, token, nx=True, px=LOCK_TTL_MS))
        if not taken and take_over_if_dead(self.redis, lock, token, LOCK_TTL_MS):
            taken = True
            log.warning("lock of a dead worker taken over", extra={"recording_id": recording_id})
        if not taken:
            # Another step runs: it may have read the evidence before what woke us; look again soon.
            self.redis.set(schema.recording_poked(recording_id), 1, px=LOCK_TTL_MS)
            if self.redis.zscore(schema.TIMERS, recording_id) is not None:
                soon(self.redis, recording_id, BUSY_RETRY_MS)
            return "busy"
        started = time.monotonic()
        redis_lost = False
        try:
            return self._run(recording_id, token)
        except redis.RedisError:
            redis_lost = True  # its save may not have happened: its timer sits a whole lease ahead
            raise
        except LostLockError:
            self.redis.rpush(
                schema.recording_timeline(recording_id),
                msgspec.json.encode(
                    {"ts": self.clock(), "kind": "decision", "what": "lost the lock: nothing saved"}
                ),
            )
            log.warning("step lost its lock", extra={"recording_id": recording_id})
            return "lost_lock"
        finally:
            try:
                scripts.RELEASE_LOCK(self.redis, keys=[lock], args=[token])
                if redis_lost:
                    soon(self.redis, recording_id, BUSY_RETRY_MS)
                record_max(self.redis, "step_max_ms", int((time.monotonic() - started) * 1000))
            except redis.RedisError:
                # Redis went away during the step: this process lives on (its heartbeat will say so), so
                # nobody would take the lock over; the worker releases it, and looks again, once Redis is back.
                UNRELEASED.append((lock, token, recording_id))

    def _run(self, recording_id: str, token: str) -> str:
        if self.settings.notify_url and self.redis.llen(schema.recording_outbox(recording_id)):
            self.send_outbox(recording_id)  # what a worker that died right after its save did not send
        for calls in range(MAX_CALLS_PER_STEP + 1):
            now = self.clock()
            rec = load(self.redis, recording_id)
            if rec is None:
                self.redis.zrem(schema.TIMERS, recording_id)
                return "unknown"
            if self._loaded_state is None:
                self._loaded_state = rec.state
            if calls == 0 and rec.wake_at_ms is not None and now >= rec.wake_at_ms:
                record_max(self.redis, "timer_late_max_ms", now - rec.wake_at_ms)
            commands = peek_commands(self.redis, recording_id)
            notes = take_commands(rec, commands, now)
            if calls == 0:
                place, poll_every = self._fleet(rec)
            step = Step(rec, self.evidence(rec), now, self.timing, queue_place=place, poll_every=poll_every)
            plan = step.decide()
            plan.notes[:0] = notes
            call = plan.call
            if call is None:
                self.save(rec, plan, token, len(commands))
                return rec.state
            if calls == MAX_CALLS_PER_STEP:  # hand over to a fresh job; decide again there
                plan.call, plan.wake_at = None, now
                self.save(rec, plan, token, len(commands))
                return rec.state
            self._extend_lock(recording_id, token)
            self._call_tier = self._tier(rec, call)
            wait_ms = self._slot(self._call_tier, rec.id)
            if wait_ms:  # no slot soon: give the worker back and come again when one frees
                plan.call, plan.wake_at = None, now + wait_ms + secrets.randbelow(RATE_LIMITED_JITTER_MS)
                self.save(rec, plan, token, len(commands))
                return rec.state
            step.sending(call)
            if plan.save_before:
                self.save(rec, plan, token, len(commands), wake_at=now + self.timing.ms(10.0))
                commands = []
            answer, error = self.perform(rec, call)
            step.now = self.clock()
            step.absorb(call, answer, error)
            self.save(rec, plan, token, len(commands), wake_at=step.now)
        return "continued"

    def _fleet(self, rec: Recording) -> tuple[int, float]:
        """The recording's place in the admission queue (0: it holds a slot, or needs none), and the routine
        poll interval for the fleet's size (in the rules' seconds, which Timing scales)."""
        place = 0
        if rec.holds_capacity and rec.desired != Desired.STOPPED:
            place = admit(self.redis, rec, slots_for(self.settings, rec.mode))
        active = int(self.redis.zcard(schema.ACTIVE_RECORDINGS))
        # the budget is per real second; the rules' seconds last `scale` real seconds
        interval, _capped = poll_interval(active, self.settings.agora_rate_limit * self.timing.scale)
        return place, interval

    def _slot(self, tier: str, caller: str) -> int:
        """Take a rate-limit slot, waiting up to SLOT_WAIT_MS; 0 when taken, else milliseconds to wait."""
        wait_ms = self.limiter.try_take(tier, caller)
        if 0 < wait_ms <= SLOT_WAIT_MS:
            time.sleep(wait_ms / 1000)
            wait_ms = self.limiter.try_take(tier, caller)
        return wait_ms

    @staticmethod
    def _tier(rec: Recording, call: Call) -> str:
        """The call's priority in the rate budget (:data:`~workers.agora.ratelimit.TIERS`): stops first, then starts
        and the queries that confirm a start or follow up a 404 (they decide whether a session died), then
        acquires, then changes, then routine polls of confirmed sessions."""
        if call.endpoint in ("stop", "acquire", "start"):
            return call.endpoint
        if call.endpoint != "query":
            return "change"
        session = rec.sessions[call.session]
        routine = session.confirmed_ms is not None and session.missing_since_ms is None
        return "poll" if routine else "start"

    def _extend_lock(self, recording_id: str, token: str) -> None:
        if not scripts.EXTEND_LOCK(
            self.redis, keys=[schema.recording_lock(recording_id)], args=[token, LOCK_TTL_MS]
        ):
            raise LostLockError(recording_id)

    # -- evidence ------------------------------------------------------------------------------------------

    def evidence(self, rec: Recording) -> Evidence:
        """The callbacks of the recording's sessions, and of tasks found on its channel and uids."""
        found = {m.decode() for m in cast(set[bytes], self.redis.smembers(schema.recording_found(rec.id)))}
        known = {s.sid for s in rec.sessions if s.sid}
        strays = sorted(found - known)
        wanted = strays if rec.terminal else sorted(known) + strays
        facts = {sid: facts_of(state) for sid, state in read_states(self.redis, wanted).items()}
        return Evidence(sessions=facts, strays=tuple(s for s in strays if s in facts))

    # -- acting --------------------------------------------------------------------------------------------

    def perform(self, rec: Recording, call: Call) -> tuple[Any, AgoraError | None]:
        """Make one Agora call; (answer, None) or (None, error)."""
        try:
            return self._send(rec, call), None
        except Exception as exc:  # any failure of the call is an answer the decisions understand
            return None, error_of(exc)

    def _send(self, rec: Recording, call: Call) -> Any:
        client = self.client
        if call.endpoint == "acquire":
            body = AcquireRequest(
                cname=rec.cname, uid=str(call.uid), client_request=AcquireClientRequest(scene=rec.scene)
            )
            return client.acquire(body, mode=rec.mode)
        session = rec.sessions[call.session]
        uid = session.uid
        if call.endpoint == "start":
            wanted = with_onhold(rec.request, session.onhold) if rec.mode == "web" else rec.request
            request = from_json_dict(StartClientRequest, wanted, "clientRequest")
            return client.start(
                session.resource_id, rec.mode, StartRequest(cname=rec.cname, uid=uid, client_request=request)
            )
        assert session.sid is not None
        if call.endpoint == "query":
            return client.query(session.resource_id, session.sid, rec.mode)
        if call.endpoint == "stop":
            return client.stop(
                session.resource_id, session.sid, rec.mode, StopRequest(cname=rec.cname, uid=uid)
            )
        if call.hold is not None:
            body_json: dict[str, Any] = {"webRecordingConfig": {"onhold": call.hold}}
        else:
            body_json = rec.pending_changes[0]["body"]
        if call.endpoint == "updateLayout":
            layout = from_json_dict(UpdateLayoutClientRequest, body_json, "clientRequest")
            return client.update_layout(
                session.resource_id,
                session.sid,
                UpdateLayoutRequest(cname=rec.cname, uid=uid, client_request=layout),
            )
        update = from_json_dict(UpdateClientRequest, body_json, "clientRequest")
        return client.update(
            session.resource_id,
            session.sid,
            rec.mode,
            UpdateRequest(cname=rec.cname, uid=uid, client_request=update),
        )

    # -- saving --------------------------------------------------------------------------------------------

    def save(
        self,
        rec: Recording,
        plan: Plan,
        token: str,
        drop_commands: int,
        *,
        wake_at: int | None = None,
    ) -> None:
        """Write the recording, its timeline entries, its one timer, claims and sid ownership in one script,
        only while this step holds the lock; then queue its notifications. What was written is taken out of
        the plan (a plan that goes on after a write-ahead save does not write it twice)."""
        rec.updated_ms = self.clock()
        rec.version += 1
        due = wake_at if wake_at is not None else plan.wake_at
        if not rec.terminal and due is None:
            due = rec.updated_ms + self.timing.ms(120.0)  # every live recording keeps a timer
        if rec.terminal and not any(s.live and s.sid for s in rec.sessions):
            due = None
        rec.wake_at_ms = due
        retention = self.settings.session_retention_seconds
        sid_keys = [schema.recording_of_sid(sid) for sid in plan.owned_sids]
        # Notifications go out through an outbox written with the save: a worker dying right after the
        # save cannot lose one (the next step sends what is left, with the same webhook-id).
        outbox: list[bytes] = []
        if self.settings.notify_url:
            for kind in plan.notifications:
                message_id = "msg_" + secrets.token_hex(12)
                outbox.append(msgspec.json.encode({"id": message_id, "type": kind, "data": rec.public()}))
                plan.notes.append(
                    {"ts": rec.updated_ms, "kind": "notification", "type": kind, "webhookId": message_id}
                )
        claim_keys = [schema.channel_claim(rec.cname, uid) for uid in plan.claims]
        ok = scripts.SAVE_RECORDING(
            self.redis,
            keys=[
                schema.recording_lock(rec.id),
                schema.recording(rec.id),
                schema.recording_timeline(rec.id),
                schema.TIMERS,
                schema.ACTIVE_RECORDINGS,
                schema.recording_commands(rec.id),
                schema.recording_poked(rec.id),
                schema.recording_outbox(rec.id),
                schema.admission_queue(capacity_class(rec.mode)),
                schema.admission_holders(capacity_class(rec.mode)),
                schema.admission_agora_full(capacity_class(rec.mode)),
                *sid_keys,
                *claim_keys,
            ],
            args=[
                token,
                encode(rec),
                rec.id,
                -1 if due is None else due,
                1 if rec.terminal else 0,
                retention,
                rec.updated_ms,
                drop_commands,
                TIMELINE_CAP,
                BUSY_RETRY_MS,
                len(sid_keys),
                len(outbox),
                admission_mark(rec),
                slots_for(self.settings, rec.mode),
                *outbox,
                *(msgspec.json.encode(redact(n)) for n in plan.notes),
            ],
        )
        if not ok:
            raise LostLockError(rec.id)
        if rec.state != self._noted_state:  # once per step, and once per change of state
            before = self._noted_state or self._loaded_state
            record_state(self.redis, rec.id, rec.state, terminal=rec.terminal, entered=rec.state != before)
            self._noted_state = rec.state
        for entry in plan.notes:
            log.info("recording", extra={"recording_id": rec.id, "entry": entry})
        plan.notes.clear()
        plan.owned_sids.clear()
        plan.claims.clear()
        plan.notifications = []
        if outbox:
            self.send_outbox(rec.id)

    def send_outbox(self, recording_id: str) -> int:
        """Queue the notifications the recording's saves left in its outbox; returns how many."""
        key = schema.recording_outbox(recording_id)
        sent = 0
        for raw in cast(list[bytes], self.redis.lrange(key, 0, -1)):
            entry = msgspec.json.decode(raw)
            queue_notification(
                self.redis,
                entry["type"],
                entry["data"],
                scale=self.settings.recording_time_scale,
                retention_seconds=self.settings.session_retention_seconds,
                message_id=entry["id"],
            )
            self.redis.lrem(key, 1, raw.decode())
            sent += 1
        return sent


def advance(recording_id: str) -> str:
    """RQ job: one orchestration step for a recording (see the module docstring)."""
    job = get_current_job()
    settings = current_settings()
    connection = job.connection if job is not None else redis.Redis.from_url(settings.redis_url)
    return Runner(connection, settings).advance(recording_id)
