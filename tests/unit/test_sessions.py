"""The session reducer: late events never move a session backwards; order and duplicates do not matter."""

from __future__ import annotations

from functools import reduce

from hypothesis import given
from hypothesis import strategies as st

from tests.support.factories import body_of, event
from workers.ncs.envelope import NcsEvent, parse_event
from workers.ncs.reducer import SessionState, apply_event, timeline_member


def ncs(event_type: int, **kwargs) -> NcsEvent:
    return parse_event(body_of(event(event_type, **kwargs)), 0)


def fold(events: list[NcsEvent]) -> SessionState | None:
    return reduce(apply_event, events, None)


def test_lifecycle_in_order() -> None:
    """A normal lifecycle ends exited, uploaded, with the failover uid."""
    state = fold(
        [
            ncs(40, sequence=0),
            ncs(3, sequence=1, details={"status": 5}),
            ncs(12, sequence=2, details={"newUid": 3840127601}),
            ncs(33, sequence=3, details={"progress": 5000}),
            ncs(41, sequence=4, details={"leaveCode": 16}),
            ncs(11, sequence=5, details={"exitStatus": 0}),
            ncs(31, sequence=6, details={"status": 0, "fileList": []}),
        ]
    )
    assert state is not None
    assert (state.status, state.exit_status, state.recorder_uid) == ("exited", 0, "3840127601")
    assert (state.upload, state.upload_progress, state.service_status) == ("uploaded", 5000, 5)


def test_late_event_does_not_move_backwards() -> None:
    """A recorder_started arriving after stopping events leaves the session stopping."""
    stopping = fold([ncs(40, sequence=1, sendts=1000), ncs(41, sequence=5, sendts=5000)])
    late = apply_event(stopping, ncs(40, sequence=0, sendts=500))
    assert late is not None and stopping is not None
    assert (
        (late.status, late.phase_key) == (stopping.status, stopping.phase_key) == ("stopping", late.phase_key)
    )
    assert late.first_sendts == 500  # the late event still counts as what it is: the earliest


def test_exit_is_sticky() -> None:
    """session_exit wins over any later-numbered event (43/44/31 do arrive after 11)."""
    state = fold([ncs(11, sequence=3, details={"exitStatus": 1}), ncs(43, sequence=9, details={"state": 0})])
    assert state is not None and state.status == "exited" and state.exit_status == 1


def test_upload_result_is_sticky_over_progress() -> None:
    """A progress report after `uploaded` does not turn it back into `uploading`."""
    state = fold([ncs(31, sequence=5), ncs(33, sequence=8, details={"progress": 9000})])
    assert state is not None and state.upload == "uploaded" and state.upload_progress == 9000


def test_fatal_error_recorded() -> None:
    """An error event is kept as the last error with its module, level and code."""
    state = fold([ncs(1, details={"module": 0, "errorLevel": 5, "errorCode": 110, "errorMsg": ""})])
    assert state is not None and state.last_error == {
        "module": 0,
        "errorLevel": 5,
        "errorCode": 110,
        "errorMsg": "",
    }


def test_timeline_member_orders_by_sequence_then_sendts() -> None:
    """Timeline members sort lexically in (sequence, sendts) order, with missing sequence first."""
    a = ncs(40, sequence=2, sendts=500)
    b = ncs(40, sequence=10, sendts=100)
    c = ncs(40, sequence=10, sendts=200)
    none = parse_event(b'{"noticeId":"z","productId":3,"eventType":1,"notifyMs":1,"payload":{"sid":"s"}}', 0)
    assert sorted(timeline_member(e) for e in (c, none, b, a)) == [
        timeline_member(e) for e in (none, a, b, c)
    ]


DETAILS_BY_TYPE = {
    1: st.fixed_dictionaries(
        {"errorLevel": st.integers(1, 5), "errorCode": st.integers(0, 200), "module": st.integers(0, 2)}
    ),
    3: st.fixed_dictionaries({"status": st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 8, 20, "5"])}),
    11: st.fixed_dictionaries({"exitStatus": st.integers(0, 1)}),
    12: st.fixed_dictionaries({"newUid": st.integers(1, 2**32 - 1)}),
    33: st.fixed_dictionaries({"progress": st.integers(0, 10000)}),
}
EVENT_TYPES = [1, 2, 3, 4, 11, 12, 30, 31, 32, 33, 40, 41, 42, 43, 44, 45, 70, 71, 72, 73, 100, 999]


@st.composite
def session_events(draw: st.DrawFn) -> list[NcsEvent]:
    count = draw(st.integers(1, 25))
    events = []
    for index in range(count):
        event_type = draw(st.sampled_from(EVENT_TYPES))
        details = draw(DETAILS_BY_TYPE.get(event_type, st.just({})))
        events.append(
            ncs(
                event_type,
                notice_id=f"n{index}",
                sequence=draw(st.none() | st.integers(0, 30)),
                sendts=draw(st.none() | st.integers(0, 10**6)),
                uid=draw(st.sampled_from(["111", "222"])),
                details=details,
            )
        )
    return events


@given(events=session_events(), data=st.data())
def test_any_permutation_with_duplicates_reaches_the_in_order_state(events, data) -> None:
    """Shuffled and duplicated callback streams end in the state of the in-order stream."""
    in_order = fold(sorted(events, key=lambda e: e.order_key))
    duplicated = events + data.draw(st.lists(st.sampled_from(events), max_size=10))
    shuffled = data.draw(st.permutations(duplicated))
    assert fold(list(shuffled)) == in_order


@given(events=session_events())
def test_reapplying_is_idempotent(events) -> None:
    """Re-running a batch (a drain retried after a crash) changes nothing."""
    once = fold(events)
    assert fold(events + events) == once
