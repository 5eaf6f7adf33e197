"""A fake image root for running the runtime as images run it: python -S -E boot.py.

The root holds boot.py and the summon package where an image has them (/usr/lib/summon),
an /etc/summon/app.json, the app under /app and data under /data; SUMMON_ROOT points at it.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
SUMMON_PACKAGE = REPO / "src" / "summon"
EXAMPLES = REPO / "examples"
# The interpreter images run; the test's own one if the host lacks it.
IMAGE_PYTHON = "/usr/bin/python3.11" if Path("/usr/bin/python3.11").exists() else sys.executable
TIMEOUT = 30.0


class ImageRoot:
    """A folder laid out like an image's root filesystem, and ways to run its app."""

    def __init__(self, root: Path) -> None:
        self.root = root
        lib = root / "usr/lib/summon"
        lib.mkdir(parents=True)
        shutil.copy(SUMMON_PACKAGE / "runtime" / "boot.py", lib / "boot.py")
        (lib / "summon").symlink_to(SUMMON_PACKAGE)
        (lib / "site").mkdir()
        for folder in ("etc/summon", "app", "data", "proc", "dev", "tmp"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        self.processes: list[subprocess.Popen[str]] = []

    @property
    def boot(self) -> Path:
        return self.root / "usr/lib/summon/boot.py"

    def app(self, files: dict[str, str]) -> None:
        """Write the app's files under /app (name -> source)."""
        for name, text in files.items():
            path = self.root / "app" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)

    def data(self, name: str, files: dict[str, bytes]) -> None:
        """Write a data folder /data/<name>."""
        for key, value in files.items():
            path = self.root / "data" / name / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(value)

    def link(self, image_path: str, target: Path) -> None:
        """Make image_path (absolute) a symbolic link to a host folder or file."""
        path = self.root / image_path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_dir() and not path.is_symlink():
            path.rmdir()
        path.symlink_to(target)

    def vendor(self, package: str) -> None:
        """Make a package of the test's own environment importable from /usr/lib/summon/site."""
        module = __import__(package)
        assert module.__file__ is not None
        self.link(f"/usr/lib/summon/site/{package}", Path(module.__file__).parent)

    def config(self, entry: str | dict[str, str], **fields: Any) -> dict[str, Any]:
        """Write /etc/summon/app.json; entry is "module:function", a script path, or a dict."""
        if isinstance(entry, str):
            if ":" in entry:
                module, _, function = entry.partition(":")
                entry = {"kind": "function", "module": module, "function": function}
            else:
                entry = {"kind": "script", "path": entry}
        doc: dict[str, Any] = {
            "name": "test",
            "manifest": "[tool.summon]",  # as a build from a pyproject.toml records it
            "entry": entry,
            "path": ["/app", "/usr/lib/summon/site"],
            "data": {},
            "network": "socket",
            "ports": [],
            "env": {},
            "args": [],
        }
        doc.update(fields)
        (self.root / "etc/summon/app.json").write_text(json.dumps(doc, sort_keys=True))
        return doc

    def environ(self, env: dict[str, str] | None = None) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SUMMON_ROOT": str(self.root)} | (
            env or {}
        )

    def argv(self, *args: str, prefix: tuple[str, ...] = ()) -> list[str]:
        return [*prefix, IMAGE_PYTHON, "-S", "-E", str(self.boot), *args]

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the image's app to the end."""
        return subprocess.run(
            self.argv(*args),
            env=self.environ(env),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
        )

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start the image's app; the fixture kills it at the end of the test if need be."""
        process = subprocess.Popen(
            self.argv(*args),
            env=self.environ(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            preexec_fn=_default_signals,
        )
        # Bytes left over from an earlier process of the same pid (pids are reused) are not
        # this one's: its first line would be a dead process's.
        _pending.pop(process.pid, None)
        self.processes.append(process)
        return process


def _default_signals() -> None:
    """The app starts as from a terminal: a shell runs `pytest &` with SIGINT and SIGQUIT
    ignored, which every child would inherit (and Ctrl-C or Ctrl-\\ would not stop it)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


# Bytes read from each process's stdout past the last line handed out.
_pending: dict[int, bytes] = {}


def read_line(process: subprocess.Popen[str], timeout: float = TIMEOUT) -> str:
    """The next line the process writes to stdout, or fail after `timeout` seconds."""
    assert process.stdout is not None
    fd = process.stdout.fileno()  # read below the text wrapper, whose buffer select can't see
    buffered = _pending.get(process.pid, b"")
    deadline = time.monotonic() + timeout
    while b"\n" not in buffered:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no line from the app within {timeout} s: {buffered!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                process.wait(timeout=TIMEOUT)
                err = process.stderr.read() if process.stderr else ""
                raise AssertionError(f"app exited with {process.returncode} first: {err}")
            buffered += chunk
    line, _, rest = buffered.partition(b"\n")
    _pending[process.pid] = rest
    return line.decode()


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str, str]:
    """Send `sig`; return (exit status, the rest of stdout, stderr)."""
    process.send_signal(sig)
    out, err = process.communicate(timeout=TIMEOUT)
    return process.returncode, _pending.pop(process.pid, b"").decode() + out, err


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that nobody listens on just now."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
