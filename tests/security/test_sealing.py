"""A sealed instance against a hostile app: what it may no longer do, and which rule stops it.

The app runs through summon's real runtime in the sandbox (sealed_image.py). It tries each
attempt before the seal where a control is needed (the same write works then), and after the
seal, which closes when its Stack device starts listening. Each refusal must name its rule:
in the PermissionError for the audit hook's rules, in the console line the runtime prints
once, or as the errno of the seccomp rule. With seal = "audit" every attempt goes through,
with a line saying what would have been refused.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sealed_image import Run, SealedImage, make_sealed_image

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox target needs root"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc missing: apt-get install runc"),
]

HOSTILE = r"""
import collections, ctypes, json, mmap, os, pickle, socket, struct, sys, typing
from summon.devices import Stack

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long)
libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
SHELLCODE = bytes([0xB8, 42, 0, 0, 0, 0xC3])  # mov eax, 42; ret
RAW_MMAP = mmap.mmap  # taken before the seal wraps it: only the kernel's filter is left
RAW_MEMFD = os.memfd_create


def report(name, ok, err=0, kind="", detail=""):
    print(json.dumps({"probe": name, "ok": ok, "errno": err, "kind": kind, "detail": detail}),
          flush=True)


def attempt(name, action):
    try:
        detail = action()
    except Exception as e:
        report(name, False, getattr(e, "errno", 0) or 0, type(e).__name__, str(e))
    else:
        report(name, True, detail=repr(detail))


def shellcode():
    page = libc.mmap(None, 4096, 3, 0x22, -1, 0)  # PROT_READ|PROT_WRITE, private anonymous
    ctypes.memmove(page, SHELLCODE, len(SHELLCODE))
    if libc.mprotect(page, 4096, 5) != 0:  # PROT_READ|PROT_EXEC
        err = ctypes.get_errno()
        raise OSError(err, "mprotect: " + os.strerror(err))
    return ctypes.CFUNCTYPE(ctypes.c_int)(page)()


def import_tmp():
    with open("/tmp/evil_mod.py", "w") as f:
        f.write("X = 'evil'\n")
    sys.path.insert(0, "/tmp")
    try:
        import evil_mod
        return evil_mod.X
    finally:
        sys.path.remove("/tmp")


def write(path):
    def action():
        with open(path, "w") as f:
            f.write("x")
    return action


SHARED = {}


def pre_shm_value():
    import multiprocessing
    SHARED["value"] = multiprocessing.Value("i", 7)


def shm_value():
    value = SHARED["value"]
    with value.get_lock():
        value.value += 1
    return value.value


def shm_lock():
    import multiprocessing
    lock = multiprocessing.Lock()
    with lock:
        return "locked"


class Compiled:  # what a pickle from the network reduces to: compile(), then exec()
    def __reduce__(self):
        return (compile, ("import os; print('owned')", "/app/templates/page.html", "exec"))


class Executed:
    def __reduce__(self):
        return (exec, (Compiled(),))


TEMPLATE_PICKLE = pickle.dumps(Executed())


def subinterpreter():
    # Python's audit hooks are per interpreter: a new one's code no hook of this one sees.
    import _xxsubinterpreters as interpreters
    interpreters.run_string(interpreters.create(), "print('unsealed')")


def family(number, kind=socket.SOCK_STREAM, protocol=0):
    def action():
        socket.socket(number, kind, protocol).close()
    return action


def netlink_add_address():
    # RTM_NEWADDR 10.9.9.9/32 on lo (index 1), asking for the kernel's ack.
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    try:
        sock.bind((0, 0))
        addr = socket.inet_aton("10.9.9.9")
        attrs = struct.pack("=HH4s", 8, 2, addr) + struct.pack("=HH4s", 8, 1, addr)
        body = struct.pack("=BBBBI", socket.AF_INET, 32, 0, 0, 1) + attrs
        sock.send(struct.pack("=IHHII", 16 + len(body), 20, 0x605, 1, 0) + body)
        err = -struct.unpack_from("=i", sock.recv(4096), 16)[0]
        if err:
            raise OSError(err, os.strerror(err))
        return "added"
    finally:
        sock.close()


