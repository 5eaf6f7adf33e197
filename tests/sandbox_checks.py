"""Checks the sandbox's integration and security tests share: run to the end, nothing left."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from summon.targets.base import RunSpec
from summon.targets.sandbox import SandboxTarget
from summon.targets.sandbox.instance import SandboxInstance
from summon.targets.sandbox.netns import list_namespaces


def parse(output: str) -> dict[str, dict[str, Any]]:
    results = {}
    for line in output.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            results[entry["probe"]] = entry
    return results


def run_to_end(target: SandboxTarget, spec: RunSpec, timeout: float = 20) -> int:
    instance = target.start(spec)
    try:
        status = instance.wait(timeout)
        assert status is not None, f"app still running after {timeout}s"
        return status
    finally:
        instance.stop(grace=1)


def assert_all_gone(target: SandboxTarget, instance: SandboxInstance) -> None:
    assert target.root is not None
    listed = subprocess.run(
        ["runc", "--root", str(target.root), "list", "-q"], capture_output=True, text=True
    )
    assert instance.container_id not in listed.stdout.split(), "runc container left behind"
    assert instance.netns.name not in list_namespaces(), "netns left behind"
    assert not instance.bundle.exists(), "bundle left behind"
    assert not Path(f"/sys/fs/cgroup/memory/{instance.container_id}").exists(), "cgroup left"
    if instance.pid:
        assert not Path(f"/proc/{instance.pid}").exists(), "container process left behind"


