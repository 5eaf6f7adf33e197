"""What every benchmark module shares: the report table, units, and waiting for a first page."""

from __future__ import annotations

import compileall
import http.client
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HTTP_APP = ROOT / "examples" / "http"
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))


def compile_sources() -> None:
    """Byte-compile summon's source tree, as installing it does: this host sets
    PYTHONDONTWRITEBYTECODE, so an editable install would compile every module it imports at
    every start (~40 ms of `summon run`, and ~1 MB of the gateway's resident memory: the
    compiler's memory stays with the process), which no installed copy does."""
    compileall.compile_dir(str(ROOT / "src"), quiet=1)


@dataclass
class Row:
    what: str
    figure: str
    baseline: str
    ratio: float | None
    goal: str = ""


@dataclass
class Report:
    """The one table benchmarks/run.py prints: each figure beside its same-run baseline."""

    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else "-"
        print(f"  {row.what}: {row.figure} vs {row.baseline} = {ratio}", file=sys.stderr)

    def print(self) -> None:
        head = ("figure", "measured", "baseline (same run)", "ratio", "goal")
        table = [head] + [
            (r.what, r.figure, r.baseline, f"{r.ratio:.2f}" if r.ratio is not None else "-", r.goal)
            for r in self.rows
        ]
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        for i, row in enumerate(table):
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
            if i == 0:
                print("  ".join("-" * w for w in widths))
        for n in self.notes:
            print(f"- {n}")


def mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def ms(s: float) -> str:
    return f"{s * 1000:.0f} ms"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def first_response(port: int, deadline: float, host: str = "127.0.0.1") -> bytes:
    """The body of the first 200 answer to GET / on host:port, retrying until the deadline."""
    while True:
        try:
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.request("GET", "/")
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            if resp.status == 200:
                return body
        except (ConnectionError, OSError, http.client.HTTPException):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"no HTTP response on {host}:{port}")
        time.sleep(0.002)