PROBES = {
    "pre_write_dev": write("/dev/summon-probe-pre"),
    # A Value (werkzeug's debugger makes one before it binds): an arena file in /dev/shm and
    # a POSIX semaphore, which the sandbox had no /dev/shm for; used after the seal, and a
    # new Lock (a semaphore alone) made after it.
    "pre_shm_value": pre_shm_value,
    "shm_value": shm_value,
    "shm_lock": shm_lock,
    "shellcode": shellcode,
    "mmap_exec": lambda: mmap.mmap(-1, 4096, prot=7),
    "mmap_exec_raw": lambda: RAW_MMAP(-1, 4096, prot=7),
    "exec_string": lambda: exec("1+1"),
    "exec_string_again": lambda: exec("2+2"),
    "compile_string": lambda: compile("1+1", "<x>", "eval"),
    "eval_string": lambda: eval("1+1"),
    # namedtuple's own template: let through (modules imported late make them); a lookalike
    # of it from any other code is not
    "namedtuple": lambda: collections.namedtuple("P", "a b")(1, 2),
    "namedtuple_lookalike": lambda: eval("lambda _cls, a, b: _tuple_new(_cls, (a, b))"),
    # code under the name of a template file the image ships, not made of it by Jinja
    "template_pickle": lambda: pickle.loads(TEMPLATE_PICKLE),
    # a comprehension in a string annotation, written after a number
    "forward_ref_number_for": lambda: typing.ForwardRef("[1for x in (os,)]")._evaluate(
        {"os": os}, {}, frozenset()),
    "import_tmp": import_tmp,
    "subinterpreter": subinterpreter,
    "import_image": lambda: __import__("colorsys").rgb_to_hsv(1, 0, 0),
    "import_extension": lambda: __import__("_csv").__name__,
    "ctypes_call": lambda: libc.getpid(),
    "write_dev": write("/dev/summon-probe"),
    "write_tmp": write("/tmp/summon-probe"),
    "memfd": lambda: os.memfd_create("x"),
    "memfd_raw": lambda: RAW_MEMFD("x"),
    "vsock": family(socket.AF_VSOCK),
    "netlink": family(socket.AF_NETLINK, socket.SOCK_RAW, 15),  # NETLINK_KOBJECT_UEVENT
    "netlink_route": family(socket.AF_NETLINK, socket.SOCK_RAW, 0),
    "if_nameindex": socket.if_nameindex,
    "netlink_add_address": netlink_add_address,
    "getaddrinfo_any": lambda: socket.getaddrinfo(None, 8000, 0, socket.SOCK_STREAM, 0,
                                                  socket.AI_PASSIVE),
    "packet": family(socket.AF_PACKET, socket.SOCK_RAW),
    "inet": family(socket.AF_INET),
    "inet6": family(socket.AF_INET6),
    "unix": family(socket.AF_UNIX),
}


async def main(stack: Stack) -> int:
    names = os.environ["PROBES"].split(",")
    for name in names:
        if name.startswith("pre_"):
            attempt(name, PROBES[name])
    server = await stack.start_server(lambda reader, writer: writer.close(), 8000)
    for name in names:
        if not name.startswith("pre_"):
            attempt(name, PROBES[name])
    server.close()
    return 0
