"""Test app package with relative imports."""

from . import handler

__all__ = ["handler"]
