"""Imported by app.py; raises the way a missing dependency would."""

import no_such_dependency  # noqa: F401