"""

AFTER = (
    "shellcode", "mmap_exec", "mmap_exec_raw", "exec_string", "exec_string_again",
    "compile_string", "eval_string", "namedtuple", "namedtuple_lookalike", "template_pickle",
    "forward_ref_number_for", "subinterpreter", "import_tmp",
    "import_image",
    "import_extension", "ctypes_call", "write_dev", "write_tmp", "memfd", "memfd_raw", "vsock",
    "netlink_route", "if_nameindex", "netlink_add_address", "getaddrinfo_any", "netlink",
    "packet", "inet", "inet6", "unix",
    "shm_value", "shm_lock",
)  # fmt: skip
ALL = ("pre_write_dev", "pre_shm_value", *AFTER)

# probe -> (exception, errno, the rule its message or the console must name)
REFUSED: dict[str, tuple[str, int, str]] = {
    "shellcode": ("PermissionError", errno.EPERM, "seal.ctypes"),
    "mmap_exec": ("PermissionError", errno.EPERM, "seal.memory"),
    "exec_string": ("PermissionError", errno.EPERM, "seal.code"),
    "compile_string": ("PermissionError", errno.EPERM, "seal.code"),
    "eval_string": ("PermissionError", errno.EPERM, "seal.code"),
    "namedtuple_lookalike": ("PermissionError", errno.EPERM, "seal.code"),
    "template_pickle": ("PermissionError", errno.EPERM, "seal.code"),
    "forward_ref_number_for": ("PermissionError", errno.EPERM, "seal.code"),
    "import_tmp": ("PermissionError", errno.EPERM, "seal.import"),
    "ctypes_call": ("PermissionError", errno.EPERM, "seal.ctypes"),
    "write_dev": ("PermissionError", errno.EPERM, "seal.write"),
    "memfd": ("PermissionError", errno.EPERM, "seal.memory"),
}
# Refused by the kernel: the seal's seccomp filter (or the sandbox's), a bare errno.
KERNEL: dict[str, str] = {
    "mmap_exec_raw": "the seal's filter: mmap with PROT_EXEC",
    "memfd_raw": "the seal's filter (and the sandbox's allowlist): memfd_create",
    "vsock": "sandbox: socket families",
    "netlink": "sandbox: socket families",
    "packet": "sandbox: socket families",
}
ALLOWED = (
    "write_tmp", "import_image", "import_extension", "namedtuple", "inet", "inet6", "unix",
    "getaddrinfo_any", "pre_shm_value", "shm_value", "shm_lock", "netlink_route",
)  # fmt: skip


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealedImage]:
    yield make_sealed_image(tmp_path_factory.mktemp("sealed"))


# Extension modules whose libraries the test root has (a build lists every one it ships).
PRELOAD = ("_csv", "_bisect", "_heapq", "_json", "_random", "array", "binascii", "math")
PRELOAD += ("_xxsubinterpreters",)  # shipped by an app that imports it: mapped before the seal


def _preload(image: SealedImage) -> list[str]:
    dynload = image.root / "usr/lib/python3.11/lib-dynload"
    return sorted(
        f"/{p.relative_to(image.root)}"
        for p in dynload.glob("*.so")
        if p.name.partition(".")[0] in PRELOAD
    )


def _run(image: SealedImage, mode: str) -> Run:
    app = image.app_json("hostile:main", seal={"mode": mode, "preload": _preload(image)})
    files = {"hostile.py": HOSTILE, "templates/page.html": "<p>{{ name }}</p>\n"}
    return image.run(files, app, env={"PROBES": ",".join(ALL)})


@pytest.fixture(scope="module")
def sealed(image: SealedImage) -> Run:
    return _run(image, "on")


@pytest.fixture(scope="module")
def audited(image: SealedImage) -> Run:
    return _run(image, "audit")


@pytest.mark.parametrize("probe", sorted(REFUSED))
def test_refused_after_the_seal_by_its_rule(sealed: Run, probe: str) -> None:
    kind, err, rule = REFUSED[probe]
    got = sealed.results.get(probe)
    assert got is not None, f"{probe}: the probe printed nothing:\n{sealed.output}"
    assert not got["ok"], f"{probe} succeeded after the seal; {rule} should stop it"
    assert (got["kind"], got["errno"]) == (kind, err), got
    assert rule in got["detail"], f"{probe}: the error must name {rule}: {got['detail']}"
    said = [line for line in sealed.lines("summon: sealed: refused") if rule in line]
    assert said, f"{probe}: no console line names {rule}:\n{sealed.output}"


@pytest.mark.parametrize("probe", sorted(KERNEL))
def test_refused_by_the_kernel_after_the_seal(sealed: Run, probe: str) -> None:
    got = sealed.results[probe]
    assert not got["ok"], f"{probe} succeeded; {KERNEL[probe]} should refuse it"
    assert got["errno"] == errno.EPERM, f"{probe}: {got} ({KERNEL[probe]})"


def test_a_sub_interpreter_is_refused_by_the_code_rule(sealed: Run) -> None:
    """Rule seal.code: audit hooks are per interpreter, so a new one (_xxsubinterpreters)
    would run code from strings that no hook sees. Its creation is refused; the module turns
    the PermissionError into its own RuntimeError, and the console line names the rule."""
    got = sealed.results["subinterpreter"]
    assert (got["ok"], got["kind"]) == (False, "RuntimeError"), got
    assert "unsealed" not in sealed.output
    said = [line for line in sealed.lines("summon: sealed: refused") if "a new interpreter" in line]
    assert len(said) == 1 and "seal.code" in said[0], sealed.output


def test_other_socket_families_are_said_on_the_console(sealed: Run) -> None:
    for name in ("AF_VSOCK", "AF_NETLINK", "AF_PACKET"):
        lines = [line for line in sealed.lines("summon: sandbox: refused") if name in line]
        assert len(lines) == 1, f"one line for socket({name}):\n{sealed.output}"
        assert "allows socket families AF_UNIX, AF_INET, AF_INET6 only" in lines[0]


def test_the_interface_list_is_the_instances_own_and_read_only(sealed: Run) -> None:
    """socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE) opens (getifaddrs: ifaddr, psutil, NiceGUI
    on 0.0.0.0; it was EAFNOSUPPORT) and lists the instance's own namespace, lo alone, never
    the host's interfaces; a change (an address added to lo) is refused by the kernel, EPERM:
    the app has no CAP_NET_ADMIN. Other netlink protocols are still refused with a line."""
    assert sealed.results["if_nameindex"]["detail"] == "[(1, 'lo')]", sealed.results
    change = sealed.results["netlink_add_address"]
    assert (change["ok"], change["errno"]) == (False, errno.EPERM), change
    assert sealed.results["getaddrinfo_any"]["ok"], sealed.results["getaddrinfo_any"]
    lines = [line for line in sealed.lines("summon: sandbox: refused") if "AF_NETLINK" in line]
    assert len(lines) == 1, f"one line, for the other protocol's socket:\n{sealed.output}"


@pytest.mark.parametrize("probe", ALLOWED)
def test_what_stays_allowed_after_the_seal(sealed: Run, probe: str) -> None:
    """/tmp writes, imports from the image (an extension too: loaded before the seal)."""
    assert sealed.results[probe]["ok"], sealed.results[probe]


def test_control_the_seal_refuses_a_write_before_the_file_system_does(sealed: Run) -> None:
    """The app (uid 1000 in its user namespace) cannot write root's /dev anyway: before the
    seal the file system says EACCES; after it, the seal refuses first, with EPERM and its
    rule, whatever the file system would say."""
    before, after = sealed.results["pre_write_dev"], sealed.results["write_dev"]
    assert before["errno"] == errno.EACCES, before
    assert after["errno"] == errno.EPERM and "seal.write" in after["detail"], after


def test_each_refusal_is_said_once(sealed: Run) -> None:
    assert not sealed.results["exec_string_again"]["ok"]
    lines = sealed.lines("summon: sealed: refused")
    assert len(lines) == len(set(lines)), lines
    code_lines = [line for line in lines if "seal.code" in line]
    # exec("1+1") and exec("2+2") are the same refusal (code from '<string>'): one line.
    assert sum("'<string>'" in line for line in code_lines) == 1, code_lines
    assert sealed.status == 0, sealed.output


def test_audit_mode_lets_each_through_with_a_line(audited: Run) -> None:
    for probe, (_kind, _err, rule) in REFUSED.items():
        if probe in ("memfd",):
            continue  # the sandbox's own allowlist refuses memfd_create, sealed or not
        got = audited.results[probe]
        if probe == "write_dev":
            # Through the seal in audit mode, to the file system's own refusal (root's /dev).
            assert got["errno"] == errno.EACCES, got
        else:
            assert got["ok"], f"{probe} must go through in audit mode: {got}"
        said = [line for line in audited.lines("summon: sealed (audit): would refuse")]
        assert any(rule in line for line in said), f"{probe}: no audit line names {rule}"
    assert audited.results["shellcode"]["detail"] == "42", "the shellcode ran, unsealed"
    assert audited.results["mmap_exec_raw"]["ok"], "no filter is installed in audit mode"
    memfd = audited.results["memfd"]
    assert memfd["errno"] == errno.EPERM and "seal" not in memfd["detail"], memfd
    assert any("os.memfd_create" in line for line in audited.lines("summon: sealed (audit)"))
    assert not audited.lines("summon: sealed: refused"), "audit mode refuses nothing"


FILTER_ONLY = r"""
import ctypes, json, mmap, os, sys
from summon.runtime import seal

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long)
libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)

