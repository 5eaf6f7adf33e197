"""summon run/build --env-file FILE: docker's env files, and one clear line for a bad one."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from summon.cli.envflags import parse_env
from summon.cli.main import cli
from summon.errors import UserError


def test_an_env_file_is_read_as_docker_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FROM_HOST", "host value")
    monkeypatch.setenv("HOME_DIR", "/root")
    env_file = tmp_path / "app.env"
    env_file.write_text(
        "# settings\n"
        "\n"
        "GREETING=hello world  \n"
        '  QUOTED="kept as written"\n'
        "EXPANDED=$HOME_DIR/x\n"
        "EMPTY=\n"
        "FROM_HOST\n"
        "WITH_EQUALS=a=b\r\n"
        "OVERRIDDEN=file\n"
    )
    env = parse_env(("OVERRIDDEN=flag",), (str(env_file),))
    assert env == {
        "GREETING": "hello world  ",
        "QUOTED": '"kept as written"',
        "EXPANDED": "$HOME_DIR/x",
        "EMPTY": "",
        "FROM_HOST": "host value",
        "WITH_EQUALS": "a=b",
        "OVERRIDDEN": "flag",  # -e wins over the file
    }


def test_a_later_env_file_wins_over_an_earlier_one(tmp_path: Path) -> None:
    first, second = tmp_path / "a.env", tmp_path / "b.env"
    first.write_text("A=1\nB=1\n")
    second.write_text("B=2\n")
    assert parse_env((), (str(first), str(second))) == {"A": "1", "B": "2"}


def run_cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(cli, list(args))
    return r.exit_code, r.output


@pytest.mark.parametrize("verb", ["run", "build"])
def test_a_missing_env_file_is_one_error_line(verb: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.env"
    status, output = run_cli(verb, str(tmp_path), "--env-file", str(missing))
    assert status == 2, output
    assert output.strip().splitlines() == [
        f"summon: error: --env-file {missing}: cannot read: No such file or directory"
    ]


@pytest.mark.parametrize("verb", ["run", "build"])
def test_an_empty_env_file_path_is_one_error_line(verb: str, tmp_path: Path) -> None:
    # `--env-file "$UNSET"` said "--env-file : cannot read: Is a directory".
    status, output = run_cli(verb, str(tmp_path), "--env-file", "")
    assert status == 2, output
    assert output.strip().splitlines() == [
        "summon: error: --env-file '': give a path (is a variable unset?)"
    ]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("BAD KEY=x", "'BAD KEY': expected KEY=VALUE with a valid variable name"),
        ("1ST=x", "'1ST': expected KEY=VALUE with a valid variable name"),
        (
            "export TOKEN=abc",
            "'export TOKEN': expected KEY=VALUE with a valid variable name (an env file is "
            "not a shell script: drop the `export`)",
        ),
        (
            "SUMMON_SURELY_UNSET_VAR",
            "SUMMON_SURELY_UNSET_VAR is not set in this environment; "
            "write SUMMON_SURELY_UNSET_VAR=VALUE",
        ),
    ],
)
def test_a_bad_env_file_line_is_named_by_file_and_line(tmp_path: Path, line: str, why: str) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text(f"# comment\nGOOD=1\n{line}\n")
    status, output = run_cli("run", "no-such-image", "--env-file", str(env_file))
    assert status == 2, output
    assert output.strip().splitlines() == [f"summon: error: --env-file {env_file}:3: {why}"]
    assert "abc" not in output  # a value is never shown: it may be a secret


@pytest.mark.parametrize(
    ("flag", "said"),
    [
        ("--env-file", "--env-file /dev/zero: over 1 MiB: not an env file"),
        ("--secret", "--secret k=/dev/zero: is a device, not a file"),
    ],
)
def test_an_endless_file_is_refused_not_read_forever(flag: str, said: str, tmp_path: Path) -> None:
    # `--env-file /dev/zero` (or a FIFO that never ends) read until memory ran out.
    value = "/dev/zero" if flag == "--env-file" else "k=/dev/zero"
    status, output = run_cli("run", str(tmp_path), flag, value)
    assert status == 2, output
    assert output.strip().splitlines() == [f"summon: error: {said}"]


def test_bytes_that_are_no_text_are_refused_not_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `-e NAME=$'\xff'` reached a sandboxed app as U+FFFD (runc's config is JSON text), and
    # ARGS likewise; an env file's such bytes were refused already ("not UTF-8 text").
    bad = b"\xff\xfe".decode("utf-8", "surrogateescape")  # as Python holds argv and environ
    said = " (an instance's environment and arguments are text on every target)"
    with pytest.raises(UserError) as refused:
        parse_env((f"SECRET={bad}",))
    assert str(refused.value) == f"-e SECRET: its value is not UTF-8 text{said}"  # no value
    monkeypatch.setenv("FROM_HOST", bad)
    with pytest.raises(UserError, match=r"^-e FROM_HOST: its value is not UTF-8 text \("):
        parse_env(("FROM_HOST",))
    env_file = tmp_path / "app.env"
    env_file.write_text("FROM_HOST\n")
    with pytest.raises(UserError) as refused:
        parse_env((), (str(env_file),))
    assert str(refused.value) == (
        f"--env-file {env_file}:1: FROM_HOST: its value here is not UTF-8 text{said}"
    )
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    r = CliRunner().invoke(cli, ["run", "--target", "unix", "http", "--", "ok", bad])
    assert r.exit_code == 2
    assert r.stderr == f"summon: error: ARGS: argument 2 is not UTF-8 text{said}\n"
    assert parse_env(("NAME=é ☃",)) == {"NAME": "é ☃"}  # text of any script is text
