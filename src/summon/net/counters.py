"""Per-path counters: how many units took each path through the stack, and why.

A name reads `layer__condition__action`, e.g. "ipv4__bad_checksum__drop",
"arp__cache_full__evict", "udp__no_socket__icmp_unreachable". Parse failures count as
"<layer>__<reason>__drop", where reason is the typed error's `reason`. Tests assert on these;
the app reads them through `Interface.counters`.
"""

from __future__ import annotations


class Counters:
    """A bag of named counts; a name never incremented reads 0."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[str, int] = {}

    def inc(self, name: str, n: int = 1) -> None:
        self._values[name] = self._values.get(name, 0) + n

    def __getitem__(self, name: str) -> int:
        return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        """A copy of every nonzero count, sorted by name."""
        return dict(sorted(self._values.items()))

    def matching(self, prefix: str) -> dict[str, int]:
        """The counts whose names start with prefix (e.g. "ipv4__")."""
        return {k: v for k, v in sorted(self._values.items()) if k.startswith(prefix)}

    def __repr__(self) -> str:
        return f"Counters({self.snapshot()!r})"
