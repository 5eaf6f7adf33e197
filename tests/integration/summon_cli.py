"""Drives the summon command in a subprocess against a home of its own, for integration tests.

Every test module that runs `summon` uses this one class, so they all isolate the store, the
state folder, the config and registry credentials the same way.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
APPS = Path(__file__).parent / "apps"

needs_sandbox = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runc") is None, reason="the sandbox needs root and runc"
)

# What of the machine's environment would leak into a test's summon: credentials, a store.
_PRIVATE = (
    "REGISTRY_AUTH_FILE",
    "DOCKER_CONFIG",
    "XDG_RUNTIME_DIR",
    "SUMMON_STORE",
    "SUMMON_KEY_PASSWORD",
)


class Summon:
    """`python -m summon.cli.main` with its own store, state, config and credentials."""

    def __init__(self, home: Path) -> None:
        self.home = home
        env = {k: v for k, v in os.environ.items() if k not in _PRIVATE}
        self.env = {
            **env,
            "HOME": str(home),  # no ~/.docker/config.json of the machine leaks in
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_STATE_HOME": str(home / "state"),
            "XDG_CONFIG_HOME": str(home / "config"),
            # The cache is the machine's (kernels take minutes to build), but snapshots are
            # signed with the state's host key: they stay with this state, out of the user's.
            "SUMMON_SNAPSHOTS": str(home / "snapshots"),
        }
        self.store = home / "data" / "summon" / "store"
        self.instances = home / "state" / "summon" / "instances"

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "summon.cli.main", *args]

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=ROOT,
        )

    def ok(self, *args: str, env: dict[str, str] | None = None) -> str:
        r = self(*args, env=env)
        assert r.returncode == 0, f"summon {' '.join(args)}: {r.stderr}"
        return r.stdout

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*args),
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def blobs(self) -> set[str]:
        folder = self.store / "blobs" / "sha256"
        return {p.name for p in folder.iterdir()} if folder.is_dir() else set()

    def tmp(self) -> list[str]:
        """What a build or pull left in the store's temporary folder (nothing, if all is well):
        its files (a live process, this test's own included, holds an empty folder there)."""
        tmp = self.store / ".tmp"
        return [str(p.relative_to(tmp)) for p in tmp.rglob("*") if not p.is_dir()]

    def index(self) -> list[dict[str, Any]]:
        path = self.store / "index.json"
        return list(json.loads(path.read_text())["manifests"]) if path.exists() else []

    def digest(self, ref: str) -> str:
        listing = json.loads(self.ok("images", "--json"))
        return str(next(r["digest"] for r in listing if r["ref"] == ref))

    def auth_file(self, registry: str, user: str, password: str) -> dict[str, str]:
        """Credentials for registry in an auth.json of this home; the env that points at it."""
        path = self.home / "auth.json"
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        path.write_text(json.dumps({"auths": {registry: {"auth": token}}}))
        return {"REGISTRY_AUTH_FILE": str(path)}

    def ps(self) -> dict[str, dict[str, Any]]:
        """`ps -a --json`, by name."""
        return {row["name"]: row for row in json.loads(self.ok("ps", "-a", "--json"))}

    def inspect(self, ref: str) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.ok("inspect", ref, "--json"))
        return doc


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str, deadline: float) -> bytes:
    """The body at url, retrying while the app starts, until the deadline."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return bytes(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def get(url: str, deadline: float) -> str:
    return fetch(url, deadline).decode()


def answer(port: int, path: str) -> tuple[int, str]:
    """(status, body) of GET path on 127.0.0.1:port, an error status included (no retry)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
