"""The summon command end to end: real builds into a throw-away store, real runs, real errors.

Each error case checks the three promises: one line on stderr, exit status 2, and nothing
half-written left in the store.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from summon_cli import APPS, EXAMPLES, Summon, free_port, get, needs_sandbox


@pytest.fixture(scope="module")
def summon(tmp_path_factory: pytest.TempPathFactory) -> Summon:
    return Summon(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def http_image(summon: Summon) -> str:
    r = summon("build", str(EXAMPLES / "http"), "-t", "http:test")
    assert r.returncode == 0, r.stderr
    assert "built http:test" in r.stdout
    return "http:test"


def summon_processes(home: Path) -> list[str]:
    """runc and app processes of instances of the summon at home still alive: a runc with
    its state there, an app below such a runc (or below a process naming home), or an app
    left without one that was not there when this module began. Another summon's instances
    on the machine (another test run's, a user's) are not this one's leftovers."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines()[1:] if line.count(" ") >= 2]
    args = {int(pid): text for pid, _ppid, text in rows}
    parent = {int(pid): int(ppid) for pid, ppid, _text in rows}

    def below_ours(pid: int) -> bool | None:
        """True below a process of the summon at home (its state folder in the process's
        arguments, runc's --root, or its environment: the CLI's, its monitor's), False below
        another summon's, None when no summon process is above it."""
        for _ in range(8):
            pid = parent.get(pid, 1)
            if pid <= 1:
                return None
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                environ = []
            states = [e for e in environ if e.startswith(b"XDG_STATE_HOME=")]
            if str(home) in args.get(pid, "") or f"XDG_STATE_HOME={home}/state".encode() in states:
                return True
            if states or "summon" in args.get(pid, "") or "runc" in args.get(pid, ""):
                return False
        return None

    found = []
    for pid, text in args.items():
        if "runc" in text and "summon-" in text:
            if str(home) in text:
                found.append(f"{pid} {text}")
        elif "/usr/lib/summon/boot.py" in text:
            ours = below_ours(pid)
            if ours or (ours is None and pid not in _BEFORE):
                found.append(f"{pid} {text}")
    return found


# Apps running before this module began: another summon's, never this one's leftovers.
_BEFORE = {
    int(line.split(None, 1)[0])
    for line in subprocess.run(
        ["ps", "-eo", "pid,args"], capture_output=True, text=True
    ).stdout.splitlines()[1:]
    if "/usr/lib/summon/boot.py" in line
}


# --- builds ----------------------------------------------------------------------------------


def test_two_builds_give_the_same_digest(summon: Summon, tmp_path: Path) -> None:
    other = Summon(tmp_path)
    for app in ("hello", "http"):
        a = summon("build", str(EXAMPLES / app), "-t", f"{app}:repro")
        b = other("build", str(EXAMPLES / app), "-t", f"{app}:repro")
        assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
        assert summon.digest(f"{app}:repro") == other.digest(f"{app}:repro"), app


def test_images_inspect_and_rmi(summon: Summon, http_image: str, tmp_path: Path) -> None:
    listing = json.loads(summon("images", "--json").stdout)
    row = next(r for r in listing if r["ref"] == http_image)
    assert 0 < row["size"] < 6_000_000
    inspect = json.loads(summon("inspect", http_image, "--json").stdout)
    bom = inspect["bom"]
    assert bom["interpreter"]["version"].startswith("3.11")
    # libgcc_s: no DT_NEEDED names it, but glibc dlopens it to end a thread with pthread_exit.
    assert {lib["soname"] for lib in bom["libraries"]} >= {"libc.so.6", "libm.so.6",
                                                           "libgcc_s.so.1"}
    assert any(p["name"] == "h11" for p in bom["packages"])
    names = {m["name"] for m in bom["modules"]}
    assert {"asyncio", "h11", "app", "summon.runtime.init"} <= names
    assert "ssl" not in names and "tkinter" not in names
    assert any(f["path"] == "/data/static/index.html" for f in bom["files"])
    text = summon("inspect", http_image).stdout
    assert "size by part" in text and "interpreter" in text and "h11" in text

    doomed = write_app(tmp_path / "doomed", 'entry = "app:main"\n', "def main():\n    return 1\n")
    assert summon("build", str(doomed), "-t", "doomed").returncode == 0
    before = summon.blobs()
    r = summon("rmi", "doomed")
    assert r.returncode == 0, r.stderr
    assert "untagged doomed:latest" in r.stdout
    assert summon.blobs() < before
    assert summon("inspect", http_image).returncode == 0  # what others use is kept


