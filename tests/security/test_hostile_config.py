"""An image config that lies: refused in one line, before anything runs.

The sandbox's profile takes an image's recorded allowlist from its config (the label
dev.summon.syscalls). A config that named a call no sandbox allows (ptrace, mount, setns,
keyctl...) made `summon run` end in a traceback (a ValueError from the profile, "internal
error") instead of one line: no build records such a call, so the image is refused by the
rule that denies it (seccomp.deny), with exit status 2.

The host reads the image's /etc/summon/app.json too (memory, pids, network, env, volumes...):
a hand-made one of another shape ('env' a list, 'memory' a word) was read as it came, and
`summon run` ended in an internal error. It is checked as the runtime checks it, plus what
the host reads, and refused in one line (rule app-config) with exit status 2.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from fakes import layer_image
from hostile_apps import needs_sandbox
from summon_cli import Summon

from summon.errors import UserError
from summon.store import Store
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


def _image(store: Store, ref: str, app: Any) -> None:
    """An image of one layer: the folders a root needs and this app.json."""
    body = json.dumps(app).encode()
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for folder in ("app", "dev", "etc", "etc/summon", "proc", "sys", "tmp"):
                info = tarfile.TarInfo(folder)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            info = tarfile.TarInfo("etc/summon/app.json")
            info.size, info.mode = len(body), 0o644
            tar.addfile(info, io.BytesIO(body))
    layer_image(store, ref, buf.getvalue(), {"architecture": "amd64", "os": "linux", "config": {}})


ENTRY = {"kind": "script", "path": "/app/x.py"}
LIES = {
    "not-an-object": ([ENTRY], "must hold a JSON object"),
    "env-a-list": ({"entry": ENTRY, "env": ["A=1"]}, "'env' must be an object of strings"),
    "memory-a-word": ({"entry": ENTRY, "memory": "lots"}, "'memory' must be a whole number"),
    "memory-too-small": ({"entry": ENTRY, "memory": -1}, "'memory' must be a whole number"),
    "pids-a-word": ({"entry": ENTRY, "pids": "many"}, "'pids' must be a whole number"),
    "network-unknown": ({"entry": ENTRY, "network": "host"}, "'network' must be one of"),
    "secret-a-path": (
        {"entry": ENTRY, "secrets": ["../../etc/shadow"]},
        "'secrets' names '../../etc/shadow', not one path component",
    ),
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_an_app_json_of_another_shape_is_refused_in_one_line(summon: Summon, lie: str) -> None:
    app, said = LIES[lie]
    _image(Store(summon.store), f"lie:{lie}", app)
    r = summon("run", f"lie:{lie}", "--target", "unix")
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("summon: error:")]
    assert len(errors) == 1 and "internal error" not in r.stderr, r.stderr
    assert errors[0].startswith(f"summon: error: image lie:{lie}'s /etc/summon/app.json: ")
    assert said in errors[0] and "(rule app-config: " in errors[0], errors[0]
