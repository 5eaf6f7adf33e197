"""Path flags that refuse '' (a shell variable unset, `-o "$OUT"`).

click reads '' as Path(''), which is Path('.'): `-o ''` said "-o .: already exists" and
`--key ''` "cannot read the private key .: Is a directory", naming a path the user never gave.
"""

from __future__ import annotations

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
