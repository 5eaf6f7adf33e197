"""What a build tells the runtime about the seal (app.json "seal"), from the image and the app."""

from __future__ import annotations

from pathlib import Path

from summon.build.rootfs import Rootfs
from summon.build.syscalls import calls_ready, learned_code, seal_config, top_level_imports
from summon.runtime.seal import LEARNED_EARLY_PREFIX, LEARNED_PREFIX


def test_preload_lists_every_shared_object(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"\x7fELF")
    fs = Rootfs()
    for path in ("/usr/lib/python3.11/lib-dynload/_csv.cpython-311-x86_64-linux-gnu.so",
                 "/lib/x86_64-linux-gnu/libffi.so.8", "/usr/lib/python3.11/os.pyc",
                 "/app/solver.py"):  # fmt: skip
        fs.add_file(path, blob, "x")
    doc = seal_config("on", fs)
    assert doc == {
        "mode": "on",
        "preload": [
            "/lib/x86_64-linux-gnu/libffi.so.8",
            "/usr/lib/python3.11/lib-dynload/_csv.cpython-311-x86_64-linux-gnu.so",
        ],
        "at": "auto",
    }


def test_a_call_to_ready_makes_the_seal_wait_for_it(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text("import summon.runtime\n\ndef main():\n    summon.runtime.ready()\n")
    script = tmp_path / "job.py"
    script.write_text("import json, os.path\nimport mylib\nif True:\n    import csv\n")
    doc = seal_config("on", Rootfs(), [app], script)
    assert doc["at"] == "ready"
    assert doc["imports"] == ["json", "os.path"]  # not the app's own, not the conditional


def test_calls_ready() -> None:
    assert calls_ready("from summon.runtime import ready\nready()\n")
    assert calls_ready("import summon.runtime as rt\nrt.ready()\n")
    assert not calls_ready("def ready(): pass\nready()\n")  # not summon's
    assert not calls_ready("from summon.runtime import ready\n")  # imported, never called
    assert not calls_ready("import summon.runtime\nx = (\n")  # not Python


def test_top_level_imports() -> None:
    source = "import asyncio\nfrom email.message import Message\nfrom . import local\n"
    assert top_level_imports(source) == ["asyncio", "email.message"]
    assert top_level_imports("import (\n") == []


def test_learned_code_reads_the_runtimes_lines_and_nothing_else() -> None:
    a, b = "a" * 64, "b" * 64
    lines = [
        "Main INFO: Goin' Fast",
        f"summon: sealed: learned code {a} ''",
        f"summon: sealed: learned code {a} ''",  # said twice: one entry
        f"summon: sealed: learned code {b} 'router\\nsrc'",
        "summon: sealed: learned code - 'handle_request'",
        "summon: sealed: learned code - 'router\\nsrc'",  # its compile is learned already
        f"app says: summon: sealed: learned code {b} 'x'",  # not at the start of a line
        "summon: sealed: learned code nothex ''",
        f"summon: sealed: learned code {a} __import__('os')",  # not a string literal
        f"summon: sealed: learned code {a}",
    ]
    assert learned_code(lines) == [
        ("", "handle_request"),
        (a, ""),
        (b, "router\nsrc"),
    ]


def test_learned_code_reads_what_was_compiled_before_the_seal_when_asked() -> None:
    a, b = "a" * 64, "b" * 64
    lines = [
        f"summon: sealed: learned early code {a} '<attrs generated methods Validator>'",
        f"summon: sealed: learned code {b} '<router>'",
    ]
    assert learned_code(lines) == [(b, "<router>")]
    assert learned_code(lines, (LEARNED_PREFIX, LEARNED_EARLY_PREFIX)) == [
        (a, "<attrs generated methods Validator>"),
        (b, "<router>"),
    ]
