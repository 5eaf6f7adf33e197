"""The runtime as images run it (python -S -E boot.py): entries, devices, statuses, signals."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path
from textwrap import dedent

import pytest
from fake_image import EXAMPLES, ImageRoot, read_line, stop

# --- scripts (POSIX mode) -------------------------------------------------------------------


def test_script_exit_status_comes_from_args(image: ImageRoot) -> None:
    image.link("/app/hello.py", EXAMPLES / "hello" / "hello.py")
    image.config("/app/hello.py", args=["7"], env={"HELLO_NAME": "image"})
    result = image.run()
    assert result.stdout == "hello, image\n"
    assert result.returncode == 7


def test_environment_wins_over_app_json_env(image: ImageRoot) -> None:
    image.link("/app/hello.py", EXAMPLES / "hello" / "hello.py")
    image.config("/app/hello.py", env={"HELLO_NAME": "image", "HELLO_STATUS": "4"})
    result = image.run(env={"HELLO_NAME": "caller"})
    assert result.stdout == "hello, caller\n"
    assert result.returncode == 4  # the default the caller did not override still applies


def test_boot_arguments_replace_app_json_args(image: ImageRoot) -> None:
    image.link("/app/hello.py", EXAMPLES / "hello" / "hello.py")
    image.config("/app/hello.py", args=["7"])
    assert image.run("9").returncode == 9


def test_script_runs_as_main_with_its_file_and_argv(image: ImageRoot) -> None:
    image.app(
        {
            "show.py": dedent("""
                import sys
                class Thing: pass
                print(__name__, __file__, sys.argv[1:], Thing.__module__)
                print(sys.modules["__main__"].Thing is Thing)
            """)
        }
    )
    image.config("/app/show.py", args=["a", "b"])
    result = image.run()
    script = str(image.root / "app" / "show.py")
    assert result.stdout.splitlines() == [f"__main__ {script} ['a', 'b'] __main__", "True"]
    assert result.returncode == 0


def test_the_app_works_in_its_folder_and_opens_its_files_by_relative_names(
    image: ImageRoot,
) -> None:
    """As `python app.py` in the project folder: Bottle's ./views, a data file by name."""
    image.app(
        {
            "show.py": 'import os\nprint(os.getcwd())\nprint(open("views/page.tpl").read())\n',
            "views/page.tpl": "hello {{name}}",
        }
    )
    image.config("/app/show.py")
    result = image.run()
    assert result.stdout.splitlines() == [str(image.root / "app"), "hello {{name}}"]
    assert result.returncode == 0


@pytest.mark.parametrize(
    ("code", "status", "stderr"),
    [
        ("raise SystemExit(5)", 5, ""),
        ("import sys; sys.exit()", 0, ""),
        ("import sys; sys.exit('bye')", 1, "bye\n"),
    ],
)
def test_script_system_exit(image: ImageRoot, code: str, status: int, stderr: str) -> None:
    image.app({"s.py": code + "\n"})
    image.config("/app/s.py")
    result = image.run()
    assert (result.returncode, result.stderr) == (status, stderr)


def test_script_exception_prints_traceback_and_exits_1(image: ImageRoot) -> None:
    image.app({"s.py": "print('before')\ndef boom():\n    raise ValueError('kaput')\nboom()\n"})
    image.config("/app/s.py")
    result = image.run()
    assert result.returncode == 1
    assert result.stdout == "before\n"
    assert result.stderr.startswith("Traceback (most recent call last):\n")
    assert "line 3, in boom" in result.stderr
    assert result.stderr.endswith("ValueError: kaput\n")
    assert "summon/runtime" not in result.stderr  # the runtime's own frames are left out


# --- function entries --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "stderr"),
    [
        ("return 3", 3, ""),
        ("return None", 0, ""),
        ("raise SystemExit(6)", 6, ""),
        ("return 'a message'", 1, "a message\n"),
    ],
)
def test_function_return_value_is_exit_status(
    image: ImageRoot, body: str, status: int, stderr: str
) -> None:
    image.app({"app.py": f"def main():\n    {body}\n"})
    image.config("app:main")
    result = image.run()
    assert (result.returncode, result.stderr) == (status, stderr)


