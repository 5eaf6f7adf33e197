"""Path flags that refuse '' (a shell variable unset, `-o "$OUT"`).

click reads '' as Path(''), which is Path('.'): `-o ''` said "-o .: already exists" and
`--key ''` "cannot read the private key .: Is a directory", naming a path the user never gave.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from summon.errors import UserError


class NonEmptyPath(click.Path):
    """click.Path that refuses an empty value with one line, naming the flag."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            raise UserError(f"{_name(param)} {value!r}: give a path (is a variable unset?)")
        return super().convert(value, param, ctx)


def _name(param: click.Parameter | None) -> str:
    if isinstance(param, click.Option) and param.opts:
        return param.opts[0]  # as declared: -o, as the commands' other messages name it
    if param is not None:
        return param.human_readable_name
    return "path"


def check_parent(flag: str, dest: Path) -> None:
    """Refuse an output path whose folder does not exist, as cp and `docker save -o` do:
    `summon export -o typo/site` quietly made typo/ (rootfs, browser), or said only "No such
    file or directory" (seccomp)."""
    parent = dest.absolute().parent
    if not parent.exists():
        raise UserError(f"{flag} {dest}: no folder {parent}; make it first, or give another path")
    if not parent.is_dir():
        raise UserError(f"{flag} {dest}: {parent} is not a folder")
