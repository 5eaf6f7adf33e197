"""The runtime as images run it (python -S -E boot.py): entries, statuses, signals, PID 1.

Devices are in test_runtime_init_devices.py; the hints after a failure in
test_runtime_init_hints.py."""

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


def test_the_script_has_a_loader_that_reads_the_files_beside_it(image: ImageRoot) -> None:
    """Pyramid's add_static_view("static", "__main__:static") answered 500 to every file:
    pkg_resources reads a module's files through its __loader__, and "Can't perform this
    operation for unregistered loader type" when there is none, which `python app.py` has."""
    image.app(
        {
            "show.py": dedent("""
                import os, sys
                loader = sys.modules["__main__"].__loader__
                print(type(loader).__name__, loader.name)
                here = os.path.dirname(__file__)
                print(loader.get_data(os.path.join(here, "static", "site.css")).decode())
            """),
            "static/site.css": "body { color: red }",
        }
    )
    image.config("/app/show.py")
    result = image.run()
    assert result.stdout.splitlines() == ["SourceFileLoader __main__", "body { color: red }"]
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
