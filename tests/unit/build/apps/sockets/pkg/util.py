"""Test app module imported only from inside a function of a sibling."""

import colorsys


def shorten(row: list[str]) -> list[str]:
    return [*row[:1], str(colorsys.ONE_THIRD)]
