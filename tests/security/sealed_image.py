"""A sandboxed image root with summon's runtime in it, to run hostile apps as images run them.

conftest.build_test_rootfs lays out the host's python3.11 and stdlib; this adds the summon
package and boot.py under /usr/lib/summon and an /etc/summon/app.json per run, so the app
starts through the real runtime (python -S -E boot.py): warm-up, seal, devices, shutdown.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox_checks import parse, run_to_end

from summon.targets.base import IMAGE_ARGV, PortForward, RunSpec
from summon.targets.sandbox import SandboxTarget

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    """What one run printed: the probes' JSON lines and every other line."""

    status: int
    output: str
    results: dict[str, dict[str, Any]] = field(default_factory=dict)

    def lines(self, prefix: str) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith(prefix)]


class SealedImage:
    """An image root (from conftest.build_test_rootfs) with the runtime and one app at a time."""

    def __init__(self, root: Path, state: Path) -> None:
        self.root = root
        self.state = state
        lib = root / "usr/lib/summon"
        lib.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "src/summon/runtime/boot.py", lib / "boot.py")
        if not (lib / "summon").exists():
            shutil.copytree(
                REPO / "src/summon", lib / "summon", ignore=shutil.ignore_patterns("__pycache__")
            )
        (lib / "site").mkdir(exist_ok=True)
        (root / "etc/summon").mkdir(parents=True, exist_ok=True)
        self.target = SandboxTarget(root=state / "runc")

    def app_json(
        self, entry: str, *, seal: dict[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        module, _, function = entry.partition(":")
        doc: dict[str, Any] = {
            "name": "hostile",
            "entry": {"kind": "function", "module": module, "function": function}
            if function
            else {"kind": "script", "path": f"/app/{entry}"},
            "path": ["/app", "/usr/lib/summon/site"],
            "data": {},
            "network": "socket",
            "ports": [],
            "env": {},
            "args": [],
            "volumes": [],
            "seal": seal if seal is not None else {"mode": "on", "preload": []},
        }
        doc.update(fields)
        return doc

    def run(
        self,
        files: dict[str, str],
        app: dict[str, Any],
        *,
        env: dict[str, str] | None = None,
        syscalls: tuple[str, ...] | None = None,
        ports: tuple[PortForward, ...] = (),
        timeout: float = 30,
    ) -> Run:
        """Write the app's files and app.json, run it to its end in the sandbox."""
        for name, text in files.items():
            path = self.root / "app" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        (self.root / "etc/summon/app.json").write_text(json.dumps(app))
        name = f"seal-{uuid.uuid4().hex[:10]}"
        out = self.state / f"{name}.out"
        with open(out, "wb") as f:
            spec = RunSpec(
                name=name,
                image="sealed-test",
                rootfs=self.root,
                app_config=app,
                argv=IMAGE_ARGV,
                env=dict(env or {}),
                network=app["network"],
                state_dir=self.state / name,
                stdout=f.fileno(),
                syscalls=syscalls,
                ports=ports,
            )
            status = run_to_end(self.target, spec, timeout=timeout)
        text = out.read_text()
        return Run(status, text, parse(text))


def make_sealed_image(tmp: Path) -> SealedImage:
    from testroot import build_test_rootfs

    root = build_test_rootfs(tmp / "rootfs")
    state = tmp / "state"
    state.mkdir()
    os.chmod(tmp, 0o755)
    return SealedImage(root, state)
