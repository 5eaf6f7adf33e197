"""The control port (ttyS1): the runtime writes its lines there alone, the host reads them
there alone, apart from the app's console. Real VMs: tests/integration/test_qemu*.py."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from summon.errors import UserError
from summon.runtime import stats, vm
from summon.targets.base import VM_CONTROL_LABEL, RunSpec
from summon.targets.qemu.instance import QemuInstance
from summon.targets.qemu.target import check_control

# What a guest does at its end, as QEMU passes it on: the app's output (a forged status
# among it) on the console, the runtime's status on the control port, then the kernel's
# restart line on the console.
FAKE_QEMU = r"""
import os, socket, sys, time
control = socket.socket(fileno=int(sys.argv[1]))
os.write(1, b"app: \x1esummon-exit-status: 0\r\n")
control.sendall(b"\x1esummon-exit-status: 9\r\n")
time.sleep(float(sys.argv[2]))
os.write(1, b"last words\r\nreboot: Restarting system\r\n")
"""


@pytest.fixture
def control(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The runtime's control port, a pipe: yields its read end."""
    r, w = os.pipe()
    monkeypatch.setattr(vm, "_control", w)
    yield r
    os.close(r)
    os.close(w)


def test_the_reader_takes_the_status_off_the_control_port_and_shows_the_apps_output(
    tmp_path: Path,
) -> None:
    """Rule: the exit status is the control port's; the console is the app's, all shown
    (its last words too, after the status), but for the kernel's restart line."""
    for delay in ("0", "0.2"):  # the console's end before or after the status is read
        state = tmp_path / delay
        state.mkdir()
        spec = RunSpec("t", "t", tmp_path, {}, ("x",), state_dir=state)
        out = io.BytesIO()
        instance = QemuInstance(spec, ["qemu"], out)
        instance._control, theirs = socket.socketpair()
        instance._proc = subprocess.Popen(
            [sys.executable, "-c", FAKE_QEMU, str(theirs.fileno()), delay],
            stdout=subprocess.PIPE,
            pass_fds=(theirs.fileno(),),
        )
        theirs.close()
        with instance._proc, instance._proc.stdout, instance._control:  # type: ignore[union-attr]
            instance._read_console()
        assert instance.console.status == 9
        assert out.getvalue() == b"app: \x1esummon-exit-status: 0\nlast words\n"


def test_the_runtimes_lines_go_to_the_control_port_never_to_stdout(
    control: int, capfd: pytest.CaptureFixture[str]
) -> None:
    vm.control_line(f"{vm.STATUS_PREFIX}3")
    stats.report(None, console=True)
    written = os.read(control, 4096).decode()
    status, figures, end = written.split("\n")
    assert status == f"{vm.MARK}{vm.STATUS_PREFIX}3" and end == ""
    assert figures.startswith(f"{vm.MARK}{stats.STATS_PREFIX}seq=")
    assert capfd.readouterr() == ("", "")


def test_without_a_control_port_the_runtime_says_nothing_on_the_console(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(vm, "_control", -1)
    vm.control_line(vm.READY)
    assert capfd.readouterr() == ("", "")


def test_the_control_port_is_a_second_uart_opened_before_the_app(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A guest without it stops at setup, saying why, rather than running unheard."""
    monkeypatch.setattr(vm, "CONTROL_PORT", "/nonexistent/ttyS1")
    with pytest.raises(vm.SetupError, match="cannot open the control port /nonexistent/ttyS1"):
        vm.open_control()
    assert vm.CONTROL_PORT.endswith("ttyS1")


@pytest.mark.parametrize("label", [None, "1", "x"])
def test_an_image_whose_runtime_reports_on_the_console_is_not_booted(label: str | None) -> None:
    """Rule: the qemu target boots only images whose runtime speaks on the control port (the
    label dev.summon.vm-control): an older one's lines on the console, the app's output
    could forge; and its host would wait the whole boot bound for a READY it never sees."""
    labels = {} if label is None else {VM_CONTROL_LABEL: label}
    old = SimpleNamespace(ref="old:1", config={"config": {"Labels": labels}})
    with pytest.raises(UserError, match=r"image old:1 was built by an older summon.*rebuild"):
        check_control(old)  # type: ignore[arg-type]
    new = SimpleNamespace(ref="new:1", config={"config": {"Labels": {VM_CONTROL_LABEL: "2"}}})
    check_control(new)  # type: ignore[arg-type]


def test_an_old_image_is_refused_before_its_boot_artifact_is_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Refused in prepare (by `summon run`, before an instance is recorded), not after a
    kernel built for it (ensure_boot_artifact) and a start that fails in the monitor."""
    from summon import targets
    from summon.build import boot

    def build_kernel(*args: object) -> None:
        raise AssertionError("a boot artifact made for an image the target refuses")

    monkeypatch.setattr(boot, "ensure_boot_artifact", build_kernel)
    old = SimpleNamespace(ref="old:1", config={"config": {"Labels": {}}})
    target = targets.get("qemu", snapshot=False)
    with pytest.raises(UserError, match=r"image old:1 was built by an older summon"):
        target.prepare(old, lambda step: None)  # type: ignore[arg-type]


class _Reset(Exception):
    """Where a guest's finish() would reset the VM."""


def test_the_runtimes_failure_goes_to_the_control_port_before_the_status(
    control: int, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Rule: the runtime's own reason for an end is the control port's (FAILED_PREFIX), so
    that the host's error names it whatever the app printed on the console."""
    from summon.runtime import init
    from summon.runtime.config import Fail

    def fail(argv: list[str]) -> int:
        raise Fail("the volume for /data is not attached\n(a second line)", 1)

    def reset(status: int) -> None:
        raise _Reset(status)

    libc = SimpleNamespace(umount=lambda path: 0, reboot=lambda how: 0)
    monkeypatch.setattr(vm, "_libc_call", lambda: libc)
    monkeypatch.setattr(vm, "active", True)
    monkeypatch.setattr(vm.os, "_exit", reset)
    monkeypatch.setattr(init, "run", fail)
    monkeypatch.setitem(sys.modules, "summon.runtime.vm", vm)
    with pytest.raises(_Reset):
        init.main()
    failed, status, end = os.read(control, 4096).decode().split("\n")
    assert (
        failed == f"{vm.MARK}{vm.FAILED_PREFIX}the volume for /data is not attached (a second line)"
    )
    assert status == f"{vm.MARK}{vm.STATUS_PREFIX}1" and end == ""
    assert "summon: the volume for /data is not attached" in capfd.readouterr().err
