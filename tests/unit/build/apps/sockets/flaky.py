"""Test app module that fails whenever it is imported."""

raise RuntimeError("flaky refuses to import")