def test_a_rebuilt_tag_leaves_the_old_image_as_none_usable_by_id_until_removed(
    summon: Summon, tmp_path: Path
) -> None:
    """docker's <none>: the image a tag moved off stays listed and usable by its ID; rmi
    refuses it while an instance runs it, and --dangling removes it once no instance (running
    or stopped) uses it."""
    app = write_app(tmp_path / "sleeper", 'entry = "app:main"\n',
                    "import time\n\ndef main():\n    time.sleep(600)\n")  # fmt: skip
    assert summon("build", str(app), "-t", "sleeper:1").returncode == 0
    old = summon.digest("sleeper:1")
    (app / "app.py").write_text("import time\n\ndef main():\n    time.sleep(601)\n")
    rebuilt = summon("build", str(app), "-t", "sleeper:1")
    assert rebuilt.returncode == 0
    assert summon.digest("sleeper:1") != old
    assert f"(ID {old[7:19]}) is kept as <none>" in rebuilt.stderr
    rows = json.loads(summon("images", "--json").stdout)
    none = [r for r in rows if r["ref"] == "<none>" and r["digest"] == old]
    assert len(none) == 1 and none[0]["untagged_from"] == "sleeper:1"
    short = old[7:19]
    listing = summon("images").stdout
    assert any(line.startswith("<none>") and short in line for line in listing.splitlines())
    assert summon("inspect", short).returncode == 0

    r = summon("run", "-d", "--target", "unix", "--name", "old-sleeper", short)
    assert r.returncode == 0, r.stderr
    try:
        assert_one_line_error(summon("rmi", short), f"image {short} is in use by old-sleeper")
        kept = summon("rmi", "--dangling")
        assert kept.returncode == 0 and short not in kept.stdout  # in use: skipped
        assert summon("inspect", short).returncode == 0
    finally:
        summon("stop", "old-sleeper")
    kept = summon("rmi", "--dangling")  # stopped, not removed: `summon start` would run it
    assert kept.returncode == 0 and short not in kept.stdout
    summon.ok("rm", "old-sleeper")
    r = summon("rmi", "--dangling")
    assert r.returncode == 0 and f"removed untagged image {short}" in r.stdout
    assert "no image" in summon("inspect", short).stderr
    assert summon("inspect", "sleeper:1").returncode == 0  # the tagged one stays
    assert summon("rmi").returncode == 2  # nothing named, no --dangling


def test_rmi_by_id_of_an_image_with_several_tags_needs_force(
    summon: Summon, tmp_path: Path
) -> None:
    """docker's rule: an ID names the image, so an image with several tags is removed by ID
    only with -f (every tag goes); a tag removes just that tag."""
    app = write_app(tmp_path / "twice", 'entry = "app:main"\n', "def main():\n    return 0\n")
    assert summon("build", str(app), "-t", "twice:a").returncode == 0
    assert summon("tag", "twice:a", "twice:b").returncode == 0
    short = summon.digest("twice:a")[7:19]
    assert_one_line_error(
        summon("rmi", short), f"image {short} has 2 tags (twice:a, twice:b): remove them by name"
    )
    assert all(summon("inspect", f"twice:{t}").returncode == 0 for t in "ab")
    r = summon("rmi", "-f", short)
    assert r.returncode == 0, r.stderr
    assert "untagged twice:a" in r.stdout and "untagged twice:b" in r.stdout
    assert "no image" in summon("inspect", short).stderr
    assert summon("build", str(app), "-t", "twice:c").returncode == 0
    r = summon("rmi", short)  # one tag: the ID removes it, no -f needed
    assert r.returncode == 0 and "untagged twice:c" in r.stdout, r.stderr


