"""Test app module whose only imports sit in a function, one of them relative."""


def parse(text: str) -> list[list[str]]:
    import csv

    from .util import shorten

    return [shorten(row) for row in csv.reader([text])]
