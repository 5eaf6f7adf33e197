"""The seal's own state, reached from the traceback of a refusal: changing it opens nothing.

Any refusal's traceback holds the hook's frame, and its f_locals name the hook's helpers
(closures): their cells can be written (cell.cell_contents = ...). A review set the cell of
the annotation rule's word table (a dict, changed in place before) so that typing compiled
a comprehension, and ran the comprehension's own code object with types.FunctionType (no
exec event): new code after the seal; and set _image_content's devices so that a file in
/tmp read as the image's. Rule (seal_hook.make_hook): every cell the decision reads is
checked after each decision against what it held when the seal closed, and holds immutable
data; a change is refused with seal.heap, and so is every watched event after it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from summon.runtime import seal_hook

SRC = Path(__file__).resolve().parents[3] / "src"

CHILD = r"""
import json, os, sys, types, typing
tmp, attack = sys.argv[1], sys.argv[2]
from summon.runtime import seal_hook
roots = tuple(p for p in sys.path if p.startswith("/") and not p.startswith(tmp))
hook = seal_hook.make_hook(roots=roots, writable=(tmp,), enforce=True,
                           trusted_callers=frozenset(), report=lambda *a: None)
with open(tmp + "/evil.py", "w") as f:
    f.write("X = 'compiled from /tmp'\n")
sys.addaudithook(hook)
try:
    exec("1")
except PermissionError as e:
    tb = e.__traceback__
    while tb.tb_next:
        tb = tb.tb_next
    frame = tb.tb_frame  # the hook's own
helpers, todo = {}, list(frame.f_locals.values())
while todo:
    value = todo.pop()
    if isinstance(value, types.FunctionType) and value.__name__ not in helpers:
        helpers[value.__name__] = value
        todo += [c.cell_contents for c in value.__closure__ or ()]
if attack == "word_table":
    for cell in helpers["_decide"].__closure__:
        if type(cell.cell_contents) is str and len(cell.cell_contents) == 128:
            cell.cell_contents = "".join(c if c not in "fl" else "q" for c in map(chr, range(128)))
if attack.startswith("image_devices"):
    changed = []
    for cell in helpers["_image_content"].__closure__:
        v = cell.cell_contents
        if type(v) is tuple and v and type(v[0]) is tuple:
            changed.append((cell, v))
            cell.cell_contents = v + ((tmp + "/", os.stat(tmp).st_dev),)
        if type(v) is tuple and v and type(v[0]) is str:
            changed.append((cell, v))
            cell.cell_contents = v + (tmp,)
    if attack == "image_devices_undone":
        # One event sees the change; then it is undone, as a thread racing another's
        # decision would, between the hook's read and its check.
        try:
            open(tmp + "/seen", "w").close()
        except PermissionError:
            pass
        for cell, v in changed:
            cell.cell_contents = v

def comprehension():
    ref = typing.ForwardRef("[os.getpid() for x in (1,)]")
    inner = [c for c in ref.__forward_code__.co_consts if type(c) is types.CodeType][0]
    return types.FunctionType(inner, {"os": os})(iter([1]))

def from_tmp():
    g = {}
    exec(compile(open(tmp + "/evil.py").read(), tmp + "/evil.py", "exec"), g)
    return g["X"]

results = {}
for name, action in (("comprehension", comprehension), ("from_tmp", from_tmp),
                     ("write_tmp", lambda: open(tmp + "/ok", "w").close())):
    try:
        results[name] = "ok: " + repr(action())
    except PermissionError as e:
        results[name] = "refused: " + str(e)
print(json.dumps(results))
"""


def _run(tmp_path: Path, attack: str) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-S", "-B", "-c", CHILD, str(tmp_path), attack],
        env={"PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, str] = json.loads(result.stdout.splitlines()[-1])
    return found


@pytest.mark.parametrize("attack", ["word_table", "image_devices", "image_devices_undone"])
def test_a_cell_changed_after_the_seal_is_refused_by_seal_heap(tmp_path: Path, attack: str) -> None:
    """image_devices_undone: once a change was seen, the seal refuses everything, even after
    the cell holds its value again (a thread that changed a cell around another thread's
    decision and undid it before the check let a compile from /tmp through, 3 in 20000)."""
    results = _run(tmp_path, attack)
    for name in ("comprehension", "from_tmp", "write_tmp"):
        assert results[name].startswith("refused: "), results
        assert "the seal's own state" in results[name] and "seal.heap" in results[name]


def test_control_without_a_change_each_rule_holds_and_tmp_is_written(tmp_path: Path) -> None:
    results = _run(tmp_path, "none")
    assert "(it makes code)" in results["comprehension"] and "seal.code" in results["comprehension"]
    assert results["from_tmp"].startswith("refused: ") and "seal.code" in results["from_tmp"]
    assert results["write_tmp"] == "ok: None"


def test_every_cell_the_decision_reads_holds_immutable_data() -> None:
    """What the check compares by identity must not change in place: no dict, list, set."""
    hook = seal_hook.make_hook(
        roots=("/usr/lib/python3.11",),
        writable=("/tmp",),
        enforce=True,
        trusted_callers=frozenset(),
        report=lambda what, rule, enforce: None,
        known_code=frozenset({("0" * 64, "<learned>")}),  # so the syntax tree digest is in
    )
    cells = [c.cell_contents for c in hook.__closure__ or ()]
    decide: Any = next(v for v in cells if getattr(v, "__name__", "") == "_decide")
    kinds = {type(value).__name__ for _cell, value in seal_hook.closure_cells(decide)}
    assert kinds.isdisjoint({"dict", "list", "set", "bytearray"}), kinds
    assert "mappingproxy" in kinds  # the digest's tables, read-only views