def test_tag_moved_off_an_image_says_it_is_kept_as_none(
    summon: Summon, http_image: str, tmp_path: Path
) -> None:
    """`summon tag A B` with B naming another image left that image <none> without a word."""
    app = write_app(tmp_path / "moved", 'entry = "app:main"\n', "def main():\n    return 0\n")
    assert summon("build", str(app), "-t", "moved:1").returncode == 0
    old = summon.digest("moved:1")[7:19]
    assert summon("tag", "moved:1", "moved:2").returncode == 0
    r = summon("tag", http_image, "moved:1")  # moved:2 still names the old image: no word
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = summon("tag", http_image, "moved:2")  # now no tag names it
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == [
        f"summon: the image moved:2 named before (ID {old}) is kept as <none>; "
        f"`summon tag {old} NAME` names it again"
    ]
    assert summon("tag", old, "moved:1").returncode == 0  # as it says
    assert summon.digest("moved:1")[7:19] == old
    assert summon("rmi", "moved:1", "moved:2").returncode == 0


# --- running ---------------------------------------------------------------------------------


def test_p_for_a_script_on_unix_is_said_not_to_apply_and_nothing_claims_the_port(
    summon: Summon,
) -> None:
    r = summon("run", str(EXAMPLES / "hello"), "--target", "unix", "-p", "18099:80")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("warning: -p does not apply to a plain script on the unix target") == 1
    assert "serving tcp" not in r.stderr  # no line saying a port is served that nobody serves


def test_a_bare_name_that_is_an_image_and_a_folder_runs_the_image(
    summon: Summon, tmp_path: Path
) -> None:
    """As docker run: NAME is the image; ./NAME the folder, built and run."""
    summon.ok("build", str(EXAMPLES / "hello"), "-t", "greeter")
    folder = tmp_path / "greeter"
    shutil.copytree(EXAMPLES / "hello", folder)
    (folder / "hello.py").write_text("import sys\nprint('the folder')\nsys.exit(3)\n")

    def run(name: str) -> subprocess.CompletedProcess[str]:
        argv = summon.argv("run", name, "--target", "unix")
        return subprocess.run(
            argv, env=summon.env, capture_output=True, text=True, timeout=300, cwd=tmp_path
        )

    image = run("greeter")
    assert image.returncode == 0 and "hello, world" in image.stdout, image.stderr
    assert "running the image greeter:latest; to build and run the folder, give ./greeter" in (
        image.stderr
    )
    built = run("./greeter")
    assert built.returncode == 3 and "the folder" in built.stdout, built.stderr


@needs_sandbox
def test_the_app_knows_who_it_runs_as_in_the_sandbox(summon: Summon, tmp_path: Path) -> None:
    """getpass.getuser() and pwd (libraries ask them for a cache folder) answer in an image."""
    app = write_app(
        tmp_path / "whoami", 'entry = "app.py"\n',
        "import getpass, os, pwd\n"
        "print(getpass.getuser(), os.getuid(), pwd.getpwuid(os.getuid()).pw_dir, flush=True)\n",
    )  # fmt: skip
    assert summon("build", str(app), "-t", "whoami:t").returncode == 0
    r = summon("run", "whoami:t", "--target", "sandbox", "--rm")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["app", "1000", "/tmp"]


def test_limits_a_target_does_not_hold_are_said_to_be_ignored(summon: Summon) -> None:
    """A host process is held to no memory or process limit: a -m given for it was taken
    without a word, and believed."""
    r = summon("run", str(EXAMPLES / "hello"), "--target", "unix", "-m", "64M", "--pids", "9")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count(
        "warning: --memory and --pids are ignored on target unix, a plain host process"
    ) == 1
    r = summon("run", str(EXAMPLES / "hello"), "--target", "unix")
    assert "ignored" not in r.stderr  # the manifest's own limits: nothing was asked


