"""Sealing in a microVM: the image's kernel has seccomp, and the runtime seals itself there.

There is no outer sandbox in a VM: the seal's own filter is the only one, and PID 1 is root.
The app checks the kernel's view (Seccomp: 2, one filter, no_new_privs), tries what the seal
refuses, and the VM still powers off with the app's status (the runtime's shutdown goes
through ctypes after the seal). The kernel is built once per fragment set into the user's
cache, as tests/integration/test_qemu.py does.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from fakes import Output

from summon.build import kernel
from summon.build.boot import ensure_boot_artifact
from summon.build.image import build
from summon.store import Store
from summon.targets.base import RunSpec
from summon.targets.qemu import QemuTarget

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("qemu-system-x86_64") is None, reason="apt-get install qemu-system-x86"
    ),
    pytest.mark.skipif(
        not kernel.SOURCE_TARBALL.exists(), reason="apt-get install linux-source-6.1"
    ),
]

APP = {
    "pyproject.toml": """
        [project]
        name = "vmseal"
        version = "0"

        [tool.summon]
        entry = "check.py"
        network = "none"
        memory = "48M"
    """,
    "check.py": """
        import mmap, os, sys
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("Seccomp", "NoNewPrivs")):
                    print(line.split()[0], line.split()[1])
        # A constant string is learned by the build's recording run (docs/sealing.md, "Code
        # the build saw") and runs sealed; one made at run time never was and is refused.
        for name, action in [("learned", lambda: exec("1")),
                             ("exec", lambda: exec(f"x = {os.urandom(8).hex()!r}")),
                             ("write", lambda: open("/etc/x", "w")),
                             ("mmap_exec", lambda: mmap.mmap(-1, 4096, prot=7)),
                             ("memfd", lambda: os.memfd_create("x")),
                             ("tmp", lambda: open("/tmp/ok", "w").close())]:
            try:
                action()
                print(name, "ok")
            except OSError as e:
                print(name, "refused", e.errno)
        # ctypes objects the runtime made before the seal (mount, reboot): nothing that
        # writes memory may be left where code after the seal finds it
        victim = bytes(range(32))
        memmove = getattr(sys.modules.get("ctypes"), "memmove", None)
        if memmove is not None:
            memmove(id(victim) + 32, b"X", 1)
        print("memmove", "wrote" if victim[:1] == b"X" else "absent")
        libc = getattr(sys.modules.get("summon.runtime.vm"), "_libc", None)
        print("libc", ",".join(sorted(k for k in vars(libc) if not k.startswith("_"))))
        sys.exit(3)
    """,
}


def test_a_vm_seals_itself_and_still_powers_off(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    for name, text in APP.items():
        (app / name).write_text(textwrap.dedent(text).lstrip())
    store = Store(tmp_path / "store")
    image, _ = ensure_boot_artifact(build(app, store, "vmseal:test").image)
    fragments = kernel.select_fragments(image.app_config())
    assert "seccomp" in fragments
    out = Output()
    spec = RunSpec.for_image(image, name="vmseal", state_dir=tmp_path / "state")
    instance = QemuTarget(store=store, output=out).start(spec)
    status = instance.wait(120)
    text = out.text()
    assert status == 3, text  # the app's own status: the shutdown worked after the seal
    lines = set(text.splitlines())
    assert {"Seccomp: 2", "Seccomp_filters: 1", "NoNewPrivs: 1"} <= lines, text
    assert {"learned ok", "exec refused 1", "write refused 1", "mmap_exec refused 1",
            "memfd refused 1", "tmp ok"} <= lines, text  # fmt: skip
    assert any("summon: sealed: refused" in line and "seal.code" in line for line in lines)
    # Rule seal.ctypes: the runtime's own ctypes (a VM's init mounts and reboots with it)
    # leaves no memmove behind, and its libc only the shutdown's two calls.
    assert {"memmove absent", "libc reboot,umount"} <= lines, text
