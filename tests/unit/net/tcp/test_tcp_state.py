"""THE transition table: well formed, every state reachable, and the docs generated from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from summon.net.tcp import state

DOCS = Path(__file__).resolve().parents[4] / "docs" / "tcp-states.md"


def test_every_row_names_known_states() -> None:
    for (src, _event), (dst, note) in state.TRANSITIONS.items():
        assert src in state.STATES and dst in state.STATES and note


def test_every_state_is_reachable_from_closed_and_can_reach_closed() -> None:
    edges: dict[str, set[str]] = {}
    for (src, _), (dst, _) in state.TRANSITIONS.items():
        edges.setdefault(src, set()).add(dst)

    def reach(start: str, graph: dict[str, set[str]]) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert reach(state.CLOSED, edges) == set(state.STATES)
    for s in state.STATES:
        assert state.CLOSED in reach(s, edges), s


@pytest.mark.parametrize(
    ("src", "event", "dst"),
    [
        (state.CLOSED, state.OPEN_ACTIVE, state.SYN_SENT),
        (state.SYN_SENT, state.RCV_SYN, state.SYN_RECEIVED),
        (state.ESTABLISHED, state.CLOSE, state.FIN_WAIT_1),
        (state.FIN_WAIT_1, state.RCV_FIN, state.CLOSING),
        (state.FIN_WAIT_2, state.RCV_FIN, state.TIME_WAIT),
        (state.CLOSE_WAIT, state.CLOSE, state.LAST_ACK),
        (state.TIME_WAIT, state.TIMEOUT_2MSL, state.CLOSED),
    ],
)
def test_transition(src: str, event: str, dst: str) -> None:
    assert state.transition(src, event) == dst


def test_a_missing_row_is_a_bug_not_a_peer_error() -> None:
    with pytest.raises(state.TransitionError, match="no transition from TIME_WAIT on close"):
        state.transition(state.TIME_WAIT, state.CLOSE)


def test_docs_are_generated_from_the_table() -> None:
    assert DOCS.read_text() == state.describe(), (
        "regenerate: python -m summon.net.tcp.state > docs/tcp-states.md"
    )


def test_no_code_outside_the_table_assigns_a_state() -> None:
    """h11's rule 1: every state change is a lookup in TRANSITIONS."""
    import re

    package = Path(state.__file__).parent
    for source in sorted(package.glob("*.py")):
        for line in source.read_text().splitlines():
            if re.search(r"\.state = ", line):
                assert "st.transition(" in line or line.strip() == "self.state = st.CLOSED", (
                    f"{source.name}: {line.strip()}"
                )
