"""The instance verbs: ps, logs, start, stop, restart, rm, stats, and `inspect` of an
instance ID or name.

Parsing and output only: the work is in summon.instances. `summon inspect` (images.py) asks
inspect_instance before it looks for an image.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from summon.cli import numbers
from summon.cli.output import human, human_duration, notice, open_store, out, print_json
from summon.cli.ports import ports_shown
from summon.errors import UserError
from summon.instances import console, lifecycle, state
from summon.instances.state import InstanceFolder

if TYPE_CHECKING:
    pass


STATS_INTERVAL = 1.0
FIRST_SAMPLE = 0.5  # --no-stream: CPU% over this long


# --- status words ------------------------------------------------------------------------------


def status_text(st: dict[str, Any], now: datetime.datetime) -> str:
    """ps's STATUS: "Up 3 minutes", "Exited (1) 5 seconds ago", "Restarting (3) ..."."""

    def since(key: str) -> str:
        when = state.parse_time(st.get(key))
        return human_duration((now - when).total_seconds()) if when else "?"

    status = st.get("status")
    if status == "running":
        return f"Up {since('started_at')}"
    if status == "restarting":
        return f"Restarting ({_code_or_reason(st)}) {since('finished_at')} ago"
    if status == "exited":
        return f"Exited ({_code_or_reason(st)}) {since('finished_at')} ago"
    return "Created"


def _code_or_reason(st: dict[str, Any]) -> str:
    reason = str(st.get("reason") or "")
    if st.get("exit_code") is not None:
        if not reason.startswith("killed: "):
            return str(st["exit_code"])
        # "killed: out of memory (limit 64M)" -> "137: out of memory"
        return f"{st['exit_code']}: {reason.removeprefix('killed: ').split(' (', 1)[0]}"
    # "monitor died (killed by SIGKILL)" -> "monitor died"; "start failed: ..." -> "start failed"
    reason = reason or "unknown"
    return reason.split(":", 1)[0].split(" (", 1)[0]


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def describe(folder: InstanceFolder, st: dict[str, Any]) -> dict[str, Any]:
    """One instance as ps --json and inspect show it."""
    spec = folder.spec()
    run = spec.get("run", {})
    ports = [
        f"{p.get('host_addr', '127.0.0.1')}:{p['host_port']}->{p['guest_port']}/"
        f"{p.get('protocol', 'tcp')}"
        for p in run.get("ports", [])
    ]
    return {
        "id": folder.id,
        "short_id": folder.short_id,
        "name": folder.name,
        "image": spec.get("image", {}).get("ref", ""),
        "image_digest": spec.get("image", {}).get("digest", ""),
        "target": spec.get("target", ""),
        "restart_policy": spec.get("restart", "no"),
        "created": spec.get("created"),
        "status": st["status"],
        "status_text": status_text(st, _utcnow()),
        "exit_code": st.get("exit_code"),
        "reason": st.get("reason", ""),
        "restarts": st.get("restarts", 0),
        "started_at": st.get("started_at"),
        "finished_at": st.get("finished_at"),
        "pid": st.get("pid"),
        "monitor_pid": st.get("monitor_pid"),
        "ports": ports,
        "memory_limit": run.get("memory"),
    }


# --- commands ----------------------------------------------------------------------------------


@click.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="Show exited instances too.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="Print only the IDs, one a line: summon rm -f $(summon ps -aq).",
)
def ps(show_all: bool, as_json: bool, quiet: bool) -> None:
    """List instances (running ones; all with -a)."""
    if quiet and as_json:
        raise UserError("-q and --json: choose one (IDs one a line, or the JSON document)")
    rows = []
    for folder in state.all_instances():
        st = lifecycle.reconcile(folder)
        if show_all or st["status"] != "exited":
            rows.append(describe(folder, st))
    for folder in state.damaged_instances():
        _say_damaged(folder)
    if as_json:
        print_json(rows)
        return
    if quiet:
        print("".join(f"{r['short_id']}\n" for r in rows), end="")
        return
    table = Table(box=None, pad_edge=False)
    for col in ("ID", "NAME", "IMAGE", "TARGET", "STATUS", "RESTARTS", "PORTS"):
        table.add_column(col, no_wrap=True)
    shown = _image_column(rows)
    for r in rows:
        table.add_row(
            r["short_id"],
            r["name"],
            shown[r["image"], r["image_digest"]],
            r["target"],
            r["status_text"],
            str(r["restarts"]),
            ", ".join(ports_shown(r["ports"])),
        )
    out.print(table)


