"""Numeric flags that take what they show: the digits 0-9, not whatever int() reads.

Python's int() and float() (and so click's INT and FLOAT) read any script's decimal digits,
'٣' (Arabic-Indic three) or '３' (fullwidth) for 3, and '1_000' for 1000: a value that
reads as nothing in a shell history or a log is a mistake, refused before it is used.
"""

from __future__ import annotations

import re
from typing import Any

import click

_PLAIN = re.compile(r"^\s*[-+]?[0-9.eE+-]*(inf|nan)?\s*\Z", re.ASCII | re.IGNORECASE)


def plain(text: str) -> bool:
    """Whether text is written in ASCII digits (and sign, point, exponent) only."""
    return bool(_PLAIN.match(text)) and "_" not in text


def _checked(kind: click.IntRange | click.FloatRange, value: Any, param: Any, ctx: Any) -> None:
    if isinstance(value, str) and not plain(value):
        kind.fail(f"{value!r} is not a number written in the digits 0-9", param, ctx)


class IntRange(click.IntRange):
    """click.IntRange, for the digits 0-9 only."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        _checked(self, value, param, ctx)
        return super().convert(value, param, ctx)


class FloatRange(click.FloatRange):
    """click.FloatRange, for the digits 0-9 only."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        _checked(self, value, param, ctx)
        return super().convert(value, param, ctx)
