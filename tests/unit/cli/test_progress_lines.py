"""summon's progress: a spinner on a terminal, plain step lines elsewhere."""

from __future__ import annotations

import io

import pytest

from summon.cli import output


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_dumb_terminal_gets_the_steps_as_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    # TERM=dumb: rich draws no spinner there, and a build showed no step at all until done.
    screen = Terminal()
    monkeypatch.setattr("sys.stderr", screen)
    monkeypatch.setenv("TERM", "dumb")
    with output.progress("building app") as step:
        step("reading the manifest")
        step("writing the image")
    assert screen.getvalue() == (
        "building app: reading the manifest\nbuilding app: writing the image\n"
    )


def test_push_and_pull_draw_bars_on_a_terminal_only_if_it_redraws(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from summon.cli.ship import _TransferView

    monkeypatch.setattr("sys.stderr", Terminal())
    monkeypatch.setenv("TERM", "xterm")
    assert _TransferView("pushing").progress is not None
    monkeypatch.setenv("TERM", "dumb")  # rich drew the bars only once all was done
    assert _TransferView("pushing").progress is None
