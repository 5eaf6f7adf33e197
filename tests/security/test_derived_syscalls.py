"""Derived syscall allowlists: what a recording run notes, and what a derived profile refuses.

A tiny app is recorded under the recording profile (it must note what the app calls and
nothing it never calls), then run under the allowlist derived from that: a call outside it
is refused with EPERM and a console line naming the rule, while the same call with the name
added (the manifest's `syscalls`) or under the static allowlist goes through. The examples
are then built for real (the build's recording run) and served sealed under their derived
profiles, answering real clients (curl, dnspython).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sandbox_checks import parse

from summon.build.image import build
from summon.build.syscalls import static_with
from summon.store import Store
from summon.store.image import Image
from summon.targets.base import PortForward, RunSpec
from summon.targets.sandbox import SandboxTarget, seccomp
from summon.targets.sandbox.record import Recording, record_syscalls

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox target needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc missing: apt-get install runc"),
]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

TINY = r"""
import json, os, select, socket
os.urandom(16)
a, b = socket.socketpair()
poller = select.epoll()
poller.register(a.fileno(), select.EPOLLIN)
b.send(b"x")
poller.poll(1)
extra = os.environ.get("EXTRA")
if extra == "uname":
    try:
        os.uname()
        print(json.dumps({"probe": "uname", "ok": True, "errno": 0}), flush=True)
    except OSError as e:
        print(json.dumps({"probe": "uname", "ok": False, "errno": e.errno}), flush=True)
if extra == "eventfd":  # how libuv (uvloop), libev (gevent) and mio (tokio) wake a loop
    try:
        fd = os.eventfd(0)
        os.eventfd_write(fd, 3)
        print(json.dumps({"probe": "eventfd", "ok": os.eventfd_read(fd) == 3, "errno": 0}),
              flush=True)
    except OSError as e:
        print(json.dumps({"probe": "eventfd", "ok": False, "errno": e.errno}), flush=True)
if extra == "handler":  # what request handlers do that the build's one request may not
    try:
        import tempfile, time
        time.sleep(0.01)
        with tempfile.NamedTemporaryFile(dir="/tmp") as f:  # an upload spooled, removed
            f.write(b"x" * 4096)
            f.flush()
            os.fsync(f.fileno())
        os.rmdir(tempfile.mkdtemp(dir="/tmp"))
        ok = os.getuid() >= 0 and os.geteuid() >= 0 and len(os.sched_getaffinity(0)) > 0
        # An upload read whole grows a buffer past glibc's largest heap block (32 MiB): its
        # realloc moves the mapping with mremap.
        body = bytearray(34 << 20)
        body += b"x" * 4096
        ok = ok and len(body) == (34 << 20) + 4096
        print(json.dumps({"probe": "handler", "ok": ok, "errno": 0}), flush=True)
    except OSError as e:
        print(json.dumps({"probe": "handler", "ok": False, "errno": e.errno,
                          "what": str(e)}), flush=True)
if extra == "copy2":  # extended attributes and fallocate: the fallbacks of a plain fs
    try:
        import shutil
        with open("/tmp/src", "wb") as f:
            f.write(b"data")
        shutil.copy2("/tmp/src", "/tmp/dst")
        fd = os.open("/tmp/dst", os.O_RDWR)
        os.posix_fallocate(fd, 0, 8192)
        size = os.fstat(fd).st_size
        os.close(fd)
        print(json.dumps({"probe": "copy2", "ok": size == 8192, "errno": 0}), flush=True)
    except OSError as e:
        print(json.dumps({"probe": "copy2", "ok": False, "errno": e.errno}), flush=True)
if extra == "sched":  # libzmq's I/O thread sets its policy, and aborts if it cannot
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        rt = 0
    except OSError as e:
        rt = e.errno
    print(json.dumps({"probe": "sched", "ok": True, "errno": rt}), flush=True)
if extra == "getpriority":
    try:
        os.getpriority(os.PRIO_PROCESS, 0)
        print(json.dumps({"probe": "getpriority", "ok": True, "errno": 0}), flush=True)
    except OSError as e:
        print(json.dumps({"probe": "getpriority", "ok": False, "errno": e.errno}), flush=True)
if extra == "setsid":
    try:
        os.setsid()
        print(json.dumps({"probe": "setsid", "ok": True, "errno": 0}), flush=True)
    except OSError as e:
        print(json.dumps({"probe": "setsid", "ok": False, "errno": e.errno}), flush=True)
