"""Stateful property test of the orchestration: Hypothesis interleaves API commands, callbacks (delivered,
lost, duplicated, reordered), Agora's faults (slow answers, timeouts, 5xx, 206/65), task faults (death,
exits, HA failover, idle channels), steps killed after sending a call, and time, against the fake Agora of
tests/support/fake_agora.py; the rules every interleaving must keep are checked after each of them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.support.fake_agora import WRITE_AHEAD_WAKE_MS, Driver, FakeAgora, FakeTask, new_recording
from workers.recordings.decide import POLL_EVERY, Call
from workers.recordings.machine import TERMINAL, State

S = 1000
ENDPOINTS = ("acquire", "start", "query", "stop", "update")


def kill_once(endpoint: str) -> Callable[[Call], bool]:
    """Kill the step that sends the next call to ``endpoint`` (once)."""
    fired: list[Call] = []

    def kill(call: Call) -> bool:
        if fired or call.endpoint != endpoint:
            return False
        fired.append(call)
        return True

    return kill


class RecordingLifecycle(RuleBasedStateMachine):
    """One recording against the fake Agora, in any interleaving of what can happen to it."""

    agora: FakeAgora
    driver: Driver

    @initialize(
        mode=st.sampled_from(["mix", "individual", "web"]),
        foreign=st.booleans(),
        silent=st.booleans(),
        max_duration_s=st.sampled_from([None, None, 60, 900]),
    )
    def begin(self, mode: str, foreign: bool, silent: bool, max_duration_s: int | None) -> None:
        self.agora = FakeAgora(auto_deliver=False)
        rec = new_recording(mode, max_duration_s=max_duration_s)
        if foreign:  # somebody else records on our channel with our uid
            self.agora.foreign_task(rec.cname, rec.uid, "web" if mode == "web" else "mix")
        if silent:
            self.agora.set_publishers(rec.cname, False)
        self.driver = Driver(self.agora, rec)
        self.terminal: State | None = None
        self.mode = mode

    # -- the app server ------------------------------------------------------------------------------------

    @rule()
    def stop(self) -> None:
        self.driver.command("stop")

    @rule(op=st.sampled_from(["pause", "resume"]))
    def pause_or_resume(self, op: str) -> None:
        self.driver.command(op)

    @rule(place=st.integers(0, 3))
    def capacity(self, place: int) -> None:
        """The admission queue's answer changes: a place in the queue, or a slot (0)."""
        self.driver.queue_place = place

    @rule(layout=st.booleans())
    def change(self, layout: bool) -> None:
        if layout and self.mode == "mix":
            self.driver.command("layout", {"mixedVideoLayout": 1})
        else:
            self.driver.command("update", {"streamSubscribe": {}})

    # -- workers and time ----------------------------------------------------------------------------------

    @rule()
    def step(self) -> None:
        """A step runs now, due or not (woken by something, or early)."""
        self.driver.step()

    @rule(ms=st.integers(1, 200 * S))
    def time_passes(self, ms: int) -> None:
        """Time passes and no worker steps (a backlog); Agora goes on."""
        self.agora.advance(ms)

    @rule(ms=st.integers(1, 400 * S))
    def run_for(self, ms: int) -> None:
        """Time passes with steps at the wake-ups and whenever a callback or command wakes the recording."""
        self.driver.wait(ms)

    @rule(endpoint=st.sampled_from(ENDPOINTS))
    def kill_a_step(self, endpoint: str) -> None:
        """The step that sends the next call to ``endpoint`` dies right after sending it."""
        self.driver.kill = kill_once(endpoint)

    # -- callbacks -----------------------------------------------------------------------------------------

    @precondition(lambda self: bool(self.agora.outbox))
    @rule(data=st.data())
    def deliver_one(self, data: st.DataObject) -> None:
        """Any pending callback next (so in any order)."""
        envelope = data.draw(st.sampled_from(self.agora.outbox))
        self.agora.deliver(envelope)

    @rule()
    def deliver_all(self) -> None:
        self.agora.deliver_all()

    @precondition(lambda self: bool(self.agora.outbox))
    @rule(data=st.data())
    def lose_one(self, data: st.DataObject) -> None:
        self.agora.lose(data.draw(st.sampled_from(self.agora.outbox)))

    @precondition(lambda self: bool(self.agora.inbox))
    @rule(data=st.data())
    def duplicate_one(self, data: st.DataObject) -> None:
        self.agora.deliver(data.draw(st.sampled_from(self.agora.inbox)))

    # -- Agora's faults ------------------------------------------------------------------------------------

    @rule(
        endpoint=st.sampled_from(ENDPOINTS),
        kind=st.sampled_from(["slow", "timeout", "500", "65", "65-acted", "406"]),
    )
    def answer_fault(self, endpoint: str, kind: str) -> None:
        """The next call to ``endpoint`` acts but its answer is lost, never arrives, or is a 5xx / 206 65; or
        acquire finds Agora's quota taken (406)."""
        if kind == "406":
            self.agora.script("acquire", 400, 406, "vendor_over_load")
        elif kind == "slow":
            self.agora.slow(endpoint)
        elif kind == "timeout":
            self.agora.timeout(endpoint)
        elif kind == "500":
            self.agora.script(endpoint, 500, 500)
        else:
            self.agora.script(endpoint, 206, 65, "request not completed", act=kind == "65-acted")

    def ours(self) -> list[FakeTask]:
        """Our tasks that record (and did for 20 s: HA migrations are at most 80 s here, with at least 20 s of
        recording between two, so no run of 404s lasts the 90 s window while the task lives, as Agora says)."""
        now = self.agora.now
        return [
            t
            for t in self.driver.live_tasks()
            if t.state == "running" and t.running_since is not None and now - t.running_since >= 20 * S
        ]

    @precondition(lambda self: bool(self.ours()))
    @rule(data=st.data(), kind=st.sampled_from(["die", "abnormal", "normal", "failover", "capability"]))
    def task_fault(self, data: st.DataObject, kind: str) -> None:
        """A running task of ours dies, exits (abnormally or normally), fails over, or hits a web limit."""
        task = data.draw(st.sampled_from(self.ours()))
        if kind == "die":
            self.agora.die(task.sid)
        elif kind == "abnormal":
            self.agora.exit(task.sid, exit_status=1)
        elif kind == "normal":
            self.agora.exit(task.sid, exit_status=0)
        elif kind == "failover":
            self.agora.failover(task.sid, window_ms=data.draw(st.integers(5 * S, 80 * S)))
        else:
            self.agora.capability_limit(task.sid)

    @rule(present=st.booleans())
    def publishers(self, present: bool) -> None:
        """Everybody leaves the channel (idle exit follows), or comes back."""
        self.agora.set_publishers(self.driver.rec.cname, present)

    # -- the rules ------------------------------------------------------------------------------------------

    @invariant()
    def never_two_tasks(self) -> None:
        """Agora never runs two tasks for the recording; the recording never has two live sessions with a sid
        that it means to keep."""
        if not hasattr(self, "driver"):
            return
        live = self.driver.live_tasks()
        assert len(live) <= 1, [(t.sid, t.uid, t.resource_id) for t in live]
        kept = [s for s in self.driver.rec.sessions if s.live and s.sid and not s.stop_wanted]
        assert len(kept) <= 1, kept

    @invariant()
    def terminal_stays_terminal(self) -> None:
        """Once terminal, the state never changes."""
        if not hasattr(self, "driver"):
            return
        state = self.driver.rec.state
        if self.terminal is not None:
            assert state == self.terminal
        elif state in TERMINAL:
            self.terminal = state

    @invariant()
    def one_session_per_task(self) -> None:
        """No two sessions hold the same sid."""
        if not hasattr(self, "driver"):
            return
        sids = [s.sid for s in self.driver.rec.sessions if s.sid]
        assert len(sids) == len(set(sids)), sids

    @invariant()
    def always_a_wake_up_and_polling(self) -> None:
        """A non-terminal recording always has a wake-up; while recording, the running session's next query
        is planned at most POLL_EVERY after the last save, and the wake-up is not later."""
        if not hasattr(self, "driver"):
            return
        rec = self.driver.rec
        if not rec.terminal:
            assert rec.wake_at_ms is not None
        current = rec.current
        if rec.state == State.RECORDING and current is not None and current.sid and current.confirmed_ms:
            if current.exit_seen_ms is None and current.next_query_ms is not None:
                assert current.next_query_ms <= rec.updated_ms + POLL_EVERY * S
                assert rec.wake_at_ms is not None
                # (a write-ahead save sets the wake-up 10 s on, in case the step dies during its call)
                assert rec.wake_at_ms <= max(current.next_query_ms, rec.updated_ms + WRITE_AHEAD_WAKE_MS)

    @invariant()
    def paused_means_no_session_or_on_hold(self) -> None:
        """A paused individual or mix recording keeps no session; a paused web recording's page is on hold."""
        if not hasattr(self, "driver"):
            return
        rec = self.driver.rec
        if rec.state != State.PAUSED:
            return
        kept = [s for s in rec.sessions if s.live and s.sid and not s.stop_wanted]
        if self.mode == "web":
            assert all(s.onhold for s in kept if s.confirmed_ms), kept
        else:
            assert not kept, kept

    @invariant()
    def notifications_once(self) -> None:
        """Every notification but ``recording.restarted``, ``.paused`` and ``.resumed`` at most once (those
        two alternate); at most one final one."""
        if not hasattr(self, "driver"):
            return
        counts = Counter(self.driver.notifications)
        repeatable = ("recording.restarted", "recording.paused", "recording.resumed")
        assert all(n == 1 for kind, n in counts.items() if kind not in repeatable), counts
        paused = False  # as the app server knows it: paused, then resumed (or started, if it never recorded)
        for kind in self.driver.notifications:
            if kind == "recording.paused":
                assert not paused, self.driver.notifications
                paused = True
            elif kind == "recording.resumed":
                assert paused, self.driver.notifications
                paused = False
            elif kind == "recording.started":
                paused = False
        finals = (
            "recording.completed",
            "recording.failed",
            "recording.backed_up",
            "recording.upload_unconfirmed",
        )
        assert sum(counts[k] for k in finals) <= 1, counts

    def teardown(self) -> None:
        """Stop, let callbacks flow and time pass: the recording ends, no task of it runs, and every task it
        created is known to one of its sessions or is dead."""
        if not hasattr(self, "driver"):
            return
        agora, driver = self.agora, self.driver
        agora.faults.clear()
        driver.kill = None
        driver.command("stop")
        agora.flow()
        rec = driver.run(
            lambda r: r.terminal and not any(s.live and s.sid for s in r.sessions), within_ms=4 * 3600 * S
        )
        assert rec.terminal, rec
        assert not driver.live_tasks(), [(t.sid, t.uid) for t in driver.live_tasks()]
        assert not [s for s in rec.sessions if s.live and s.sid], rec.sessions
        for task in agora.tasks.values():
            if not task.foreign:
                assert task.sid in {s.sid for s in rec.sessions} or not task.alive
        self.never_two_tasks()
        self.terminal_stays_terminal()
        self.notifications_once()
        finals = [
            n
            for n in driver.notifications
            if n not in ("recording.restarted", "recording.started", "recording.paused", "recording.resumed")
        ]
        assert len(finals) == 1, driver.notifications


RecordingLifecycle.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_recording_lifecycle = RecordingLifecycle.TestCase
test_recording_lifecycle.__doc__ = (
    "Any interleaving keeps: one task, terminal is final, wake-ups, no task left."
)
