"""The summon command's verbs: each one named in --help resolves, lazily loaded or not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from summon.cli.main import LAZY_COMMANDS, cli


def test_every_listed_command_resolves_to_itself() -> None:
    ctx = click.Context(cli)
    names = cli.list_commands(ctx)
    assert set(LAZY_COMMANDS) <= set(names)
    assert {"build", "run", "images", "inspect", "rmi", "doctor"} <= set(names)
    for name in names:
        command = cli.get_command(ctx, name)
        assert command is not None and command.name == name, name


def test_run_does_not_load_the_other_verbs_modules() -> None:
    code = (
        "import sys, summon.cli.main\n"
        "print(sorted(m for m in set(summon.cli.main.LAZY_COMMANDS.values()) if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_unknown_verb_is_a_usage_error() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "summon.cli.main", "frobnicate"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 2
    assert r.stderr == "summon: error: no such command 'frobnicate'. See 'summon --help'.\n"


def test_python_m_summon_is_the_summon_command() -> None:
    # A tree used from PYTHONPATH, uninstalled: `python3 -m summon` said "summon is a package
    # and cannot be directly executed".
    r = subprocess.run(
        [sys.executable, "-m", "summon", "frobnicate"], capture_output=True, text=True, check=False
    )
    assert r.returncode == 2
    assert r.stderr == "summon: error: no such command 'frobnicate'. See 'summon --help'.\n"


def test_logs_tail_takes_a_count_of_zero_or_more_or_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checked before the instance is looked up: the flag is the mistake, whatever the name.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    runner = CliRunner()
    for bad in ("-3", "some"):
        r = runner.invoke(cli, ["logs", "--tail", bad, "nobody"])
        assert r.exit_code == 2, r.output
        assert f"--tail {bad}: expected a number of lines (0 or more), or all" in r.output
    r = runner.invoke(cli, ["logs", "--tail", "0", "nobody"])
    assert r.exit_code == 2 and "no instance 'nobody'" in r.output


def _crash_log_of_a_bug() -> Path:
    """Run a command that raises; check its one line (exit 1) and return its crash log."""

    @click.command("boom")
    def boom() -> None:
        raise ZeroDivisionError("the bug")

    cli.add_command(boom)
    try:
        r = CliRunner().invoke(cli, ["boom"])
    finally:
        cli.commands.pop("boom")
    assert r.exit_code == 1
    line = r.output.strip().splitlines()[-1]
    assert "internal error: ZeroDivisionError: the bug (details in " in line
    return Path(line.rsplit("details in ", 1)[1].rstrip(")"))


def test_an_internal_failure_is_one_line_naming_its_crash_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug is still one line, exit 1, and the traceback is kept where the line says."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    log = _crash_log_of_a_bug()
    assert log.parent.parent == tmp_path / "summon" and "Traceback" in log.read_text()
    assert 'raise ZeroDivisionError("the bug")' in log.read_text()


def test_a_broken_state_folder_is_one_line_and_its_crash_log_goes_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """XDG_STATE_HOME naming a file: `summon ps` was an internal error whose crash log could
    not be written there either, so the user got a raw traceback."""
    afile = tmp_path / "afile"
    afile.write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(afile))
    r = CliRunner().invoke(cli, ["ps"])
    assert r.exit_code == 2, r.output
    assert r.output.strip().splitlines() == [
        f"summon: error: Not a directory: {afile}/summon/instances; summon keeps its state in "
        f"{afile}/summon: make that a folder it can write, or set XDG_STATE_HOME to one"
    ]
    log = _crash_log_of_a_bug()  # written elsewhere (a temporary folder)
    assert "Traceback" in log.read_text()
    log.unlink()


def test_an_empty_summon_store_is_unset_not_the_current_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from summon import paths

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.setenv("SUMMON_STORE", "")
    assert paths.store_dir() == tmp_path / "summon" / "store"


def test_a_closed_stdout_ends_the_command_quietly(tmp_path: Path) -> None:
    """`summon logs -f web | head -2`: head exits, the next write gets EPIPE. That ends the
    command as SIGPIPE ends cat (status 141, nothing said), not as an internal error."""
    code = (
        "import sys, click\n"
        "from summon.cli.main import cli\n"
        "@click.command('flood')\n"
        "def flood() -> None:\n"
        "    while True:\n"
        "        sys.stdout.write('x' * 4096 + '\\n')\n"
        "        sys.stdout.flush()\n"
        "cli.add_command(flood)\n"
        "cli(['flood'], prog_name='summon')\n"
    )
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(30) == 141, err
    assert err == b""
    assert not (tmp_path / "summon" / "logs").exists()  # no crash log


def test_ctrl_c_ends_a_streaming_verb_without_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`summon stats` and `summon logs -f` run until Ctrl-C: that is how they are meant to
    end, so no "error: interrupted" line (a build or a pull interrupted still says so)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    import summon.cli.instances as verbs

    monkeypatch.setattr(verbs.time, "sleep", interrupt)
    r = CliRunner().invoke(cli, ["stats"])
    assert r.exit_code == 130, r.output
    assert "error" not in r.output


def test_ps_shows_an_image_id_once_the_tag_has_moved(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from summon.cli import instances
    from summon.errors import UserError

    old, new = "sha256:" + "a" * 64, "sha256:" + "b" * 64

    class Store:
        def resolve(self, ref: str) -> tuple[str, SimpleNamespace]:
            if ref == "gone:1":
                raise UserError("no image")
            return ref, SimpleNamespace(digest=new)

    monkeypatch.setattr(instances, "open_store", Store)
    rows = [
        {"image": "web:1", "image_digest": new},  # the tag still names what runs
        {"image": "web:1", "image_digest": old},  # rebuilt since: the tag moved on
        {"image": "gone:1", "image_digest": old},  # untagged or removed since
    ]
    shown = instances._image_column(rows)
    assert shown["web:1", new] == "web:1"
    assert shown["web:1", old] == shown["gone:1", old] == "a" * 12


def test_arguments_for_a_target_that_cannot_give_them_are_one_line() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "summon.cli.main", "run", "x", "--target", "browser", "--", "-x"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "summon: error: ARGS '-x': target browser cannot give the app arguments "
        "(targets that can: sandbox, qemu, unix)"
    ]


def test_run_of_an_empty_image_name_builds_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Path("") is ".": `summon run ""` (an unset "$IMAGE" in a script) built and ran whatever
    # app folder the user stood in.
    app = tmp_path / "app"
    app.mkdir()
    (app / "summon.toml").write_text('entry = "app.py"\nnetwork = "none"\n')
    (app / "app.py").write_text("print('ran')\n")
    env = {
        **os.environ,
        "SUMMON_STORE": str(tmp_path / "store"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
    r = subprocess.run(
        [sys.executable, "-m", "summon.cli.main", "run", "", "--target", "unix"],
        capture_output=True,
        text=True,
        cwd=app,
        env=env,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "summon: error: IMAGE '': give an image's name or ID, or an app folder (. for this one)"
    ]
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("grace", ["nan", "inf", "1e308", "-1"])
def test_stop_takes_a_finite_grace_only(
    grace: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # -t nan and -t inf passed FloatRange(min=0): an internal error computing the deadline.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    r = CliRunner().invoke(cli, ["stop", "-t", grace, "nobody"])
    assert r.exit_code == 2, r.output
    assert "invalid value for '-t' / '--time'" in r.output
    assert "internal error" not in r.output


def test_ps_names_an_instance_whose_spec_is_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every listing left it out: a running one could be neither seen nor stopped by summon.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    folder = tmp_path / "summon" / "instances" / ("ab" * 32)
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text('{"name": ')
    r = CliRunner().invoke(cli, ["ps", "-a"])
    assert r.exit_code == 0, r.output
    assert (
        f"summon: warning: instance {'ab' * 6} is left out: {folder}/spec.json is damaged; "
        f"`summon rm -f {'ab' * 6}` removes it"
    ) in r.output


@pytest.mark.parametrize("verb", ["logs", "stop", "start", "inspect", "stats"])
def test_verbs_other_than_rm_name_a_damaged_instance_as_damaged(
    verb: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its ID was 'no instance', though ps named it: now each verb says what is wrong with it.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    folder = tmp_path / "summon" / "instances" / ("ab" * 32)
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text("\0\0\0")
    r = CliRunner().invoke(cli, [verb, "abab"])
    assert r.exit_code == 2, r.output
    assert r.output.strip() == (
        f"summon: error: instance {'ab' * 6} is damaged ({folder}/spec.json cannot be read): "
        f"`summon rm -f {'ab' * 6}` stops it and removes it"
    )


def test_rm_of_a_stopped_damaged_instance_removes_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    folder = tmp_path / "summon" / "instances" / ("ab" * 32)
    (folder / "logs").mkdir(parents=True)
    (folder / "spec.json").write_text('{"name": ')
    r = CliRunner().invoke(cli, ["rm", "abab", "ab" * 32])
    assert r.exit_code == 0, r.output
    assert r.output == "abab\n"  # once, though named twice
    assert not folder.exists()


@pytest.mark.parametrize("registry", ["", "host:5000/team"])
def test_logout_of_something_that_is_no_registry_says_so_as_login_does(
    registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # logout '' said "not logged in to  (...)": a registry named by nothing.
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    r = CliRunner().invoke(cli, ["logout", registry])
    assert r.exit_code == 2
    assert r.output.strip() == (
        f"summon: error: {registry!r}: give the registry as HOST or HOST:PORT, no path"
    )


def test_inspect_why_of_nothing_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `--why "$MODULE"` with the variable unset printed the whole report as if asked for it.
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    r = CliRunner().invoke(cli, ["inspect", "web", "--why", ""])
    assert r.exit_code == 2
    assert r.output.strip() == "summon: error: --why '': give a module name, such as --why ssl"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["logs", "web", "--tail", "٣"], "summon: error: --tail ٣: expected a number of lines"),
        (["logs", "web", "--tail", "1_0"], "summon: error: --tail 1_0: expected a number of"),
        (["stop", "-t", "٣", "web"], "invalid value for '-t' / '--time': '٣' is not a number"),
        (["restart", "-t", "1_0", "web"], "invalid value for '-t' / '--time': '1_0' is not a"),
        (["run", "--pids", "٣٢", "http"], "invalid value for '--pids': '٣٢' is not a number"),
        (["run", "-m", "٣٢M", "http"], "summon: error: --memory: '٣٢M' is not a size"),
        (["run", "--restart", "on-failure:٣", "-d", "http"], "--restart on-failure:٣: expected"),
        (["run", "-p", "١٢٧.0.0.1:80:80", "http"], "١٢٧.0.0.1 is not an IPv4 address"),
        (["kube", "http", "--replicas", "３"], "invalid value for '--replicas': '３' is not a"),
        (["kube", "http", "--port", "٨٠"], "invalid value for '--port': '٨٠' is not a number"),
        (["kernel", "build", "-j", "٣", "http"], "invalid value for '-j' / '--jobs': '٣' is not"),
    ],
)
def test_numbers_in_other_scripts_digits_are_refused(
    argv: list[str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # int() and float() read '٣' (Arabic-Indic) and '３' (fullwidth) as 3, and '1_0' as 10:
    # `run --pids ٣ http` ran an instance with 3 pids. Refused before anything is looked up.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 2, r.output
    assert said in r.output
    assert "internal error" not in r.output and "no instance" not in r.output
    assert not (tmp_path / "state" / "summon" / "instances").exists()


def test_key_generate_of_no_name_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `summon key generate "$NAME"` with the variable unset was an internal error (ValueError:
    # PosixPath('.') has an empty name) and a crash log.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    r = CliRunner().invoke(cli, ["key", "generate", ""])
    assert r.exit_code == 2, r.output
    assert r.output.strip() == (
        "summon: error: key generate '': give the key pair's name, such as ci-key"
    )
    assert list(tmp_path.iterdir()) == []  # no key, no crash log


@pytest.mark.parametrize(
    "spec",
    [
        '{"name": "web", "run": "x"}',
        '{"name": 5, "run": {}}',
        '{"name": "web", "image": "x", "run": {"name": "n", "image": "i", "rootfs": "/",'
        ' "app_config": {}}}',
        '{"name": "web", "run": {"name": "n", "image": "i", "rootfs": "/", "app_config": {},'
        ' "ports": [1]}}',
        '{"name": "web", "run": {}}',
    ],
)
def test_a_spec_of_another_shape_is_damaged_not_an_internal_error(
    spec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # JSON that parses but is not what `run -d` writes (edited by hand): ps, start, inspect
    # and rm were internal errors (AttributeError, TypeError), and ps listed nothing at all.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    folder = tmp_path / "summon" / "instances" / ("cd" * 32)
    (folder / "logs").mkdir(parents=True)
    (folder / "spec.json").write_text(spec)
    r = CliRunner().invoke(cli, ["ps", "-a"])
    assert r.exit_code == 0, r.output
    assert f"warning: instance {'cd' * 6} is left out: {folder}/spec.json is damaged" in r.output
    for verb in ("start", "inspect", "logs"):
        r = CliRunner().invoke(cli, [verb, "cdcd"])
        assert r.exit_code == 2, r.output
        assert r.output.startswith(f"summon: error: instance {'cd' * 6} is damaged"), r.output
    r = CliRunner().invoke(cli, ["rm", "cdcd"])
    assert r.exit_code == 0, r.output
    assert not folder.exists()


@pytest.mark.parametrize(
    ("registry", "said"),
    [
        ("127.0.0.1:99999", "'127.0.0.1:99999': 99999 is not a port number (1-65535)"),
        ("a:b:c", "'a:b:c' is not a registry host[:port]"),
    ],
)
def test_login_to_something_that_is_no_registry_is_refused_before_the_password(
    registry: str, said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A port past 65535 was an internal error; a bad host's line named the ref login makes
    # up ('a:b:c/summon/login:check'), after the password was read.
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    r = CliRunner().invoke(cli, ["login", registry, "-u", "me", "--password-stdin"], input="")
    assert r.exit_code == 2, r.output
    assert r.output.strip() == f"summon: error: {said}"
    assert not (tmp_path / "auth.json").exists()


def test_run_secret_mistakes_are_plain_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bad name's line was the repr of a KeyError ("\"secret name ... '\\\\' ...\""); the same
    # secret twice was taken, the last file silently winning.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    key = tmp_path / "key"
    key.write_text("s")
    r = CliRunner().invoke(cli, ["run", "-d", "--secret", f"../x={key}", "http"])
    assert r.exit_code == 2
    assert r.output.strip() == (
        f"summon: error: --secret ../x={key}: secret name '../x' must be one path component: "
        "no '/', '\\', NUL, '.' or '..'"
    )
    r = CliRunner().invoke(
        cli, ["run", "-d", "--secret", f"a={key}", "--secret", f"a={key}", "http"]
    )
    assert r.exit_code == 2
    assert r.output.strip() == "summon: error: --secret a: given twice; give each secret once"


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["-m", ""], "summon: error: --memory: '' is not a size such as \"64M\""),
        (["--restart", ""], "summon: error: --restart : expected no, on-failure, on-failure:N"),
    ],
)
def test_run_flags_given_empty_are_refused_not_defaulted(
    flags: list[str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `-m "$MEM"` with the variable unset ran the instance with the image's memory, and
    # `--restart "$POLICY"` with none: an empty value is a mistake, said before anything runs.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    r = CliRunner().invoke(cli, ["run", "-d", *flags, "http"])
    assert r.exit_code == 2, r.output
    assert r.output.startswith(said), r.output
    assert not (tmp_path / "state" / "summon" / "instances").exists()


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["build", ".", "-t", ""], "summon: error: -t '': give the image's NAME[:TAG]"),
        (["push", "http", ""], "summon: error: '' names no registry"),
        (["kube", "http", "--image", ""], "summon: error: --image '': give REGISTRY/NAME"),
    ],
)
def test_names_given_empty_are_refused_not_defaulted(
    argv: list[str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `build -t "$TAG"` with the variable unset built under the manifest's name:version,
    # `push http "$DEST"` pushed to where the image's name says, `kube --image ""` used
    # IMAGE's name: each as if the flag had not been given.
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    r = CliRunner().invoke(cli, argv)
    assert r.exit_code == 2, r.output
    assert r.output.startswith(said), r.output
    assert not (tmp_path / "store" / "index.json").exists()