"""
CALLED = {"getrandom", "epoll_create1", "epoll_ctl", "epoll_wait", "socketpair", "sendto"}
NEVER_CALLED = {"uname", "sendfile", "flock", "mkdir", "rename", "listen", "accept4", "kill"}


def _spec(test_rootfs: Path, tmp: Path, source: str, **fields: Any) -> RunSpec:
    name = f"x_{uuid.uuid4().hex[:10]}"
    (test_rootfs / "app" / f"{name}.py").write_text(source)
    return RunSpec(
        name=name,
        image="test",
        rootfs=test_rootfs,
        app_config={"manifest": "[tool.summon]"},  # as a build from pyproject.toml says
        argv=("/usr/bin/python3.11", "-S", "-E", f"/app/{name}.py"),
        state_dir=tmp / name,
        **fields,
    )


def _run(target: SandboxTarget, spec: RunSpec, tmp: Path) -> tuple[int, str]:
    out = tmp / f"{spec.name}.out"
    with open(out, "wb") as f:
        instance = target.start(dataclasses.replace(spec, stdout=f.fileno()))
        try:
            status = instance.wait(20)
        finally:
            instance.stop(grace=1)
    assert status is not None
    return status, out.read_text()


def _record(spec: RunSpec, tmp: Path, target: SandboxTarget) -> tuple[Recording, Path]:
    """A recording run of spec to its end; (what it saw, the file holding its console)."""
    out = tmp / f"{spec.name}.recorded"
    with open(out, "wb") as f:
        rec = record_syscalls(
            dataclasses.replace(spec, stdout=f.fileno()),
            lambda instance: instance.wait(20),
            target=target,
        )
    return rec, out


@pytest.fixture(scope="module")
def recording(test_rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Recording:
    tmp = tmp_path_factory.mktemp("record")
    target = SandboxTarget(root=tmp / "runc")
    spec = _spec(test_rootfs, tmp, TINY)
    return record_syscalls(spec, lambda instance: instance.wait(20), target=target)


def test_the_recording_notes_what_the_app_calls(recording: Recording) -> None:
    assert recording.status == 0
    missing = CALLED - recording.syscalls
    assert not missing, f"the recording missed {sorted(missing)}: {sorted(recording.syscalls)}"


def test_the_recording_notes_nothing_the_app_never_calls(recording: Recording) -> None:
    assert not NEVER_CALLED & recording.syscalls, sorted(NEVER_CALLED & recording.syscalls)
    # The base set is allowed outright while recording: the gate never sees it.
    assert not set(seccomp.base_syscalls()) & recording.syscalls


def test_a_call_outside_the_derived_list_is_refused_with_its_rule(
    recording: Recording, test_rootfs: Path, tmp_path: Path, sandbox_target: SandboxTarget
) -> None:
    derived = recording.allowlist()
    spec = _spec(test_rootfs, tmp_path, TINY, env={"EXTRA": "uname"}, syscalls=tuple(derived))
    status, output = _run(sandbox_target, spec, tmp_path)
    assert parse(output)["uname"] == {"probe": "uname", "ok": False, "errno": errno.EPERM}
    lines = [line for line in output.splitlines() if line.startswith("summon: sandbox:")]
    assert lines == [
        "summon: sandbox: refused uname (seccomp: not among the calls this image's recording "
        'run made; if the app needs it, add syscalls = ["uname"] to [tool.summon] and rebuild)'
    ], output
    assert status == 0


@pytest.mark.parametrize("profile", ["derived", "static"])
def test_a_call_outside_the_allowlist_is_refused_with_a_line_at_run_time(
    recording: Recording,
    test_rootfs: Path,
    tmp_path: Path,
    sandbox_target: SandboxTarget,
    profile: str,
) -> None:
    """setsid is in no list. The kernel used to answer it EPERM with nothing said, so an app
    failing on one (inotify, mlock, timerfd...) left its user guessing: the gate says it."""
    allowed = tuple(recording.allowlist()) if profile == "derived" else None
    spec = _spec(test_rootfs, tmp_path, TINY, env={"EXTRA": "setsid"}, syscalls=allowed)
    status, output = _run(sandbox_target, spec, tmp_path)
    assert parse(output)["setsid"] == {"probe": "setsid", "ok": False, "errno": errno.EPERM}
    lines = [line for line in output.splitlines() if line.startswith("summon: sandbox:")]
    assert lines == [
        "summon: sandbox: refused setsid (seccomp: not in the sandbox's allowlist; if the app "
        'needs it, add syscalls = ["setsid"] to [tool.summon] and rebuild)'
    ], output
    assert status == 0


def test_a_handlers_everyday_calls_need_no_recording(
    recording: Recording, test_rootfs: Path, tmp_path: Path, sandbox_target: SandboxTarget
) -> None:
    """The recording made none of these (it never slept, spooled or asked who it runs as):
    the derived profile allows them anyway (the base's "handler" group), so a handler that
    does is not refused in production for what the build's one request did not do."""
    assert not {"clock_nanosleep", "unlink", "getuid", "fsync", "mremap"} & recording.syscalls
    spec = _spec(test_rootfs, tmp_path, TINY, env={"EXTRA": "handler"},
                 syscalls=tuple(recording.allowlist()))  # fmt: skip
    _status, output = _run(sandbox_target, spec, tmp_path)
    assert parse(output)["handler"]["ok"], output
    assert "summon: sandbox: refused" not in output


def test_a_thread_may_set_an_ordinary_policy_never_a_real_time_one(
    test_rootfs: Path, tmp_path: Path, sandbox_target: SandboxTarget
) -> None:
    spec = _spec(test_rootfs, tmp_path, TINY, env={"EXTRA": "sched"})
    _status, output = _run(sandbox_target, spec, tmp_path)
    assert parse(output)["sched"] == {"probe": "sched", "ok": True, "errno": errno.EPERM}, output


@pytest.mark.parametrize("profile", ["derived", "static"])
def test_extended_attributes_and_fallocate_take_the_stdlibs_fallback(
    test_rootfs: Path, tmp_path: Path, sandbox_target: SandboxTarget, profile: str
) -> None:
    """shutil.copy2 skips extended attributes on ENOTSUP (on EPERM it fails), glibc's
    posix_fallocate writes the blocks itself: rule "unsupported" answers them so, in the
    static profile and in one derived from a run that copied (the answer is never recorded)."""
    spec = _spec(test_rootfs, tmp_path, TINY, env={"EXTRA": "copy2"})
    if profile == "derived":
        rec, _out = _record(spec, tmp_path, sandbox_target)
        assert not {"listxattr", "flistxattr", "fallocate"} & rec.syscalls
        spec = dataclasses.replace(spec, syscalls=tuple(rec.allowlist()))
    _status, output = _run(sandbox_target, spec, tmp_path)
    assert parse(output)["copy2"]["ok"], output


@pytest.mark.parametrize("how", ["manifest", "static"])
def test_control_the_same_call_with_the_name_added_or_the_static_list(
    recording: Recording, test_rootfs: Path, tmp_path: Path, sandbox_target: SandboxTarget, how: str
) -> None:
    allowed = tuple(recording.allowlist(["uname"])) if how == "manifest" else None
    spec = _spec(test_rootfs, tmp_path, TINY, env={"EXTRA": "uname"}, syscalls=allowed)
    _status, output = _run(sandbox_target, spec, tmp_path)
    assert parse(output)["uname"]["ok"], output


def test_a_manifests_syscalls_reach_an_image_that_keeps_the_static_list(
    test_rootfs: Path, tmp_path: Path, sandbox_target: SandboxTarget
) -> None:
    """No recording (it failed, or could not be made): the manifest's `syscalls` are added to
    the static list, instead of being dropped with the recording. getpriority is outside it."""
    assert static_with("socket", ["getpid"]) is None  # static already: nothing to add
    kept = static_with("socket", ["getpriority"])
    assert kept is not None and kept.extra == ("getpriority",)
    assert set(seccomp.allowed_syscalls("socket")) < set(kept.allowed)
    spec = _spec(test_rootfs, tmp_path, TINY, env={"EXTRA": "getpriority"}, syscalls=kept.allowed)
    _status, output = _run(sandbox_target, spec, tmp_path)
    assert parse(output)["getpriority"]["ok"], output
    # and the static list alone refuses it: the manifest's word is what lets it through
    spec = _spec(test_rootfs, tmp_path, TINY, env={"EXTRA": "getpriority"})
    _status, output = _run(sandbox_target, spec, tmp_path)
    assert parse(output)["getpriority"]["errno"] == errno.EPERM, output


def test_an_event_loop_woken_by_an_eventfd_is_recorded_and_then_runs(
    test_rootfs: Path, tmp_path: Path, sandbox_target: SandboxTarget
) -> None:
    """uvloop (libuv), gevent (libev) and tokio (mio) make an eventfd when their loop starts:
    the static list allows it, so a recording run notes it and the derived profile keeps it."""
    spec = _spec(test_rootfs, tmp_path, TINY, env={"EXTRA": "eventfd"})
    rec, out = _record(spec, tmp_path, sandbox_target)
    assert parse(out.read_text())["eventfd"]["ok"], out.read_text()
    assert "eventfd2" in rec.syscalls
    derived = dataclasses.replace(spec, syscalls=tuple(rec.allowlist()))
    _status, output = _run(sandbox_target, derived, tmp_path)
    assert parse(output)["eventfd"]["ok"], output


def test_recording_never_widens_the_static_list(
    test_rootfs: Path, tmp_path: Path, sandbox_target: SandboxTarget
) -> None:
    """setsid is outside the static allowlist: refused while recording, and not noted."""
    spec = _spec(test_rootfs, tmp_path, TINY, env={"EXTRA": "setsid"})
    rec, out = _record(spec, tmp_path, sandbox_target)
    assert parse(out.read_text())["setsid"]["errno"] == errno.EPERM
    assert "setsid" not in rec.syscalls
    # refused as any instance refuses it, but the build hears of it (build/syscalls.py)
    assert "setsid" in rec.refused
    assert (
        "summon: sandbox: refused setsid (seccomp: not in the sandbox's allowlist; if the app "
        'needs it, add syscalls = ["setsid"] to [tool.summon] and rebuild)'
    ) in out.read_text()


# --- the examples, built and served sealed under their derived profiles ----------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(tmp_path_factory.mktemp("store"))


@pytest.fixture
def serve(store: Store, tmp_path: Path) -> Iterator[Any]:
    """serve(ref, forwards) -> (instance, console file, bound host ports); stopped after."""
    started: list[Any] = []

    def start(ref: str, ports: tuple[PortForward, ...] = ()) -> tuple[Any, Path]:
        image = Image.open(store, ref)
        console = tmp_path / f"{len(started)}.console"
        spec = RunSpec.for_image(image, name=f"ex-{uuid.uuid4().hex[:8]}", state_dir=tmp_path / "s")
        with open(console, "wb") as f:  # the instance has its own copy of the fd
            spec = dataclasses.replace(spec, ports=ports, stdout=f.fileno())
            instance = SandboxTarget(root=tmp_path / "runc", store=store).start(spec)
        started.append(instance)
        return instance, console

    yield start
    for instance in started:
        instance.stop(grace=2)


def _sealed_and_derived(store: Store, ref: str) -> dict[str, Any]:
    image = Image.open(store, ref)
    spec = RunSpec.for_image(image, name="peek", state_dir=Path("/nonexistent"))
    assert spec.syscalls is not None, f"{ref}: the build recorded no syscall list"
    assert image.app_config()["seal"]["mode"] == "on"
    bom: dict[str, Any] = image.bom["sandbox"]
    return bom


@pytest.mark.slow
def test_examples_http_serves_sealed_under_its_derived_profile(store: Store, serve: Any) -> None:
    result = build(EXAMPLES / "http", store, "http:derived")
    assert result.syscalls is not None, result.warnings
    sandbox = _sealed_and_derived(store, "http:derived")
    assert sandbox["syscalls_allowed"] <= 70, sandbox["syscalls"]
    forward = PortForward(host_port=0, guest_port=80)
    instance, console = serve("http:derived", (forward,))
    port = instance.bound[forward][1]
    codes = []
    for route in ("/", "/style.css", "/missing"):
        curl = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10",
             f"http://127.0.0.1:{port}{route}"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        codes.append(curl.stdout)
    assert codes == ["200", "200", "404"], console.read_text()
    text = console.read_text()
    assert "refused" not in text and "warm-up" not in text, text


@pytest.mark.slow
def test_examples_dns_answers_sealed_under_its_derived_profile(store: Store, serve: Any) -> None:
    import dns.message
    import dns.query
    import dns.rcode

    result = build(EXAMPLES / "dns", store, "dns:derived")
    assert result.syscalls is not None, result.warnings
    _sealed_and_derived(store, "dns:derived")
    forward = PortForward(host_port=_free_udp_port(), guest_port=53, protocol="udp")
    _instance, console = serve("dns:derived", (forward,))
    zone = sorted((EXAMPLES / "dns" / "zone").iterdir())[0].name.removesuffix(".zone")
    reply = None
    for _ in range(40):
        try:
            query = dns.message.make_query(zone.rstrip(".") + ".", "SOA")
            reply = dns.query.udp(query, "127.0.0.1", port=forward.host_port, timeout=0.5)
            break
        except dns.exception.Timeout:
            continue
    assert reply is not None and reply.rcode() == dns.rcode.NOERROR, console.read_text()
    text = console.read_text()
    assert "refused" not in text and "warm-up" not in text, text


@pytest.mark.slow
def test_examples_hello_runs_sealed_under_its_derived_profile(store: Store, serve: Any) -> None:
    result = build(EXAMPLES / "hello", store, "hello:derived")
    assert result.syscalls is not None, result.warnings
    _sealed_and_derived(store, "hello:derived")
    instance, console = serve("hello:derived")
    assert instance.wait(20) == 0, console.read_text()
    assert console.read_text().splitlines() == ["hello, world"], console.read_text()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_inspect_json_reports_the_count(store: Store) -> None:
    """Images without a recorded list report the static count, with derived false."""
    static = seccomp.summary({"network": "socket", "seal": {"mode": "on"}}, None)
    assert static["syscalls_allowed"] == len(seccomp.allowed_syscalls("socket"))
    assert static["derived"] is False and static["seal"] == "on"
    derived = seccomp.summary({"network": "socket"}, "read write socket exit_group")
    assert derived["syscalls_allowed"] == 3 and derived["conditional"] == ["clone", "socket"]
    assert json.dumps(derived)


UNDECLARED_SERVER = """\
import http.server

class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"served without ports in the manifest\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.HTTPServer(("0.0.0.0", 8000), Hello).serve_forever()
"""


@pytest.mark.slow
def test_a_server_the_manifest_lists_no_port_of_is_exercised_and_serves_sealed(
    store: Store, serve: Any, tmp_path: Path
) -> None:
    """The recording run found no port to talk to and waited for the app to end: the derived
    list lacked accept4, and the sealed image refused its first connection (a script's own
    server, a console script's main(), often come without `ports`). Now the build finds the
    listening socket in the app's namespace, exercises it there, and says to list the port."""
    app = tmp_path / "undeclared"
    app.mkdir()
    (app / "summon.toml").write_text('name = "undeclared"\nentry = "server.py"\n')
    (app / "server.py").write_text(UNDECLARED_SERVER)
    result = build(app, store, "undeclared:derived")
    assert result.syscalls is not None, result.warnings
    assert "accept4" in result.syscalls.allowed
    assert any(
        "listens on TCP port 8000, which summon.toml does not list in ports" in w
        and "add ports = [8000]" in w
        for w in result.warnings
    ), result.warnings
    assert result.syscalls.seconds < 15  # found at once, not waited out (RUN_TIMEOUT)
    forward = PortForward(host_port=0, guest_port=8000)
    instance, console = serve("undeclared:derived", (forward,))
    port = instance.bound[forward][1]
    curl = subprocess.run(
        ["curl", "-s", "--max-time", "10", f"http://127.0.0.1:{port}/"],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert curl.stdout == "served without ports in the manifest\n", console.read_text()
    assert "refused" not in console.read_text()


@pytest.mark.slow
def test_a_server_on_another_port_than_the_manifests_is_named_by_the_build(
    store: Store, tmp_path: Path
) -> None:
    """ports = [80] and an app serving on 8000: the build said no port answered, and not
    that the app was listening all along on another one."""
    app = tmp_path / "elsewhere"
    app.mkdir()
    (app / "summon.toml").write_text('name = "elsewhere"\nentry = "server.py"\nports = [80]\n')
    (app / "server.py").write_text(UNDECLARED_SERVER)
    result = build(app, store, "elsewhere:derived")
    assert result.syscalls is None
    assert any(
        w.startswith("no port of 80 answered the recording run's request")
        and "the app listens on TCP port 8000 instead: list that in ports" in w
        for w in result.warnings
    ), result.warnings
