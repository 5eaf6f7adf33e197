"""An image config whose labels lie: refused in one line, before anything runs.

The sandbox's profile takes an image's recorded allowlist from its config (the label
dev.summon.syscalls). A config that named a call no sandbox allows (ptrace, mount, setns,
keyctl...) made `summon run` end in a traceback (a ValueError from the profile, "internal
error") instead of one line: no build records such a call, so the image is refused by the
rule that denies it (seccomp.deny), with exit status 2.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile_apps import needs_sandbox

from summon.errors import UserError
from summon.targets.base import RunSpec
from summon.targets.sandbox import seccomp
from summon.targets.sandbox.target import SandboxTarget


def test_a_label_naming_a_denied_call_is_refused_by_rule_seccomp_deny() -> None:
    for name in ("ptrace", "mount", "setns", "keyctl", "unshare", "execveat"):
        with pytest.raises(UserError) as info:
            seccomp.check_label("evil:1", ("read", "write", name))
        message = str(info.value)
        assert message.startswith("image evil:1 is refused: its config's syscall list")
        assert f"names {name!r}, which the sandbox never allows (rule seccomp.deny" in message
    # What builds record passes, and so does an image without a recorded list.
    seccomp.check_label("ok:1", seccomp.base_syscalls("socket"))
    seccomp.check_label("ok:1", None)


def test_the_sandbox_refuses_it_before_runc_runs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    spec = RunSpec(
        name="lying-label",
        image="evil:1",
        rootfs=tmp_path / "rootfs",
        app_config={"network": "socket"},
        state_dir=state,
        syscalls=("read", "write", "exit_group", "ptrace"),
    )
    with pytest.raises(UserError, match=r"names 'ptrace', which the sandbox never allows"):
        SandboxTarget(root=tmp_path / "runc").start(spec)
    assert not state.exists() and not (tmp_path / "runc").exists()


for _mark in needs_sandbox:
    test_the_sandbox_refuses_it_before_runc_runs = _mark(
        test_the_sandbox_refuses_it_before_runc_runs
    )
