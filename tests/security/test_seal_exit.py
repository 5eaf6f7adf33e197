"""The end of a sealed instance: no code runs after the interpreter drops its audit hooks.

As Python finalizes, its last audit event ("cpython.PyInterpreterState_Clear") comes after
the threads' join, atexit and the flush of stdio; then it drops every audit hook and clears
the modules and its registries, which runs the __del__ of what they hold. Code running after
the seal left an object in the codec registry whose __del__ exec()s a string: it ran then,
with no hook to see it.
Sealed, the instance now exits at that event (seal_end.py) with the app's status; an atexit
callback still runs, sealed (its exec is refused by seal.code). The control runs the same
kind of object in a plain interpreter with a refusing hook: its exec runs.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_apps import needs_sandbox
from sealed_image import Run, SealedImage, make_sealed_image

pytestmark = needs_sandbox

LATE = r"""
import atexit, codecs, os
from summon.devices import Stack

WRITE = os.write


class Late:
    def __init__(self, where):
        self.where = where

    def __call__(self, *args):
        return None

    def __del__(self, write=WRITE, run=exec, make=compile, refused=PermissionError):
        # compiled under a name of its own: an audit line names it if a hook saw it
        try:
            source = "write(1, b'LATE exec ran: ' + where + b'\\n')"
            code = make(source, "<" + self.where + ">", "exec")
            run(code, {"write": write, "where": self.where.encode()})
        except refused:
            write(1, b"LATE refused: " + self.where.encode() + b"\n")


def at_exit(write=WRITE, run=exec):
    try:
        run("write(1, b'LATE exec ran in atexit\\n')", {"write": write})
    except PermissionError as e:
        write(1, ("LATE atexit refused: " + str(e) + "\n").encode())


async def main(stack: Stack) -> int:
    server = await stack.start_server(lambda reader, writer: writer.close(), 8000)
    # What code run after the seal (a pickle, say) can leave behind, where the
    # interpreter's finalization reaches it: a module's global (before its last audit
    # event), and what it frees after dropping the hooks: the codec registries and the
    # fork callbacks.
    global planted
    planted = Late("module")
    codecs.register(Late("codec_search"))
    codecs.register_error("late", Late("codec_error"))
    os.register_at_fork(before=Late("at_fork"))
    atexit.register(at_exit)
    server.close()
    return 3
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealedImage]:
    yield make_sealed_image(tmp_path_factory.mktemp("exit"))


def _run(image: SealedImage, mode: str) -> Run:
    app = image.app_json("late:main", seal={"mode": mode, "preload": []})
    return image.run({"late.py": LATE}, app)


def test_nothing_runs_after_the_hooks_are_dropped(image: SealedImage) -> None:
    """What finalization would reach before the last event is refused by seal.code; nothing
    runs after it (the objects are not finalized), and the instance exits with the app's
    status."""
    run = _run(image, "on")
    assert run.status == 3, run.output
    assert "LATE exec ran" not in run.output, run.output
    refused = [line for line in run.lines("summon: sealed: refused") if "'<" in line]
    assert all("seal.code" in line for line in refused), refused


def test_atexit_still_runs_and_sealed(image: SealedImage) -> None:
    """Rule seal.code: an atexit callback runs before the end, with the hook in place."""
    run = _run(image, "on")
    lines = run.lines("LATE atexit refused: ")
    assert len(lines) == 1 and "seal.code" in lines[0], run.output


CONTROL = r"""
import codecs, os, sys

def refuse(event, args):
    if event == "compile" and args[1] == "<late>":
        raise PermissionError("refused")

sys.addaudithook(refuse)
if sys.argv[1] == "exit":
    from summon.runtime import seal_end
    sys.addaudithook(seal_end.exit_hook([5]))

class Late:
    def __call__(self, *args):
        return None

    def __del__(self, write=os.write, run=exec, make=compile, refused=PermissionError):
        try:
            run(make("write(1, b'ran with no hook')", "<late>", "exec"), {"write": write})
        except refused:
            write(1, b"refused")

codecs.register(Late())
sys.exit(5)
"""


@pytest.mark.parametrize("exit_hook", [False, True], ids=["control", "exit-hook"])
def test_python_runs_code_after_dropping_its_hooks(tmp_path: Path, exit_hook: bool) -> None:
    """The interpreter's own behaviour (3.11): a codec search function freed as it finalizes
    runs with no audit hook; seal_end.exit_hook ends the process first, with its status."""
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    argv = [sys.executable, "-c", CONTROL, "exit" if exit_hook else "plain"]
    result = subprocess.run(argv, capture_output=True, env=env, timeout=60, check=False)
    assert result.returncode == 5, result
    assert result.stdout == (b"" if exit_hook else b"ran with no hook"), result
