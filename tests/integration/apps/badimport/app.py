"""An app whose import fails: the build must show why, in one line plus the traceback."""

import helper  # noqa: F401


def main() -> None:
    pass
