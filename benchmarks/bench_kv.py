"""summon.kv's figures, each beside SQLite's from the same run, on the same disk (see run.py).

- commits/s: one small value (100 bytes) per commit, durable when the call returns (the
  journal's fdatasync), vs SQLite in WAL mode with synchronous=FULL doing one
  INSERT OR REPLACE per committed transaction; and, as the ceiling, a bare journal (one
  checksummed record and one fdatasync per commit, no Git object made). Short rounds (100
  commits) rotate between them, so that all see the same disk weather (a shared virtual
  disk's fdatasync swings tenfold within seconds here); figures are totals over all rounds.
- reads/s: get() of random keys vs SELECT by primary key, both warm.
- size after 10,000 commits: the repository folder (full history, after close, and after
  gc) vs the SQLite file (latest values only; WAL checkpointed at close).

Keys: 1,000 keys under 32 folders ("items/07/0423"), updated round-robin, as an app keeps
records in folders. A flat folder of 1,000 keys is measured too, as a note: Git rewrites
a folder's whole tree object at each commit, so very wide folders cost CPU per commit.

    python3 benchmarks/bench_kv.py [--dir DIR] [--commits 10000] [--rounds 100]

run(report) adds the rows to run.py's Report. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from common import Report, Row, mb

from summon import kv

KEYS = 1000
VALUE = 100
READS = 200_000


def _key(n: int, flat: bool) -> str:
    k = n % KEYS
    return f"items/{k:04d}" if flat else f"items/{k % 32:02d}/{k:04d}"


def _value(n: int) -> bytes:
    return (b"%08d " % n) * (VALUE // 9) + b"." * (VALUE % 9)


class BareJournal:
    """The ceiling: what one checksummed record and one fdatasync per commit cost in Python,
    with no Git object made (the journal alone, space reserved ahead as the store does)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        os.pwrite(self.fd, bytes(64 << 20), 0)
        os.fdatasync(self.fd)
        self.end = 0

    def commit(self, key: str, value: bytes) -> None:
        payload = key.encode() + value + bytes(200)  # about a store record's size
        record = struct.pack(">II", len(payload), zlib.crc32(payload)) + payload
        os.pwrite(self.fd, record, self.end)
        self.end += len(record)
        os.fdatasync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


