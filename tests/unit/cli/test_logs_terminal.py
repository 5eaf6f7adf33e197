"""`summon logs` and a hostile app's console: escapes are shown on a terminal, never obeyed.

Rule (instances/console.py, Visible): an app's output reaches a terminal only as text; its
control characters but \\n and \\t are shown as `\\x1b`-style escapes. Piped or redirected,
`summon logs` writes the app's bytes unchanged (`summon logs x > file` is exact). The
gateway's log quotes an app's last line the same way (console.shown).
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from summon.cli.main import cli
from summon.gateway.server import ImageLauncher
from summon.instances import console, state
from summon.targets.base import RunSpec

HOSTILE = (
    b"hello\tworld\n"
    b"\x1b]0;owned title\x07\x1b[2J\x1b[H\r"  # set the title, clear the screen, go home
    b"\x9b6n euro \xe2\x82\xac bad \xff\n"  # 8-bit CSI, UTF-8, a byte that is not UTF-8
)


@pytest.fixture
def instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    run = RunSpec(name="x", image="hostile", rootfs=Path("/"), app_config={})
    spec = {"run": state.encode_run_spec(run), "image": {"ref": "hostile", "digest": ""}}
    folder, lock_fd = state.create(spec, "hostile", "hostile", durable=False)
    os.close(lock_fd)  # no monitor: the instance is not supervised, `logs -f` drains and ends
    (folder.logs / console.LOG_NAME).write_bytes(HOSTILE)
    return "hostile"


def test_logs_of_a_foreground_run_say_where_its_output_went(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A foreground run's console is the terminal's, never logged: `summon logs` printed
    # nothing and exited 0, as if the app had been silent.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    run = RunSpec(name="x", image="hello", rootfs=Path("/"), app_config={})
    for name, attached in (("fg", True), ("bg", False)):
        spec = {"run": state.encode_run_spec(run), "image": {"ref": "hello", "digest": ""}}
        _, lock_fd = state.create({**spec, "attached": attached}, name, name, durable=False)
        os.close(lock_fd)
    r = CliRunner().invoke(cli, ["logs", "fg"])
    assert r.exit_code == 0, r.output
    assert r.output.splitlines() == [
        f"summon: fg ({folder_of('fg').short_id}) ran in the foreground: its output went to "
        "the terminal it ran in, not to a log (run it with -d to keep its output)"
    ]
    r = CliRunner().invoke(cli, ["logs", "bg"])  # detached, silent so far: nothing to say
    assert (r.exit_code, r.output) == (0, "")
    (folder_of("fg").logs / console.LOG_NAME).write_bytes(b"hi\n")  # `summon start fg` logs
    assert CliRunner().invoke(cli, ["logs", "fg"]).output == "hi\n"


def folder_of(name: str) -> state.InstanceFolder:
    return state.find(name)


def test_logs_piped_or_redirected_are_the_apps_bytes_exactly(instance: str) -> None:
    # rule: only a terminal gets the escapes shown; a pipe or a file gets the bytes
    for args in (["logs", instance], ["logs", "-f", instance]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert result.stdout_bytes == HOSTILE


def in_a_terminal(args: list[str]) -> bytes:
    """What `summon ARGS` writes to a terminal (a pty, its \\n made \\r\\n by the tty)."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "summon.cli.main", *args],
            stdin=subprocess.DEVNULL, stdout=follower, stderr=subprocess.PIPE,
        )  # fmt: skip
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else b""
        if proc.stderr:
            proc.stderr.close()
        return out
    finally:
        os.close(leader)


@pytest.mark.parametrize("follow", [False, True])
def test_logs_to_a_terminal_show_escapes_rather_than_obey_them(instance: str, follow: bool) -> None:
    # rule: an app's output reaches a terminal only as text (console.Visible)
    out = in_a_terminal(["logs", *(["-f"] if follow else []), instance])
    assert out == (
        b"hello\tworld\r\n"
        b"\\x1b]0;owned title\\x07\\x1b[2J\\x1b[H\\r"
        b"\\x9b6n euro \xe2\x82\xac bad \\xff\r\n"
    )


def test_colours_pass_and_every_other_sequence_is_shown() -> None:
    # uvicorn's coloured levels read as colour, whole even when cut between two chunks; a
    # sequence that only starts like one (cursor moves, a title) is shown.
    shown = console.Visible()
    out = shown.feed(b"\x1b[32mINFO\x1b[0m: up \x1b[3") + shown.feed(b"2;1mok\x1b[0m\n")
    assert out == b"\x1b[32mINFO\x1b[0m: up \x1b[32;1mok\x1b[0m\n"
    tail = console.Visible()
    assert tail.feed(b"a\x1b[2") + tail.feed(b"J\x1b[1;1H\x1b") + tail.feed(b"", final=True) == (
        b"a\\x1b[2J\\x1b[1;1H\\x1b"
    )


def test_a_character_split_between_chunks_is_kept_whole() -> None:
    shown = console.Visible()
    assert shown.feed(b"\xe2\x82") + shown.feed(b"\xac\x1b", final=True) == b"\xe2\x82\xac\\x1b"
    assert console.Visible().feed(b"\xe2\x82", final=True) == b"\\xe2\\x82"


def test_the_gateway_quotes_an_apps_last_line_with_escapes_shown(tmp_path: Path) -> None:
    # rule: an app's output reaches a terminal only as text (console.shown, the gateway's log)
    launcher = ImageLauncher.__new__(ImageLauncher)  # no store, no sweep: only its logs
    launcher.state_root = tmp_path
    (tmp_path / "gw-x-1-1.log").write_bytes(b"booting\nfatal \x1b]0;owned\x07 \x1b[31merror\n")
    assert launcher.last_line("gw-x-1-1") == "fatal \\x1b]0;owned\\x07 \\x1b[31merror"