def test_function_argv_and_exception(image: ImageRoot) -> None:
    image.app({"app.py": "import sys\ndef main():\n    print(sys.argv)\n    1 / 0\n"})
    image.config("app:main", args=["x"])
    result = image.run()
    assert result.stdout == "['app:main', 'x']\n"
    assert result.returncode == 1
    assert result.stderr.endswith("ZeroDivisionError: division by zero\n")
    assert 'app.py", line 4, in main' in result.stderr
    assert "summon/runtime" not in result.stderr


def test_async_function_return_value_is_exit_status(image: ImageRoot) -> None:
    image.app(
        {"app.py": "import asyncio\nasync def main():\n    await asyncio.sleep(0)\n    return 12\n"}
    )
    image.config("app:main")
    assert image.run().returncode == 12


def test_import_error_of_the_entry_module(image: ImageRoot) -> None:
    image.app({"app.py": "raise RuntimeError('at import')\ndef main(): pass\n"})
    image.config("app:main")
    result = image.run()
    assert result.returncode == 1
    assert result.stderr.endswith("RuntimeError: at import\n")


def test_missing_entry_function(image: ImageRoot) -> None:
    image.app({"app.py": "def other(): pass\n"})
    image.config("app:main")
    result = image.run()
    assert result.returncode == 2
    assert result.stderr == (
        "summon: entry app:main: module 'app' has no function 'main'; "
        "fix entry in [tool.summon] and rebuild\n"
    )


def test_unreadable_app_json(image: ImageRoot) -> None:
    result = image.run()
    assert result.returncode == 1
    assert result.stderr.startswith("summon: cannot read ")
    assert "app.json" in result.stderr
    (image.root / "etc/summon/app.json").write_text('{"entry": ')
    result = image.run()
    assert (result.returncode, result.stderr.count("\n")) == (1, 1)
    assert "is not valid JSON" in result.stderr


# --- devices -------------------------------------------------------------------------------

DEVICES_APP = """
from __future__ import annotations

import summon.devices
from summon.devices import KV_RO, Clock, Console, Random


def main(console: Console, clock: summon.devices.Clock, rnd: "Random", files: KV_RO) -> int:
    console.info("info line")
    console.debug("hidden at the default level")
    console.write("raw line")
    assert 1.6e9 < clock.time() and clock.monotonic() > 0
    assert len(rnd.read(16)) == 16 and rnd.read(16) != rnd.read(16)
    print(sorted(files.list()), files.get("a.txt"), files.size("sub/b.txt"))
    return 0
"""


def test_each_device_is_injected(image: ImageRoot) -> None:
    image.app({"app.py": DEVICES_APP})
    image.data("things", {"a.txt": b"A", "sub/b.txt": b"BB"})
    image.config("app:main", data={"things": "/data/things"})
    result = image.run()
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "info: info line",
        "raw line",
        "['a.txt', 'sub/b.txt'] b'A' 2",
    ]
    assert result.returncode == 0


def test_console_level_from_the_environment(image: ImageRoot) -> None:
    image.app({"app.py": DEVICES_APP})
    image.data("things", {"a.txt": b"A", "sub/b.txt": b"BB"})
    image.config("app:main", data={"things": "/data/things"}, env={"SUMMON_LOG_LEVEL": "debug"})
    assert "debug: hidden at the default level" in image.run().stdout.splitlines()
    result = image.run(env={"SUMMON_LOG_LEVEL": "loud"})
    assert result.returncode == 2
    assert result.stderr.startswith("summon: SUMMON_LOG_LEVEL: log level 'loud' is not one of")


def test_annotations_as_classes_keyword_only_and_defaults(image: ImageRoot) -> None:
    # No `from __future__ import annotations`: the annotations are the classes themselves.
    image.app(
        {
            "app.py": dedent("""
                from summon.devices import Clock, Console
                from summon.runtime.posix_devices import StdoutConsole

                def main(log: Console, limit: int = 3, *, clock: Clock, extra=None) -> int:
                    assert isinstance(log, StdoutConsole) and extra is None
                    log.info(f"{limit} {type(clock).__name__}")
                    return limit
            """)
        }
    )
    image.config("app:main")
    result = image.run()
    assert (result.returncode, result.stdout) == (3, "info: 3 SystemClock\n")


