"""The typed errors every layer raises for bad input; a parser raises these and nothing else."""

from __future__ import annotations


class NetError(Exception):
    """Base of the stack's own errors."""


class ParseError(NetError):
    """Bytes that are not a valid unit of some layer.

    The message names the broken condition and the values seen, e.g.
    "ipv4: header length 4 words < 5".
    """

    layer = "net"

    def __init__(self, message: str) -> None:
        super().__init__(f"{self.layer}: {message}")


class IntegrityError(ParseError):
    """Step one failed: lengths or a checksum do not hold, so no field can be trusted."""


class SanityError(ParseError):
    """Step two failed: the unit is well formed but means something invalid (port 0, SYN+FIN)."""