def test_hello_exit_status_and_env_on_unix(summon: Summon) -> None:
    r = summon("run", str(EXAMPLES / "hello"), "--target", "unix", "-e", "HELLO_STATUS=7",
               "-e", "HELLO_NAME=summon")
    assert r.returncode == 7, r.stderr
    assert "hello, summon" in r.stdout
    # Arguments after the image are the app's, instead of the manifest's (its first is the
    # status), flags before them still summon's.
    r = summon("run", str(EXAMPLES / "hello"), "--target", "unix", "-e", "HELLO_STATUS=7",
               "--", "9")  # fmt: skip
    assert r.returncode == 9, r.stderr


def test_env_file_reaches_the_app_and_e_flags_win(summon: Summon, tmp_path: Path) -> None:
    env_file = tmp_path / "hello.env"
    env_file.write_text("# what the app reads\nHELLO_STATUS=5\nHELLO_NAME='from the file'\n")
    r = summon("run", str(EXAMPLES / "hello"), "--target", "unix", "--env-file", str(env_file))
    assert r.returncode == 5, r.stderr
    assert "hello, 'from the file'" in r.stdout  # as written: quotes and all, as docker's
    r = summon("run", str(EXAMPLES / "hello"), "--target", "unix", "--env-file", str(env_file),
               "-e", "HELLO_STATUS=3")  # fmt: skip
    assert r.returncode == 3, r.stderr


@needs_sandbox
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_http_serves_in_the_sandbox_and_stops_cleanly(
    summon: Summon, http_image: str, stop_signal: signal.Signals
) -> None:
    netns = Path("/run/netns")

    def ids() -> set[str]:
        found = summon.instances.iterdir() if summon.instances.is_dir() else iter(())
        return {p.name for p in found if len(p.name) == 64 and not p.name.startswith(".")}

    before = ids()
    port = free_port()
    proc = summon.popen("run", http_image, "--target", "sandbox", "-p", f"{port}:80")
    try:
        page = get(f"http://127.0.0.1:{port}/", time.monotonic() + 20)
        assert "hello from a unikernel" in page
        # This run's instance (by its ID: netns are named after the short ID; others on the
        # machine, another test run's, come and go meanwhile).
        (ident,) = ids() - before
        assert (netns / f"summon-{ident[:12]}").exists()
        proc.send_signal(stop_signal)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert summon_processes(summon.home) == []
    assert not (netns / f"summon-{ident[:12]}").exists()  # this run's namespace is gone


@needs_sandbox
def test_escapes_from_a_real_image_are_stopped(summon: Summon, tmp_path: Path) -> None:
    """From inside a summon-built image, each escape fails, and we know which rule stopped it."""
    assert summon("build", str(APPS / "escape"), "-t", "escape").returncode == 0
    secret = tmp_path / "host-secret"
    secret.write_text("host only")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    env = ["-e", f"HOST_FILE={secret}", "-e", f"HOST_PORT={listener.getsockname()[1]}"]
    try:
        boxed = summon("run", "escape", "--target", "sandbox", *env, "-e", "TRY_MOUNT=1")
        host = summon("run", "escape", "--target", "unix", *env)
    finally:
        listener.close()
    assert boxed.returncode == 0, boxed.stderr
    got = json.loads(boxed.stdout.split("RESULTS ", 1)[1])
    control = json.loads(host.stdout.split("RESULTS ", 1)[1])
    expected = {
        "execve": ("EPERM", "seccomp: execve is answered EPERM (after runc's one exec)"),
        "fork": ("EPERM", "seccomp: clone without CLONE_THREAD is answered EPERM"),
        "write_root": ("EROFS", "the root filesystem is mounted read-only"),
        "read_host_file": ("ENOENT", "own mount namespace: the host's /tmp is not there"),
        "reach_network": ("ECONNREFUSED", "own network namespace: its loopback has no listener"),
        "mount": ("EPERM", "seccomp denies mount (and there is no CAP_SYS_ADMIN)"),
    }
    for name, (errno_name, rule) in expected.items():
        assert got[name] == errno_name, f"{name}: expected {errno_name} ({rule}), got {got[name]}"
    # The same attempts from a plain host process get through, so the sandbox stopped them.
    assert control["execve"] == "ENOENT", "execve reaches the kernel's path lookup on the host"
    for name in ("fork", "write_root", "read_host_file", "reach_network"):
        assert control[name] == "ok", f"{name} should work outside the sandbox: {control[name]}"