def test_kv_by_parameter_name(image: ImageRoot) -> None:
    image.app(
        {
            "app.py": dedent("""
                from summon.devices import KV_RO
                def main(static: KV_RO, my_files: KV_RO) -> None:
                    print(static.get("k").decode(), my_files.get("k").decode())
            """)
        }
    )
    image.data("static", {"k": b"from static"})
    image.data("my-files", {"k": b"from my-files"})
    image.config("app:main", data={"static": "/data/static", "my-files": "/data/my-files"})
    result = image.run()
    assert (result.returncode, result.stdout) == (0, "from static from my-files\n")


def test_kv_the_only_folder_whatever_the_name(image: ImageRoot) -> None:
    image.app(
        {"app.py": "from summon.devices import KV_RO\ndef main(x: KV_RO):\n    print(x.list())\n"}
    )
    image.data("static", {"index.html": b"<p>"})
    image.config("app:main", data={"static": "/data/static"})
    assert image.run().stdout == "['index.html']\n"


@pytest.mark.parametrize(
    ("params", "data", "message"),
    [
        (
            "files: KV_RO",
            {"a": "/data/a", "b": "/data/b"},
            "summon: parameter 'files' of app:main asks for a KV_RO, but no data folder has "
            "that name; name the parameter after one of: a, b\n",
        ),
        (
            "files: KV_RO",
            {},
            "summon: parameter 'files' of app:main asks for a KV_RO, but the image has no data "
            'folder; add data = ["files"] to [tool.summon] and rebuild\n',
        ),
        (
            "log: Console, count",
            {},
            "summon: parameter 'count' of app:main has no annotation; annotate it with one of "
            "Console, Clock, Random, Stack, KV_RO, KV_RW, TLS, Secrets (from summon.devices), "
            "or give it a default\n",
        ),
        (
            "count: int",
            {},
            "summon: parameter 'count' of app:main is annotated 'int', which is not a device; "
            "use one of Console, Clock, Random, Stack, KV_RO, KV_RW, TLS, Secrets "
            "(from summon.devices)\n",
        ),
        (
            "*, port: 'Port'",
            {},
            "summon: parameter 'port' of app:main is annotated 'Port', which is not a device; "
            "use one of Console, Clock, Random, Stack, KV_RO, KV_RW, TLS, Secrets "
            "(from summon.devices)\n",
        ),
    ],
)
def test_device_errors_name_the_parameter(
    image: ImageRoot, params: str, data: dict[str, str], message: str
) -> None:
    image.app(
        {
            "app.py": "from __future__ import annotations\n"
            "from summon.devices import *\n"
            f"def main({params}):\n    print('called')\n"
        }
    )
    for name in data:
        image.data(name, {"k": b"v"})
    image.config("app:main", data=data)
    result = image.run()
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message)


@pytest.mark.parametrize(
    ("network", "message"),
    [
        (
            "direct",
            'summon: network = "direct" needs a network device from the target '
            "(SUMMON_TAP_FD or SUMMON_NET_IFACE); run it with --target sandbox\n",
        ),
        (
            "none",
            "summon: parameter 'net' of app:main asks for a Stack, but the image was built with "
            "network = 'none'; set network = \"socket\" in [tool.summon]\n",
        ),
    ],
)
def test_stack_needs_a_network(image: ImageRoot, network: str, message: str) -> None:
    image.app({"app.py": "from summon.devices import Stack\nasync def main(net: Stack): pass\n"})
    image.config("app:main", network=network)
    result = image.run()
    assert (result.returncode, result.stderr) == (2, message)


def test_bad_summon_ports(image: ImageRoot) -> None:
    image.app({"app.py": "from summon.devices import Stack\nasync def main(net: Stack): pass\n"})
    image.config("app:main")
    result = image.run(env={"SUMMON_PORTS": "80/sctp=8080"})
    assert result.returncode == 2
    assert result.stderr == (
        "summon: SUMMON_PORTS: '80/sctp=8080' is not GUEST=HOST such as 80/tcp=8080 or "
        "53/udp=5353\n"
    )


# --- the missing-module hint ---------------------------------------------------------------

HINT = (
    "summon: module 'csv' is not in this image; add it to include = [...] in [tool.summon] "
    "and rebuild\n"
)


def test_missing_stdlib_module_hint(image: ImageRoot) -> None:
    # None in sys.modules makes the import machinery fail as if the module were absent.
    image.app({"app.py": "import sys\nsys.modules['csv'] = None\ndef main():\n    import csv\n"})
    image.config("app:main")
    result = image.run()
    assert result.returncode == 1
    assert "ModuleNotFoundError: import of csv halted" in result.stderr
    assert result.stderr.endswith(HINT)


