"""`summon run` flags that cannot both hold: one line, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from summon.cli.main import cli


@pytest.mark.parametrize("policy", ["always", "on-failure", "on-failure:3"])
def test_rm_with_a_restart_policy_is_refused(
    policy: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `run -d --rm --restart always` ran: the app was started again after each exit and its
    # instance never removed, --rm silently ignored (docker refuses the pair too).
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("SUMMON_STORE", str(tmp_path / "store"))
    r = CliRunner().invoke(cli, ["run", "-d", "--rm", "--restart", policy, "http"])
    assert r.exit_code == 2, r.output
    assert r.stderr == (
        f"summon: error: --rm and --restart {policy}: choose one (an instance removed when it "
        "exits is not started again)\n"
    )
    assert not (tmp_path / "state" / "summon" / "instances").exists()
    # --restart no is no policy: --rm holds (here the image is what is missing).
    r = CliRunner().invoke(cli, ["run", "-d", "--rm", "--restart", "no", "http"])
    assert r.exit_code == 2 and "no image 'http'" in r.stderr, r.output
