"""requirements.txt: an app's requirements when its manifest names none.

A manifest's `requirements` come first, then pyproject.toml's [project].dependencies; an app
with neither but a requirements.txt beside its manifest is built with that file's, as pip
would install them. What a line can say beyond a requirement is pip's own business (an index,
hashes, constraints, editable checkouts): summon vendors requirement strings, so such a line
is refused with its file and line number rather than silently dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

FILE_NAME = "requirements.txt"
_COMMENT = re.compile(r"(^|\s+)#.*$")
_INCLUDE = re.compile(r"^(?:-r\s*|--requirement(?:\s+|=))(?P<file>\S.*)$")


def read(path: Path, bad: Callable[[str], Exception], table: str = "the manifest") -> list[str]:
    """The requirement strings of path (and of the files it includes with -r); table: where
    the manifest's keys are written, for messages ("[tool.summon]", "summon.toml")."""
    return _read(path.resolve(), bad, (), table)


def _read(
    path: Path, bad: Callable[[str], Exception], seen: tuple[Path, ...], table: str
) -> list[str]:
    if path in seen:
        raise bad(f"{path} includes itself (through -r)")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise bad(f"cannot read {path}: {e}") from None
    found: list[str] = []
    for number, line in _logical_lines(text):
        where = f"{path.name} line {number}"
        if m := _INCLUDE.match(line):
            found += _read((path.parent / m["file"].strip()).resolve(), bad, (*seen, path), table)
        elif line.startswith("-"):
            option = line.split()[0].split("=")[0]
            raise bad(f"{where}: {option} is pip's option, not a requirement; {_instead(table)}")
        elif " --" in line or "\t--" in line:
            option = line[line.index("--") :].split()[0].split("=")[0]
            raise bad(f"{where}: {option} is pip's option, not a requirement; {_instead(table)}")
        else:
            found.append(line)
    return found


def _instead(table: str) -> str:
    return (
        "list the requirements alone (an index comes from pip's own configuration, such as "
        f"PIP_INDEX_URL), or put them in requirements = [...] in {table}"
    )


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, line) with comments gone, continuations joined, blanks dropped."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        line = _COMMENT.sub("", pending + raw).strip()
        pending = ""
        if line:
            lines.append((start, line))
    if tail := _COMMENT.sub("", pending).strip():
        lines.append((start, tail))
    return lines