def test_missing_stdlib_module_hint_behind_another_error_in_async_code(image: ImageRoot) -> None:
    image.app(
        {
            "app.py": dedent("""
                import sys
                sys.modules["csv"] = None
                async def main():
                    try:
                        import csv
                    except ImportError as e:
                        raise RuntimeError("cannot export") from e
            """)
        }
    )
    image.config("app:main")
    result = image.run()
    assert result.returncode == 1
    assert "RuntimeError: cannot export" in result.stderr
    assert result.stderr.endswith(HINT)
    # Neither the runtime's frames nor asyncio's stand between the reader and the app's.
    assert "summon/runtime" not in result.stderr and "asyncio/" not in result.stderr


def test_hint_for_a_module_nobody_provides(image: ImageRoot) -> None:
    image.app({"app.py": "import no_such_package_anywhere\n"})
    image.config("/app/app.py")
    result = image.run()
    assert result.returncode == 1
    assert result.stderr.endswith(
        "ModuleNotFoundError: No module named 'no_such_package_anywhere'\n"
        "summon: module 'no_such_package_anywhere' is not in this image; add the distribution "
        "that provides it to requirements in [tool.summon] and rebuild\n"
    )


def test_a_command_line_entry_point_object_is_called_with_the_args_on_sys_argv(
    image: ImageRoot,
) -> None:
    # entry = "pkg.cli:main", a click group ([project.scripts]): "is not a function".
    image.app(
        {
            "cli.py": dedent("""
                import sys
                class Group:
                    def __call__(self, *args, **kwargs):
                        print(args, kwargs, sys.argv[1:], flush=True)
                        raise SystemExit(0)
                main = Group()
            """)
        }
    )
    image.config("cli:main", args=["serve", "--port", "8000"])
    result = image.run()
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "() {} ['serve', '--port', '8000']\n"


def test_an_entry_function_running_its_own_server_is_told_its_ports_reach_nothing(
    image: ImageRoot,
) -> None:
    # main() calls uvicorn.run (a click group does, a [project.scripts] entry): the sandbox
    # handed the -p listener to the Stack the entry never asked for, and requests hung.
    image.app({"app.py": "def main():\n    print('serving on my own', flush=True)\n"})
    image.config("app:main")
    result = image.run(env={"LISTEN_FDS": "1", "LISTEN_FDNAMES": "8000"})
    assert result.returncode == 0
    assert result.stdout == "serving on my own\n"
    assert result.stderr == (
        "summon: entry app:main asks for no Stack device, so the ports this run was given "
        "(-p) reach nothing it listens on: an entry that starts its own server (uvicorn.run, "
        'app.run) is a script: entry = "run.py" making that call, or point entry at the app '
        'object (entry = "module:app")\n'
    )
    assert image.run().stderr == ""  # no ports handed over: nothing to say


def test_a_database_on_a_volume_this_run_did_not_mount_is_named(image: ImageRoot) -> None:
    # Flask-SQLAlchemy on sqlite:////data/project.db, run without -v: sqlite's "unable to
    # open database file" and nothing more, the image's /data being read-only and empty.
    image.app(
        {
            "app.py": dedent("""
                import sqlite3
                db = sqlite3.connect("/no-such-folder-summon-test/project.db")
                db.execute("create table t (x)")
                def main():
                    pass
            """)
        }
    )
    image.config("app:main", volumes=["/no-such-folder-summon-test"])
    result = image.run()
    assert result.returncode == 1
    assert result.stderr.endswith(
        "sqlite3.OperationalError: unable to open database file\n"
        "summon: the image is read-only and this run mounts no volume at "
        "/no-such-folder-summon-test: give it one with summon run -v "
        "NAME:/no-such-folder-summon-test (a named volume, made on first use)\n"
    )
    mounted = image.run(env={"SUMMON_VOLUMES": "/no-such-folder-summon-test"})
    assert mounted.stderr.endswith("unable to open database file\n")  # no word: mounted