def _say_damaged(folder: state.InstanceFolder) -> None:
    """One line for an instance left out of ps: what is wrong, and how to be rid of it."""
    pid = folder.state().get("monitor_pid")
    running = folder.supervised() and isinstance(pid, int)
    rm = f"`summon rm -f {folder.short_id}`"
    how = (
        f"it still runs (monitor pid {pid}): {rm} stops it and removes it"
        if running
        else f"{rm} removes it"
    )
    notice(f"warning: instance {folder.short_id} is left out: {folder.spec_path} is damaged; {how}")


def _image_column(rows: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """ps's IMAGE for each (ref, digest): the ref the instance was started from while it still
    names the image the instance runs; once the tag has moved on (a rebuild, a pull) or is
    gone, the image's short ID, as `summon images` shows it."""
    shown: dict[tuple[str, str], str] = {}
    store = open_store() if rows else None
    for key in {(r["image"], r["image_digest"]) for r in rows}:
        ref, digest = key
        try:
            current = store.resolve(ref)[1].digest if store and digest else digest
        except UserError:
            current = ""
        shown[key] = ref if current == digest else digest.removeprefix("sha256:")[:12]
    return shown


@click.command()
@click.argument("instance")
@click.option("-f", "--follow", is_flag=True, help="Keep printing output until it exits.")
@click.option("--tail", default="all", metavar="N", help="Only the last N lines (default: all).")
def logs(instance: str, follow: bool, tail: str) -> None:
    """Print an instance's console output."""
    lines: int | None = None
    if tail != "all":
        try:
            lines = int(tail) if numbers.plain(tail) else -1
        except ValueError:
            lines = -1
        if lines < 0:
            raise UserError(f"--tail {tail}: expected a number of lines (0 or more), or all")
    folder = state.find(instance)
    live = folder.logs / console.LOG_NAME
    try:
        current = live.read_bytes()
        logged = True
    except FileNotFoundError:
        current, logged = b"", False
    old = b"" if lines is not None and current.count(b"\n") >= lines else _read_old(folder)
    sink = sys.stdout.buffer
    # To a terminal, the app's escape sequences are shown, not obeyed (console.Visible);
    # to a pipe or a file, its bytes go unchanged.
    shown = console.Visible() if sys.stdout.isatty() else None
    data = console.tail(old + current, lines)
    if not logged and not old and folder.spec().get("attached"):  # silence said nothing
        notice(
            f"{folder.name} ({folder.short_id}) ran in the foreground: its output went to "
            "the terminal it ran in, not to a log (run it with -d to keep its output)"
        )
    sink.write(shown.feed(data, final=not follow) if shown else data)
    sink.flush()
    if follow:
        with _until_ctrl_c():
            for chunk in console.follow(folder.logs, len(current), lambda: not folder.supervised()):
                sink.write(shown.feed(chunk) if shown else chunk)
                sink.flush()
            if shown:
                sink.write(shown.feed(b"", final=True))
                sink.flush()


@contextlib.contextmanager
def _until_ctrl_c() -> Iterator[None]:
    """Ctrl-C is how `logs -f` and `stats` are meant to end: status 130, no error line."""
    try:
        yield
    except KeyboardInterrupt:
        sys.exit(130)


def _read_old(folder: InstanceFolder) -> bytes:
    try:
        return (folder.logs / (console.LOG_NAME + ".1")).read_bytes()
    except FileNotFoundError:
        return b""


MAX_GRACE = 365 * 86400.0  # seconds: a year of grace is a typo already


def _a_number(value: float) -> float:
    if math.isnan(value):
        raise click.BadParameter("nan is not a number of seconds")
    return value


_GRACE = click.option(
    "-t",
    "--time",
    "grace",
    # A bound and a NaN check: -t inf and -t nan passed FloatRange(min=0) and were internal
    # errors when the deadline was computed.
    type=numbers.FloatRange(min=0, max=MAX_GRACE),
    callback=lambda ctx, param, value: _a_number(value),
    default=10.0,
    show_default=True,
    help="Seconds to wait after SIGTERM before killing it.",
)


@click.command()
@click.argument("instances", nargs=-1, required=True)
def start(instances: tuple[str, ...]) -> None:
    """Start exited instances again, in the background, as they were run.

    The same image (by digest, though its tag has moved since), target, ports, volumes,
    environment and restart policy; secrets are read again from their files. The signing
    policy of config.toml (verify_key) is checked again. One running already is left as it
    is.
    """
    for query, folder in _find_each(instances).items():  # a typo fails before any starts
        if folder.supervised():
            notice(f"{folder.name} ({folder.short_id}) is running already")
        else:
            _start_again(folder)
        out.print(query)


@click.command()
@click.argument("instances", nargs=-1, required=True)
@_GRACE
def restart(instances: tuple[str, ...], grace: float) -> None:
    """Stop instances (as `summon stop` does) and start them again (as `summon start`)."""
    for query, folder in _find_each(instances).items():
        lifecycle.stop(folder, grace)
        _start_again(folder)
        out.print(query)


def _start_again(folder: InstanceFolder) -> None:
    from summon.cli.ports import check_ports_free
    from summon.store.policy import config_rule, default_verify_key

    # As `summon run` checks them: a unix instance's app binds its own ports, and a taken one
    # was "started" (status 0) only to exit at once with a traceback in its log.
    check_ports_free(folder.run_spec().ports)

    if (key := default_verify_key()) is not None:
        from summon.store.image import Image
        from summon.store.signing import require_signature

        store = open_store()
        recorded = folder.spec().get("image") or {}
        img = Image.by_digest(store, str(recorded.get("digest")), str(recorded.get("ref")))
        require_signature(store, img.desc, img.ref, key, config_rule())
    lifecycle.start_again(folder)


@click.command()
@click.argument("instances", nargs=-1, required=True)
@_GRACE
def stop(instances: tuple[str, ...], grace: float) -> None:
    """Stop instances: SIGTERM to the app, SIGKILL after the grace period."""
    named = _find_each(instances)  # a typo fails before anything stops
    with ThreadPoolExecutor(max_workers=8) as pool:
        for query, _final in zip(
            named, pool.map(lambda f: lifecycle.stop(f, grace), named.values()), strict=True
        ):
            out.print(query)


@click.command()
@click.argument("instances", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True, help="Stop (kill) running instances first.")
def rm(instances: tuple[str, ...], force: bool) -> None:
    """Remove stopped instances and their state folders (logs included)."""
    damaged_ones: list[InstanceFolder] = []
    named = _find_each(instances, damaged_ones)  # a typo fails before any is removed
    for query, folder in named.items():
        if folder in damaged_ones:
            from summon.instances import damaged

            for what in damaged.remove(folder, force):
                notice(f"warning: instance {folder.short_id}: could not clean up {what}")
        else:
            lifecycle.remove(folder, force)
        out.print(query)


def _find_each(
    queries: tuple[str, ...], damaged: list[InstanceFolder] | None = None
) -> dict[str, InstanceFolder]:
    """The instance each query names, each instance once (under the first query naming it):
    `rm web web`, or a name and its ID, removes it once, not once and then 'no such'.
    damaged: a list to add instances whose spec is damaged to, found by ID rather than
    refused."""
    found: dict[str, InstanceFolder] = {}
    for query in queries:
        try:
            folder = state.find(query)
        except state.DamagedInstance as e:
            if damaged is None:
                raise
            folder = e.folder
            damaged.append(folder)
        if all(f.id != folder.id for f in found.values()):
            found[query] = folder
    return found


@click.command()
@click.argument("instances", nargs=-1)
@click.option("--no-stream", is_flag=True, help="Print one sample and exit.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def stats(instances: tuple[str, ...], no_stream: bool, as_json: bool) -> None:
    """Show memory and CPU use of running instances (or of those named)."""
    named = list(_find_each(instances).values())

    def current() -> list[InstanceFolder]:
        if named:
            return named
        return [f for f in state.all_instances() if lifecycle.reconcile(f)["status"] != "exited"]

    with _until_ctrl_c():
        _stream_stats(current, no_stream, as_json)


def _stream_stats(
    current: Callable[[], list[InstanceFolder]], no_stream: bool, as_json: bool
) -> None:
    before = {f.id: lifecycle.sample(f) for f in current()}
    time.sleep(FIRST_SAMPLE)
    while True:
        rows = []
        for folder in current():
            now = lifecycle.sample(folder)
            rows.append(_stats_row(folder, before.get(folder.id), now))
            before[folder.id] = now
        if as_json:
            print(json.dumps(rows, indent=2 if no_stream else None, sort_keys=True), flush=True)
        else:
            if out.is_terminal and not no_stream:
                out.clear()
            out.print(_stats_table(rows))
        if no_stream:
            return
        time.sleep(STATS_INTERVAL)


def _stats_row(
    folder: InstanceFolder, before: dict[str, Any] | None, now: dict[str, Any] | None
) -> dict[str, Any]:
    # The cap the target holds that memory to, as its monitor says: the sandbox's cgroup. A
    # QEMU process or a host process is held to none (a guest's RAM is not QEMU's resident
    # memory, which holds its translated code too): no limit and no percentage, rather than
    # a QEMU at "291%" of its guest's size.
    limit = now.get("memory_limit") if now is not None else None
    row: dict[str, Any] = {
        "id": folder.id,
        "name": folder.name,
        "running": now is not None,
        "memory_bytes": None,
        "memory_limit": limit,
        "memory_percent": None,
        "cpu_seconds": None,
        "cpu_percent": None,
        "network": {},
        "runtime": {},
    }
    if now is None:
        return row
    row["memory_bytes"] = now["memory_bytes"]
    row["cpu_seconds"] = now["cpu_seconds"]
    # network = "direct": summon.net's per-path counters (frames dropped and why, resets...).
    row["network"] = dict(now.get("network") or {})
    # The app's own figures (summon.runtime.stats): GC per generation, blocks, connections.
    row["runtime"] = dict(now.get("runtime") or {})
    if limit:
        row["memory_percent"] = round(100 * now["memory_bytes"] / limit, 2)
    if before is not None and now["clock"] > before["clock"]:
        used = now["cpu_seconds"] - before["cpu_seconds"]
        row["cpu_percent"] = round(max(used, 0.0) / (now["clock"] - before["clock"]) * 100, 2)
    return row


def _net_summary(counters: dict[str, int]) -> str:
    """Frames and segments dropped, and TCP retransmissions, of a direct-mode stack."""
    if not counters:
        return "-"
    drops = sum(n for name, n in counters.items() if name.endswith("__drop"))
    retransmits = sum(n for name, n in counters.items() if "retransmit" in name)
    return f"{drops} / {retransmits}"


def _app_summary(runtime: dict[str, Any]) -> tuple[str, str, str]:
    """(GC collections per generation, allocated blocks, open/total connections) or dashes."""
    # The app writes its figures (it may answer SIGQUIT itself): any of them may be missing.
    has_gc = all(f"gc{g}" in runtime for g in range(3))
    gc = "/".join(str(runtime[f"gc{g}"]) for g in range(3)) if has_gc else "-"
    blocks = f"{runtime['blocks']:,}" if "blocks" in runtime else "-"
    conns = f"{runtime.get('active', 0)}/{runtime['accepted']}" if "accepted" in runtime else "-"
    if "requests" in runtime:
        conns += f" ({runtime['requests']} req)"
    return gc, blocks, conns


def _stats_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False)
    columns = ("ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET DROPS / RETX",
               "GC 0/1/2", "BLOCKS", "CONNS")  # fmt: skip
    for col in columns:
        table.add_column(col, no_wrap=True)
    for r in rows:
        if not r["running"]:
            table.add_row(r["id"][: state.SHORT], r["name"], *["-"] * (len(columns) - 2))
            continue
        cpu = "-" if r["cpu_percent"] is None else f"{r['cpu_percent']:.2f}%"
        limit = human(r["memory_limit"]) if r["memory_limit"] else "-"
        mem_pct = "-" if r["memory_percent"] is None else f"{r['memory_percent']:.2f}%"
        table.add_row(
            r["id"][: state.SHORT],
            r["name"],
            cpu,
            f"{human(r['memory_bytes'])} / {limit}",
            mem_pct,
            _net_summary(r["network"]),
            *_app_summary(r.get("runtime") or {}),
        )
    return table


def inspect_instance(query: str, as_json: bool) -> bool:
    """`summon inspect` for an instance ID, prefix or name; False when none matches."""
    folder = state.lookup(query)
    if folder is None:
        return False
    st = lifecycle.reconcile(folder)
    doc = {
        **describe(folder, st),
        "state": st,
        "spec": folder.spec(),
        "folder": str(folder.path),
        "console_log": str(folder.logs / console.LOG_NAME),
        "monitor_log": str(folder.logs / "monitor.log"),
    }
    if as_json:
        print_json(doc)
        return True
    fields = [
        ("ID", doc["id"]),
        ("name", doc["name"]),
        ("image", f"{doc['image']} ({doc['image_digest']})"),
        ("target", doc["target"]),
        ("status", doc["status_text"]),
        ("reason", doc["reason"] or "-"),
        ("restart policy", doc["restart_policy"]),
        ("restarts", str(doc["restarts"])),
        ("pid", str(doc["pid"] or "-")),
        ("monitor pid", str(doc["monitor_pid"] or "-")),
        ("ports", ", ".join(ports_shown(doc["ports"])) or "-"),
        ("created", doc["created"]),
        ("started", doc["started_at"] or "-"),
        ("finished", doc["finished_at"] or "-"),
        ("folder", doc["folder"]),
        ("console log", doc["console_log"]),
    ]
    for key, value in fields:
        out.print(f"{key + ':':16}{value}")
    return True


COMMANDS = (ps, logs, stop, rm, stats)