# --- errors: one line, status 2, nothing half-written ----------------------------------------


def assert_one_line_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.startswith("summon: error:")]
    assert len(lines) == 1, r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def write_app(folder: Path, table: str, code: str = "def main():\n    return 0\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(code)
    (folder / "pyproject.toml").write_text(f'[project]\nname = "x"\n\n[tool.summon]\n{table}')
    return folder


def test_broken_manifest(summon: Summon, http_image: str, tmp_path: Path) -> None:
    before = summon.blobs()
    app = write_app(tmp_path / "bad", 'entry = "app:main"\nprots = [80]\n')
    r = summon("build", str(app))
    assert_one_line_error(r, str(app / "pyproject.toml"), "prots: unknown key", "'ports'")
    assert summon.blobs() == before and summon.tmp() == []


def test_missing_entry_point(summon: Summon, http_image: str, tmp_path: Path) -> None:
    before = summon.blobs()
    app = write_app(tmp_path / "noentry", 'entry = "app:serve"\n')
    r = summon("build", str(app))
    assert_one_line_error(r, "app", "serve")
    assert summon.blobs() == before and summon.tmp() == []


def test_app_failing_to_import_shows_its_traceback(summon: Summon, http_image: str) -> None:
    before = summon.blobs()
    r = summon("build", str(APPS / "badimport"))
    assert_one_line_error(r, "failed to import", "no_such_dependency")
    assert "Traceback" in r.stderr and "helper.py" in r.stderr
    assert summon.blobs() == before and summon.tmp() == []


def test_unknown_image(summon: Summon) -> None:
    assert_one_line_error(summon("run", "no-such-image"), "no image 'no-such-image'")
    assert_one_line_error(summon("inspect", "no-such-image"), "no image 'no-such-image'")
    assert_one_line_error(summon("rmi", "no-such-image"), "no image 'no-such-image'")


def test_missing_sandbox_runtime(summon: Summon, http_image: str, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()  # a PATH without runc
    r = summon("run", http_image, "--target", "sandbox", env={"PATH": str(bin_dir)})
    assert_one_line_error(r, "runc not found", "apt-get install runc")
    assert summon_processes(summon.home) == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-p", "80:"], "-p 80:: expected PORT, HOST:GUEST"),
        (["-p", "99999:80"], "ports are numbers from 1 to 65535"),
        (["-e", "1BAD=x"], "-e 1BAD=x: expected KEY=VALUE"),
        (["-m", "lots"], "--memory"),
    ],
)
def test_bad_run_flags(summon: Summon, http_image: str, args: list[str], needle: str) -> None:
    assert_one_line_error(summon("run", http_image, "--target", "unix", *args), needle)


def test_doctor_reports_targets(summon: Summon) -> None:
    r = summon("doctor", "--json")
    assert r.returncode == 0, r.stderr
    checks = json.loads(r.stdout)
    assert {c["target"] for c in checks} >= {"build", "unix", "sandbox"}
    assert all(c["fix"] for c in checks if not c["ok"])


@pytest.fixture(autouse=True)
def _no_leftover_instances(summon: Summon) -> Iterator[None]:
    yield
    assert summon_processes(summon.home) == []


def test_app_packages_with_any_name_go_in(summon: Summon, tmp_path: Path) -> None:
    """A package called `build` or `tests` is app code when the app imports it."""
    app = write_app(tmp_path / "named", 'entry = "app:main"\n',
                    "from build import answer\n\ndef main():\n    return answer()\n")
    (app / "build").mkdir()
    (app / "build" / "__init__.py").write_text("def answer():\n    return 5\n")
    assert summon("build", str(app), "-t", "named").returncode == 0
    assert summon("run", "named", "--target", "unix").returncode == 5