if os.environ.get("FILTER") == "1":
    seal.install_filter(seal.filter_program())
page = libc.mmap(None, 4096, 3, 0x22, -1, 0)
ctypes.memmove(page, bytes([0xB8, 42, 0, 0, 0, 0xC3]), 6)
result = {"mprotect": libc.mprotect(page, 4096, 5), "errno": ctypes.get_errno()}
if result["mprotect"] == 0:
    result["ran"] = ctypes.CFUNCTYPE(ctypes.c_int)(page)()
direct = libc.mmap(None, 4096, 7, 0x22, -1, 0)
result["mmap_exec"] = direct != ctypes.c_void_p(-1).value
result["mmap_errno"] = ctypes.get_errno()
print(json.dumps({"probe": "filter", **result}), flush=True)
"""


@pytest.mark.parametrize("installed", [True, False], ids=["filter", "control"])
def test_the_seal_filter_alone_refuses_executable_memory(
    image: SealedImage, installed: bool
) -> None:
    """The seccomp layer without the hook: the script installs only the seal's filter.

    (seal at "ready": the runtime leaves the seal to the script, which never closes it.)
    """
    app = image.app_json("filteronly.py", seal={"mode": "on", "preload": [], "at": "ready"})
    env = {"FILTER": "1" if installed else "0"}
    run = image.run({"filteronly.py": FILTER_ONLY}, app, env=env)
    got = run.results.get("filter")
    assert got is not None, run.output
    if installed:
        assert (got["mprotect"], got["errno"]) == (-1, errno.EPERM), got
        assert (got["mmap_exec"], got["mmap_errno"]) == (False, errno.EPERM), got
    else:
        assert got["mprotect"] == 0 and got["ran"] == 42, f"control: shellcode runs: {got}"
        assert got["mmap_exec"], got


def test_ready_closes_the_seal_where_the_app_says(image: SealedImage, tmp_path: Path) -> None:
    """An app that calls ready() is sealed from then on, before it ever listens."""
    source = (
        "import json\n"
        "from summon.runtime import ready\n"
        "def main() -> int:\n"
        "    exec('early = 1', {})  # warm-up: before the seal\n"
        "    ready()\n"
        "    try:\n"
        "        exec('late = 1', {})\n"
        "    except PermissionError as e:\n"
        "        print(json.dumps({'probe': 'late', 'ok': False, 'detail': str(e)}))\n"
        "    return 0\n"
    )
    seal = {"mode": "on", "preload": [], "at": "ready"}  # the build sees the call
    run = image.run({"warm.py": source}, image.app_json("warm:main", seal=seal))
    assert run.status == 0, run.output
    assert "seal.code" in run.results["late"]["detail"], run.output


def test_ctypes_is_gone_after_the_seal_for_an_app_that_never_imported_it(
    image: SealedImage,
) -> None:
    """The seal imports ctypes to install its filter; the app must not find it afterwards."""
    source = (
        "import json, sys\n"
        "from summon.devices import Stack\n"
        "async def main(stack: Stack) -> int:\n"
        "    server = await stack.start_server(lambda r, w: w.close(), 8000)\n"
        "    got = {'probe': 'ctypes', 'in_modules': 'ctypes' in sys.modules}\n"
        "    try:\n"
        "        import ctypes\n"
        "        got['ok'] = True\n"
        "    except Exception as e:\n"
        "        got['ok'], got['detail'], got['kind'] = False, str(e), type(e).__name__\n"
        "    print(json.dumps(got), flush=True)\n"
        "    server.close()\n"
        "    return 0\n"
    )
    run = image.run({"plain.py": source}, image.app_json("plain:main"))
    got = run.results["ctypes"]
    assert got["in_modules"] is False, run.output
    assert not got["ok"] and "seal.ctypes" in got["detail"], run.output
    # An ImportError, as where ctypes is missing: a library that does without it goes on.
    assert got["kind"] == "ImportError", run.output


SCRIPT = r"""
import json, socket, sys