def test_a_variable_the_run_does_not_set_is_named_with_the_flag_that_gives_it(
    image: ImageRoot,
) -> None:
    # Built with summon build -e SECRET_KEY=dev, run without it: only a KeyError traceback.
    image.app({"app.py": "import os\nKEY = os.environ['SECRET_KEY']\ndef main():\n    pass\n"})
    image.config("app:main")
    result = image.run()
    assert result.returncode == 1
    assert result.stderr.endswith(
        "KeyError: 'SECRET_KEY'\n"
        "summon: the app reads the variable SECRET_KEY, which this run does not set: give it "
        "with summon run -e SECRET_KEY=VALUE (or a default in the manifest's env)\n"
    )


def test_a_distribution_without_metadata_is_not_called_a_missing_module(image: ImageRoot) -> None:
    # importlib.metadata's PackageNotFoundError is a ModuleNotFoundError naming a distribution:
    # the hint said "module 'my-service' is not in this image", a module nobody imports.
    image.app({"app.py": "from importlib.metadata import version\nV = version('my-service')\n"})
    image.config("/app/app.py")
    result = image.run()
    assert result.returncode == 1
    assert result.stderr.endswith(
        "PackageNotFoundError: No package metadata was found for my-service\n"
        "summon: no distribution 'my-service' is installed in this image (importlib.metadata "
        "found no metadata for it); add it to requirements in [tool.summon], or, if it is the "
        "app's own project, give name and version in pyproject.toml's [project], and rebuild\n"
    )


@pytest.mark.parametrize(
    ("missing", "hint"),
    [
        (
            "jinja2",
            "module 'jinja2' is not in this image; it comes from the distribution Jinja2: "
            "add it to requirements in [tool.summon] and rebuild",
        ),
        (
            "werkzeug.debug.tbtools",
            "module 'werkzeug.debug' is not in this image: exclude = ['werkzeug.debug'] "
            "in the manifest leaves it out; remove it from exclude and rebuild",
        ),
    ],
)
def test_hint_names_the_distribution(image: ImageRoot, missing: str, hint: str) -> None:
    # The table the build writes for the modules its code names but the image lacks.
    (image.root / "etc/summon/modules.tsv").write_text(
        "jinja2\tmissing\tJinja2\n"
        "werkzeug\tvendored\tWerkzeug\n"
        "werkzeug.debug\texcluded\texclude = ['werkzeug.debug'] in the manifest\n"
    )
    image.app({"app.py": f"def main():\n    import {missing}\n", "werkzeug/__init__.py": ""})
    image.config("app:main")
    result = image.run()
    assert result.returncode == 1
    assert result.stderr.endswith(f"summon: {hint}\n")


# --- signals -------------------------------------------------------------------------------

ASYNC_WAITER = """
import asyncio
async def main():
    try:
        print("ready")  # no flush: stdout must be line-buffered even into a pipe
        await asyncio.Event().wait()
    finally:
        await asyncio.sleep(0.01)  # cleanup may still await
        print("cleanup")
"""

