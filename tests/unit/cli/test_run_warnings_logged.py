"""What `summon run -d` warns of before the instance exists (a flag the target ignores) is in
the instance's log too: `summon logs` of it, days later, shows why its limit did not hold."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from summon.cli.main import cli
from summon.instances import state

EXAMPLES = Path(__file__).parents[3] / "examples"
IGNORED = (
    "summon: warning: --memory is ignored on target unix, a plain host process (development; "
    "no isolation)"
)


def test_a_detached_runs_warnings_reach_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # They reached `run -d`'s terminal only: `summon logs` began with the app's own output.
    for var, folder in (("SUMMON_STORE", "store"), ("XDG_STATE_HOME", "state"),
                        ("XDG_CACHE_HOME", "cache")):  # fmt: skip
        monkeypatch.setenv(var, str(tmp_path / folder))
    built = CliRunner().invoke(cli, ["build", str(EXAMPLES / "hello"), "-t", "hello:1", "-q",
                                     "--no-verify"])  # fmt: skip
    assert built.exit_code == 0, built.output
    r = CliRunner().invoke(cli, ["run", "-d", "--target", "unix", "--memory", "64M", "hello:1"])
    assert r.exit_code == 0, r.output
    assert r.stderr == IGNORED + "\n"
    folder = state.find(r.stdout.strip())
    _exited(folder)
    logs = CliRunner().invoke(cli, ["logs", folder.id])
    assert logs.stdout == f"{IGNORED}\nhello, world\n"
    # `summon start` runs it again under the same flags: the log says so again.
    assert CliRunner().invoke(cli, ["start", folder.id]).exit_code == 0
    _exited(folder)
    assert CliRunner().invoke(cli, ["logs", folder.id]).stdout == f"{IGNORED}\nhello, world\n" * 2
    CliRunner().invoke(cli, ["rm", folder.id])


def _exited(folder: state.InstanceFolder) -> None:
    deadline = time.monotonic() + 30
    while folder.state().get("status") != "exited":
        assert time.monotonic() < deadline, folder.state()
        time.sleep(0.05)