class Sqlite:
    """The baseline: one table, WAL, synchronous=FULL, a transaction per write."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB)")

    def commit(self, key: str, value: bytes) -> None:
        self.db.execute("BEGIN")
        self.db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))
        self.db.execute("COMMIT")

    def get(self, key: str) -> bytes:
        row = self.db.execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return bytes(row[0])

    def close(self) -> None:
        self.db.close()


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name != "lock")


def _filesystem(path: Path) -> str:
    out = subprocess.run(
        ["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", str(path)],
        capture_output=True, text=True, check=False,
    ).stdout.split()
    return " ".join(out) or "unknown"


def _timed(n: int, fn: Callable[[int], object], start: int) -> float:
    t = time.perf_counter()
    for i in range(start, start + n):
        fn(i)
    return time.perf_counter() - t


def commits_and_size(
    report: Report, where: Path, commits: int, rounds: int, flat: bool = False
) -> tuple[kv.Store, Sqlite]:
    store_dir = where / ("kv-flat" if flat else "kv")
    store = kv.open_folder(str(store_dir))
    db = Sqlite(where / ("flat.db" if flat else "sqlite.db"))
    bare = BareJournal(where / "bare.journal")
    contenders: dict[str, Callable[[int], object]] = {
        "kv": lambda i: store.set(_key(i, flat), _value(i)),
        "sql": lambda i: db.commit(_key(i, flat), _value(i)),
        "bare": lambda i: bare.commit(_key(i, flat), _value(i)),
    }
    if flat:
        del contenders["bare"]
    spent = dict.fromkeys(contenders, 0.0)
    per_round = commits // rounds
    done = 0
    for r in range(rounds):
        count = per_round if r < rounds - 1 else commits - done
        # Rotate which goes first, so none always follows another's flushes.
        order = list(contenders)
        order = order[r % len(order) :] + order[: r % len(order)]
        for which in order:
            spent[which] += _timed(count, contenders[which], done)
        done += count
    bare.close()
    kv_rate, sql_rate = commits / spent["kv"], commits / spent["sql"]
    layout = "1,000 keys in one folder" if flat else "1,000 keys in 32 folders"
    if flat:
        report.notes.append(
            f"commits/s with {layout}: {kv_rate:.0f} vs SQLite {sql_rate:.0f} = "
            f"{kv_rate / sql_rate:.2f}x (each commit rewrites the 1,000-entry tree)"
        )
    else:
        report.add(
            Row(
                f"commits/s, {VALUE} B values, durable ({layout})",
                f"{kv_rate:.0f}/s",
                f"{sql_rate:.0f}/s SQLite WAL synchronous=FULL",
                kv_rate / sql_rate,
                ">= 1.0",
            )
        )
        bare_rate = commits / spent["bare"]
        report.add(
            Row(
                "  the ceiling: a bare journal (a record + fdatasync, no Git objects)",
                f"{bare_rate:.0f}/s",
                f"{sql_rate:.0f}/s SQLite",
                bare_rate / sql_rate,
            )
        )
    return store, db


def reads(report: Report, store: kv.Store, db: Sqlite) -> None:
    rng = random.Random(1)
    keys = [_key(rng.randrange(KEYS), False) for _ in range(READS)]
    for key in keys[:2000]:  # warm both
        store.get(key)
        db.get(key)
    best_kv = best_sql = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for key in keys:
            store.get(key)
        best_kv = min(best_kv, time.perf_counter() - t)
        t = time.perf_counter()
        for key in keys:
            db.get(key)
        best_sql = min(best_sql, time.perf_counter() - t)
    report.add(
        Row(
            "reads/s, get() of random keys (warm)",
            f"{READS / best_kv:,.0f}/s",
            f"{READS / best_sql:,.0f}/s SQLite SELECT",
            best_sql / best_kv,
        )
    )


def sizes(report: Report, where: Path, store: kv.Store, db: Sqlite, commits: int) -> None:
    store.close()
    db.close()
    folder = where / "kv"
    closed = _size(folder)
    with kv.open_folder(str(folder)) as again:
        t = time.perf_counter()
        again.gc()
        gc_time = time.perf_counter() - t
    packed = _size(folder)
    sql = sum(p.stat().st_size for p in where.glob("sqlite.db*"))
    report.add(
        Row(
            f"size after {commits:,} commits, after gc (whole history)",
            mb(packed),
            mb(sql) + " SQLite (latest values only)",
            packed / sql,
        )
    )
    report.notes.append(
        f"the repository before gc (batch packs, deltas within each batch): {mb(closed)}; "
        f"gc took {gc_time:.1f} s; git fsck and git log read it"
    )


def run(
    report: Report, commits: int = 10_000, rounds: int = 100, where: str | None = None
) -> None:
    base = Path(tempfile.mkdtemp(prefix="summon-bench-kv-", dir=where))
    try:
        fs = _filesystem(base)
        report.notes.append(f"kv figures on {base} ({fs}), the same folder for both")
        print(f"kv: {commits} commits in {rounds} alternating rounds...", file=sys.stderr)
        store, db = commits_and_size(report, base, commits, rounds)
        reads(report, store, db)
        sizes(report, base, store, db, commits)
        flat_commits = max(commits // 5, 100)
        flat_store, flat_db = commits_and_size(report, base, flat_commits, rounds, flat=True)
        flat_store.close()
        flat_db.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=None, help="where to put the stores (default: $TMPDIR)")
    parser.add_argument("--commits", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    report = Report()
    run(report, args.commits, args.rounds, args.dir)
    print()
    report.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
