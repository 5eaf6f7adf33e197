"""What `summon export --as seccomp` and `summon kube -o` write with: whole, or one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from summon.errors import UserError
from summon.targets.sandbox.target import write_text


def test_a_destination_under_a_file_is_one_line_naming_o(tmp_path: Path) -> None:
    # It said "Not a directory: .../afile/.x.json.PID.tmp": the cleanup's unlink failed too,
    # and its error, naming a temporary file, was the line.
    (tmp_path / "afile").write_text("")
    dest = tmp_path / "afile" / "x.json"
    with pytest.raises(UserError) as refused:
        write_text(dest, "{}")
    assert str(refused.value) == f"-o {dest}: cannot write it: Not a directory"


def test_the_text_arrives_whole_and_no_temporary_is_left(tmp_path: Path) -> None:
    dest = tmp_path / "x.json"
    write_text(dest, '{"a": 1}\n')
    assert dest.read_text() == '{"a": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]
