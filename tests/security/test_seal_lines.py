"""The seal's console lines cannot be used up by one kind of refusal to hide another.

Each distinct refusal is said once, within a quota per rule (seal_said.py): an app that makes
many different refusals of one rule (writes to a hundred paths) still has the first refusal of
any other rule said, with its rule, and the instance's end says how many went unsaid.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hostile_apps import needs_sandbox
from sealed_image import SealedImage, make_sealed_image

from summon.runtime.seal_said import PER_RULE

pytestmark = needs_sandbox

FLOOD = r"""
import json
from summon.devices import Stack


async def main(stack: Stack) -> int:
    server = await stack.start_server(lambda reader, writer: writer.close(), 8000)
    refused = 0
    for i in range(100):
        try:
            open(f"/dev/flood-{i}", "w")
        except PermissionError:
            refused += 1
    try:
        exec("1 + 1")
        late = "ran"
    except PermissionError as e:
        late = str(e)
    print(json.dumps({"probe": "flood", "refused": refused, "late": late}), flush=True)
    server.close()
    return 0
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealedImage]:
    yield make_sealed_image(tmp_path_factory.mktemp("lines"))


def test_a_flood_of_one_rule_does_not_hide_another_rule(image: SealedImage) -> None:
    """Rules seal.write and seal.code: a hundred refused writes fill seal.write's quota of
    lines; the exec after them is still said with seal.code, and the end counts the rest."""
    run = image.run({"flood.py": FLOOD}, image.app_json("flood:main"))
    assert run.status == 0, run.output
    got = run.results["flood"]
    assert got["refused"] == 100 and "seal.code" in got["late"], got
    writes = [line for line in run.lines("summon: sealed: refused") if "seal.write" in line]
    assert len(writes) == PER_RULE + 1, writes  # the quota, then the line that says so
    assert "the rest are counted" in writes[-1], writes[-1]
    code = [line for line in run.output.splitlines() if "seal.code" in line and "summon:" in line]
    assert len(code) == 1 and "compile of code from '<string>'" in code[0], run.output
    untold = 100 - PER_RULE - 1
    summary = (
        f"summon: sealed: {untold} more refusals were not said one by one ({untold} by seal.write)"
    )
    assert summary in run.output.splitlines(), run.output
