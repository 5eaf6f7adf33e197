"""THE server connection table: well formed, every state reachable, docs generated from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from summon.runtime.http import state

DOCS = Path(__file__).resolve().parents[4] / "docs" / "http-states.md"


def test_every_row_names_known_states() -> None:
    for (src, _event), (dst, note) in state.TRANSITIONS.items():
        assert src in state.STATES and dst in state.STATES and note


def test_every_state_is_reachable_from_idle_and_can_reach_closed() -> None:
    edges: dict[str, set[str]] = {}
    for (src, _), (dst, _) in state.TRANSITIONS.items():
        edges.setdefault(src, set()).add(dst)

    def reach(start: str) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert reach(state.IDLE) == set(state.STATES)
    for s in state.STATES:
        assert state.CLOSED in reach(s), s


def test_nothing_leaves_closed() -> None:
    assert not [key for key in state.TRANSITIONS if key[0] == state.CLOSED]


def test_every_open_state_can_abort_and_shut_down() -> None:
    for s in state.STATES:
        if s != state.CLOSED:
            assert (s, state.ABORT) in state.TRANSITIONS, s
            assert (s, state.SHUTDOWN) in state.TRANSITIONS, s
            assert (s, state.EOF) in state.TRANSITIONS, s


def test_a_missing_row_is_a_bug_not_a_client_error() -> None:
    with pytest.raises(state.TransitionError, match="no transition from WAIT on data"):
        state.transition(state.WAIT, state.DATA)


def test_docs_are_generated_from_the_table() -> None:
    assert DOCS.read_text() == state.describe(), (
        "regenerate: python3 -W ignore -m summon.runtime.http.state > docs/http-states.md"
    )


def test_no_code_outside_the_table_assigns_a_state() -> None:
    """h11's rule 1: every state change is a lookup in TRANSITIONS."""
    package = Path(state.__file__).parent
    for source in sorted(package.glob("*.py")):
        for line in source.read_text().splitlines():
            if re.search(r"\.state = ", line):
                assert "st.transition(" in line or line.strip() == "self.state = st.IDLE", (
                    f"{source.name}: {line.strip()}"
                )
