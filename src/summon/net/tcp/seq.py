"""Sequence-number arithmetic: TCP numbers bytes modulo 2**32, so every comparison is modular.

Two numbers compare by the sign of their difference read as a signed 32-bit integer (RFC 9293
section 3.4, "serial number" arithmetic). The comparison is only meaningful for numbers less than
2**31 apart, which holds because no window or flight exceeds 2**30 bytes (window scale <= 14).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

MASK = 0xFFFFFFFF
_HALF = 0x80000000


def seq_add(a: int, n: int) -> int:
    """a + n in sequence space (n may be negative)."""
    return (a + n) & MASK


def seq_diff(a: int, b: int) -> int:
    """The signed distance a - b, in [-2**31, 2**31)."""
    d = (a - b) & MASK
    return d - 0x100000000 if d & _HALF else d


def seq_lt(a: int, b: int) -> bool:
    """a comes before b."""
    return bool((a - b) & _HALF)


def seq_le(a: int, b: int) -> bool:
    """a comes before b, or equals it."""
    return a == b or bool((a - b) & _HALF)


def seq_gt(a: int, b: int) -> bool:
    """a comes after b."""
    return bool((b - a) & _HALF)


def seq_ge(a: int, b: int) -> bool:
    """a comes after b, or equals it."""
    return a == b or bool((b - a) & _HALF)


def seq_in(x: int, start: int, size: int) -> bool:
    """start <= x < start + size, in sequence space (size >= 0, < 2**31)."""
    return ((x - start) & MASK) < size


def seq_max(a: int, b: int) -> int:
    """The later of a and b."""
    return a if seq_ge(a, b) else b


def new_iss(random_bytes: Callable[[int], bytes]) -> int:
    """A random initial sequence number (RFC 6528's goal: unpredictable to off-path attackers)."""
    return int.from_bytes(random_bytes(4), "big")