SYNC_WAITER = """
import time
def main():
    try:
        print("ready")
        while True:
            time.sleep(1)
    finally:
        print("cleanup")
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("source", [ASYNC_WAITER, SYNC_WAITER], ids=["async", "sync"])
def test_signal_is_a_clean_shutdown(image: ImageRoot, source: str, sig: int) -> None:
    image.app({"app.py": source})
    image.config("app:main")
    process = image.start()
    assert read_line(process) == "ready"
    status, out, err = stop(process, sig)
    assert (status, out, err) == (0, "cleanup\n", "")


def test_signal_stops_a_script(image: ImageRoot) -> None:
    image.app({"s.py": SYNC_WAITER + "main()\n"})
    image.config("/app/s.py")
    process = image.start()
    assert read_line(process) == "ready"
    assert stop(process) == (0, "cleanup\n", "")


def test_sigterm_goes_to_the_ctrl_c_handling_a_script_installed(image: ImageRoot) -> None:
    # As trio's scheduler and asyncio.run do: an exception raised at an arbitrary point
    # inside trio breaks it ("Trio guest run got abandoned" and a wall of tracebacks), so
    # SIGTERM is handed to the handler the app's event loop put on SIGINT.
    script = dedent("""
        import signal, time
        stop = []
        signal.signal(signal.SIGINT, lambda signum, frame: stop.append(signum))
        print("ready")
        while not stop:
            time.sleep(0.02)
        print("stopped by", signal.Signals(stop[0]).name)
    """)
    image.app({"s.py": script})
    image.config("/app/s.py")
    process = image.start()
    assert read_line(process) == "ready"
    assert stop(process, signal.SIGTERM) == (0, "stopped by SIGINT\n", "")


def test_a_stop_inside_exception_groups_is_a_clean_exit(image: ImageRoot) -> None:
    # Task groups (trio's nurseries, anyio, asyncio.TaskGroup) wrap what stops them.
    script = dedent("""
        import time
        try:
            print("ready")
            while True:
                time.sleep(1)
        except KeyboardInterrupt as e:
            print("cleanup")
            raise BaseExceptionGroup("nursery", [BaseExceptionGroup("inner", [e])])
    """)
    image.app({"s.py": script})
    image.config("/app/s.py")
    process = image.start()
    assert read_line(process) == "ready"
    assert stop(process, signal.SIGINT) == (0, "cleanup\n", "")


def test_an_exception_group_with_an_error_in_it_is_still_reported(image: ImageRoot) -> None:
    script = dedent("""
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as e:
            raise BaseExceptionGroup("nursery", [e, ValueError("a real failure")])
    """)
    image.app({"s.py": script})
    image.config("/app/s.py")
    result = image.run()
    assert result.returncode == 1 and "ValueError: a real failure" in result.stderr


def test_async_app_may_set_its_status_on_shutdown(image: ImageRoot) -> None:
    image.app(
        {
            "app.py": dedent("""
                import asyncio
                async def main():
                    try:
                        print("ready")
                        await asyncio.sleep(3600)
                    except asyncio.CancelledError:
                        return 3
            """)
        }
    )
    image.config("app:main")
    process = image.start()
    assert read_line(process) == "ready"
    assert stop(process)[0] == 3


def test_sync_app_may_set_its_status_on_shutdown(image: ImageRoot) -> None:
    image.app(
        {
            "app.py": dedent("""
                import sys, time
                def main():
                    try:
                        print("ready")
                        time.sleep(3600)
                    except SystemExit:
                        sys.exit(4)
            """)
        }
    )
    image.config("app:main")
    process = image.start()
    assert read_line(process) == "ready"
    assert stop(process)[0] == 4


def test_a_second_signal_does_not_cut_cleanup_short(image: ImageRoot) -> None:
    image.app(
        {
            "app.py": dedent("""
                import time
                def main():
                    try:
                        print("ready")
                        time.sleep(3600)
                    finally:
                        print("cleaning")
                        time.sleep(0.5)
                        print("cleaned")
            """)
        }
    )
    image.config("app:main")
    process = image.start()
    assert read_line(process) == "ready"
    process.send_signal(signal.SIGTERM)
    assert read_line(process) == "cleaning"
    assert stop(process) == (0, "cleaned\n", "")


# --- PID 1 in a VM: mounting /proc, /dev and /tmp -----------------------------------------


def test_pid_1_mounts_proc_dev_and_tmp(image: ImageRoot) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a PID and mount namespace")
    image.app(
        {
            "app.py": dedent("""
                import os
                def main():
                    root = os.environ["SUMMON_ROOT"]
                    print(os.getpid())
                    print(open(root + "/proc/self/stat").read().split()[0])
                    print(os.path.exists(root + "/dev/null"))
                    print(oct(os.stat(root + "/tmp").st_mode & 0o7777))
                    try:  # its own code pages, through /proc/self/mem: read-only /proc
                        open(root + "/proc/self/mem", "r+b", buffering=0).close()
                    except OSError as e:
                        print(os.strerror(e.errno))
            """)
        }
    )
    image.config("app:main")
    # A private mount namespace: the mounts vanish with it and the host never sees them.
    probe = subprocess.run(["unshare", "--pid", "--fork", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare is not allowed here: {probe.stderr.decode().strip()}")
    result = subprocess.run(
        image.argv(prefix=("unshare", "--pid", "--fork", "--mount", "--propagation", "private")),
        env=image.environ(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.stderr == ""
    assert result.stdout.splitlines() == ["1", "1", "True", "0o1777", "Read-only file system"]
    assert not (image.root / "proc" / "self").exists()


def test_runtime_files_are_where_images_put_them() -> None:
    boot = Path(__file__).resolve().parents[3] / "src/summon/runtime/boot.py"
    assert "from summon.runtime.init import main" in boot.read_text()
