"""Test app whose import fails."""

import summon_test_missing_dependency  # noqa: F401


def main() -> None:
    pass
