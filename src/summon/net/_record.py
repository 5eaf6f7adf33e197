"""The base of the stack's packet records: equality and repr from __slots__.

dataclasses would cost ~30 ms of import time (it pulls in inspect) in every image that uses
the direct stack; these few lines do what the records need.
"""

from __future__ import annotations


class Record:
    """A value object whose fields are its __slots__; equal when type and fields are."""

    __slots__: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"