def late(name):
    try:
        exec(f"{name} = 1", {})  # code from a string: refused once sealed
        return {"probe": name, "ok": True}
    except PermissionError as e:
        return {"probe": name, "ok": False, "detail": str(e)}

results = [late("before_any_socket")]
with socket.socket(socket.AF_UNIX) as local:  # a local socket is no network input
    local.bind("\0summon-seal-test")
results.append(late("after_a_unix_socket"))
if sys.argv[1:] == ["bind"]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 8000))
        results.append(late("after_bind"))
if sys.argv[1:] == ["loopback"]:  # NiceGUI's ui.run() polls its own port before binding it
    for host in ("127.0.0.1", "0.0.0.0", "::1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as s:
            try:
                s.connect((host, 8000))  # nothing in the instance listens yet
            except OSError:
                pass
        results.append(late("after_connect_to_" + host.replace(".", "_").replace(":", "_")))
    with socket.socket() as s:
        try:
            s.connect(("192.0.2.1", 80))  # anywhere else: the network could answer
        except OSError:
            pass
        results.append(late("after_connect_out"))
if sys.argv[1:] == ["sendto"]:  # a UDP client: bound by the kernel at its first send
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"query", ("127.0.0.1", 5353))
        results.append(late("after_sendto"))
for r in results:
    print(json.dumps(r), flush=True)
