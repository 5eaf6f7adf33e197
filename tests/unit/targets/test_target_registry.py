"""The target registry: names, lazy classes, options, the default, and plug-in targets.

A target registered at run time (the fake one) is offered by the CLI and accepted by the
gateway config with no edit anywhere else: that is the plug-in promise.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from fakes import FakeTarget

from summon import targets
from summon.cli.main import cli
from summon.errors import UserError
from summon.gateway.config import parse


def test_the_built_in_targets_are_registered() -> None:
    assert {"unix", "sandbox", "qemu"} <= set(targets.names())
    assert targets.target_class("qemu").name == "qemu"


def test_an_unknown_target_is_one_clear_error() -> None:
    with pytest.raises(targets.UnknownTarget, match="unknown target 'xen'; targets: sandbox"):
        targets.get("xen")


def test_an_option_is_refused_by_a_target_that_does_not_take_it() -> None:
    with pytest.raises(
        UserError, match=r"--accel is not an option of target unix \(it is for: qemu\)"
    ):
        targets.get("unix", accel="tcg")
    assert targets.get("unix", accel=None).name == "unix"  # unset options are no options
    # The off side of a flag pair is named as given: it said "--snapshot" of --no-snapshot.
    with pytest.raises(UserError, match=r"^--no-snapshot is not an option of target unix \("):
        targets.get("unix", snapshot=False)


def test_a_target_module_is_imported_only_when_used() -> None:
    import subprocess

    code = (
        "import sys, summon.targets as t; t.names(); "
        "print(sorted(m for m in sys.modules if m.startswith('summon.targets.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_choosing_the_default_imports_no_vm_or_browser_machinery() -> None:
    """`summon run IMAGE` asks every target; the qemu and browser ones answer from their
    packages, and each answer is the one their class gives."""
    import subprocess

    code = (
        "import sys, summon.targets as t; t.choose_default(); "
        "print(sorted(m for m in sys.modules if m.startswith('summon.targets.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = ast.literal_eval(out.stdout)
    assert "summon.targets.qemu" in loaded and "summon.targets.browser" in loaded
    assert "summon.targets.qemu.target" not in loaded
    assert "summon.targets.qemu.instance" not in loaded
    assert "summon.targets.browser.target" not in loaded
    for name in targets.names():
        assert targets._preference(name) == targets.target_class(name).default_preference()


def test_the_default_is_the_target_that_ranks_itself_highest(
    fake_target: type[FakeTarget], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FakeTarget, "default_preference", classmethod(lambda cls: (99, "fastest")))
    assert targets.choose_default() == ("fake", "fastest")
    monkeypatch.setattr(FakeTarget, "default_preference", classmethod(lambda cls: (0, "too slow")))
    name, why = targets.choose_default()
    assert name != "fake" and "too slow" in why


def test_a_registered_target_is_offered_by_the_cli(fake_target: type[FakeTarget]) -> None:
    runner = CliRunner()
    helped = runner.invoke(cli, ["run", "--help"])
    assert "fake" in helped.output
    # Accepted as a choice: the run gets as far as looking the image up.
    result = runner.invoke(cli, ["run", "--target", "fake", "no-such-image"])
    assert result.exit_code == 2
    assert "no image 'no-such-image'" in result.output
    refused = runner.invoke(cli, ["run", "--target", "fakes", "no-such-image"])
    assert refused.exit_code == 2 and "'fakes' is not one of" in refused.output


def test_a_registered_target_and_its_options_are_accepted_by_the_gateway_config(
    fake_target: type[FakeTarget], tmp_path: Path
) -> None:
    doc = {"service": [{"name": "web", "image": "x", "target": "fake", "options": {"speed": "hi"}}]}
    config = parse(doc, tmp_path / "g.toml")
    assert config.services[0].target == "fake"
    assert dict(config.services[0].options) == {"speed": "hi"}
    doc["service"][0]["options"] = {"accel": "tcg"}
    with pytest.raises(UserError, match=r"options\.accel: not an option of target fake"):
        parse(doc, tmp_path / "g.toml")


def test_the_gateway_config_refuses_a_bad_option_value_when_loaded(tmp_path: Path) -> None:
    """Checked by the target itself at load, not at the service's first boot."""
    doc = {"service": [{"name": "vm", "image": "x", "target": "qemu", "options": {"accel": "hvf"}}]}
    with pytest.raises(
        UserError, match=r"g\.toml: service 'vm': options: --accel hvf: choose one of kvm, tcg"
    ):
        parse(doc, tmp_path / "g.toml")
    doc["service"][0]["options"] = {"accel": "tcg"}
    assert dict(parse(doc, tmp_path / "g.toml").services[0].options) == {"accel": "tcg"}


def test_export_formats_route_to_the_target_that_provides_them(
    fake_target: type[FakeTarget], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FakeTarget, "export_formats", {"fakefmt": "a fake format"})
    assert targets.export_formats()["fakefmt"] == "fake"
    runner = CliRunner()
    result = runner.invoke(cli, ["export", "x", "--as", "nope", "-o", "/nonexistent/out"])
    assert result.exit_code == 2
    assert "--as nope: no target exports that format; known:" in result.output
    assert "fakefmt (a fake format)" in result.output
