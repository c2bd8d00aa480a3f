"""The state machine's table: the README's copy matches it, and every edge the code can take is legal."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.recordings.machine import (
    TERMINAL,
    TRANSITIONS,
    Cause,
    IllegalTransitionError,
    State,
    edge,
    transitions_markdown,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_state_table_is_the_machines_table() -> None:
    """The README's transitions table (between its markers) is exactly what the machine enforces."""
    text = README.read_text()
    begin, end = "<!-- transitions:begin -->\n", "\n<!-- transitions:end -->"
    assert begin in text and end in text
    readme_table = text.split(begin, 1)[1].split(end, 1)[0].strip()
    assert readme_table == transitions_markdown()


def test_terminal_states_have_no_way_out() -> None:
    """No edge leaves completed, backed_up, upload_unconfirmed or failed."""
    assert not [e for e in TRANSITIONS if e.source in TERMINAL]
    assert {e.target for e in TRANSITIONS} >= set(TERMINAL)


def test_an_edge_not_in_the_table_raises() -> None:
    """A transition the table does not list is a bug: it raises."""
    assert edge(State.RECORDING, State.STOPPING, Cause.STOP_REQUESTED).target == State.STOPPING
    with pytest.raises(IllegalTransitionError):
        edge(State.COMPLETED, State.RECORDING, Cause.CONFIRMED)
    with pytest.raises(IllegalTransitionError):
        edge(State.RECORDING, State.STOPPING, Cause.CONFIRMED)


def test_every_state_but_pending_is_reachable_and_every_notification_is_named() -> None:
    """The table reaches every state, and each notification is one the README documents."""
    assert {e.target for e in TRANSITIONS} == set(State) - {State.PENDING}
    readme = README.read_text()
    for e in TRANSITIONS:
        if e.notification:
            assert f"`{e.notification}`" in readme