"""


def test_a_script_is_sealed_at_its_first_internet_bind(image: SealedImage) -> None:
    """Rule (docs/sealing.md, point 5): a script's own server is set up unsealed (its imports,
    its app, what a framework compiles); the seal closes before its first bind() or
    connect() of an internet socket goes through, so no byte from the network reaches it
    unsealed. An AF_UNIX socket does not close it."""
    run = image.run({"server.py": SCRIPT}, image.app_json("server.py", args=["bind"]))
    assert run.status == 0, run.output
    assert run.results["before_any_socket"]["ok"], run.output
    assert run.results["after_a_unix_socket"]["ok"], run.output
    got = run.results["after_bind"]
    assert not got["ok"] and "seal.code" in got["detail"], run.output


def test_a_scripts_connect_to_its_own_loopback_leaves_it_unsealed(image: SealedImage) -> None:
    """Rule (docs/sealing.md, point 5): NiceGUI's ui.run() polls its own port (a connect to
    0.0.0.0) before uvicorn binds it, which sealed the script there, and its startup's ctypes
    (ifaddr) was refused: every start failed. Before the script binds, nothing in the
    instance listens, so a connect() to its loopback brings nothing from outside; a connect
    anywhere else still closes the seal."""
    run = image.run({"client.py": SCRIPT}, image.app_json("client.py", args=["loopback"]))
    assert run.status == 0, run.output
    for host in ("127_0_0_1", "0_0_0_0", "__1"):
        assert run.results["after_connect_to_" + host]["ok"], run.output
    got = run.results["after_connect_out"]
    assert not got["ok"] and "seal.code" in got["detail"], run.output


def test_a_udp_script_is_sealed_at_its_first_send(image: SealedImage) -> None:
    """Rule (docs/sealing.md, point 5): a UDP socket that sends first is bound by the kernel
    with no bind() call, and answers reach it: its first sendto() closes the seal too."""
    run = image.run({"client.py": SCRIPT}, image.app_json("client.py", args=["sendto"]))
    assert run.status == 0, run.output
    assert run.results["after_a_unix_socket"]["ok"], run.output
    got = run.results["after_sendto"]
    assert not got["ok"] and "seal.code" in got["detail"], run.output


def test_a_script_with_no_network_is_sealed_before_its_first_line(image: SealedImage) -> None:
    """Rule (docs/sealing.md, point 5): a batch script (network = "none") takes its input
    from its volumes, not the network: it is sealed before it starts."""
    # What a build records of the script: the stdlib it imports at its top, imported first.
    seal = {"mode": "on", "preload": [], "imports": ["collections", "json", "socket", "sys"]}
    app = image.app_json("server.py", network="none", seal=seal)
    run = image.run({"server.py": SCRIPT}, app)
    assert run.status == 0, run.output
    got = run.results["before_any_socket"]
    assert not got["ok"] and "seal.code" in got["detail"], run.output
