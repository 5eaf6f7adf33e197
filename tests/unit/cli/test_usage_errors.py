"""A usage error (unknown flag or verb, missing argument, bad value) is one line, status 2.

click printed four: "Usage: summon run [OPTIONS] ...", "Try 'summon run --help' for help.", a
blank line and "Error: No such option '--foo'."."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from summon.cli.main import cli


@pytest.fixture(autouse=True)
def _own_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))


def _one_line(argv: list[str]) -> str:
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 2, r.output
    assert r.stdout == "", r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["run", "x", "--workers", "4"],  # the app's flag, not summon's: it goes after --
            "run: no such option '--workers'. An argument for the app goes after --: "
            "summon run IMAGE -- --workers. See 'summon run --help'.",
        ),
        (["images", "--foo"], "images: no such option '--foo'. See 'summon images --help'."),
        (["run"], "run: missing argument 'IMAGE'. See 'summon run --help'."),
        (["frobnicate"], "no such command 'frobnicate'. See 'summon --help'."),
        (["--bogus", "ps"], "no such option '--bogus'. See 'summon --help'."),
        (
            ["run", "--target", "nope", "x"],
            "run: invalid value for '--target': 'nope' is not one of sandbox, qemu, unix, "
            "browser. See 'summon run --help'.",
        ),
        (
            ["volume", "create", "--x", "v"],
            "volume create: no such option '--x'. See 'summon volume create --help'.",
        ),
        (["volume", "frob"], "volume: no such command 'frob'. See 'summon volume --help'."),
        (
            ["images", "web"],  # a message ending in a parenthesis gets its full stop too
            "images: got unexpected extra argument (web). See 'summon images --help'.",
        ),
        (
            ["key", "generate"],
            "key generate: missing argument 'NAME'. See 'summon key generate --help'.",
        ),
    ],
)
def test_a_usage_error_is_one_summon_line_naming_the_verb_and_its_help(
    argv: list[str], line: str
) -> None:
    assert _one_line(argv) == f"summon: error: {line}"


def test_clicks_suggestion_stays_in_the_line() -> None:
    assert _one_line(["logs", "--folow", "web"]) == (
        "summon: error: logs: no such option '--folow'. Did you mean '--follow'? "
        "See 'summon logs --help'."
    )


def test_errors_click_raises_without_a_context_still_name_their_verb() -> None:
    # An option missing its value, and summon's own UsageError in a verb: click gives these
    # no context, and they said "Error: Option '--tail' requires an argument." of no verb.
    assert _one_line(["logs", "--tail"]) == (
        "summon: error: logs: option '--tail' requires an argument. See 'summon logs --help'."
    )
    assert _one_line(["volume", "create", "v", "--size"]) == (
        "summon: error: volume create: option '--size' requires an argument. "
        "See 'summon volume create --help'."
    )
    assert _one_line(["rmi"]) == (
        "summon: error: rmi: name an image to remove, or give --dangling. See 'summon rmi --help'."
    )


def test_help_is_still_help() -> None:
    r = CliRunner().invoke(cli, ["run", "--help"])
    assert r.exit_code == 0 and r.stdout.startswith("Usage: summon run [OPTIONS] IMAGE")
    # A group given no verb prints its help, as click does (NoArgsIsHelpError's own show).
    r = CliRunner().invoke(cli, ["volume"])
    assert "Usage: summon volume [OPTIONS] COMMAND [ARGS]..." in r.output
    assert "summon: error" not in r.output


def test_the_installed_command_says_it_too() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "summon", "run", "--nam", "web", "x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("summon: error: run: no such option '--nam'.")
    assert r.stderr.count("\n") == 1 and "'--name'" in r.stderr
