"""The two kinds of failure summon reports: the user's (exit 2) and its own (exit 1)."""

from __future__ import annotations


class SummonError(Exception):
    """Base of every error summon raises on purpose."""

    exit_status = 1


class UserError(SummonError):
    """Something the user can fix: bad input, a missing tool, an unknown name.

    The message is one line that says what is wrong and what to do.
    """

    exit_status = 2


class ManifestError(UserError):
    """The app manifest is missing, malformed or names something that does not exist."""


class BuildError(UserError):
    """The app could not be built: its entry does not import, a requirement fails..."""


class UnknownImage(UserError):
    """No image in the store answers to that reference."""


class CorruptBlob(UserError):
    """A blob does not match the digest it is stored or referenced under."""


class TargetUnavailable(UserError):
    """The chosen target cannot run on this host (a runtime is missing, no privileges...)."""
