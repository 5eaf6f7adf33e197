"""The cells the seal's hook reads: what each held when the seal closed (seal_hook.py).

Image-side: stdlib only.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["closure_cells"]


def closure_cells(function: Any) -> list[tuple[Any, Any]]:
    """(cell, what it holds now) of every cell in function's closure and, through them, of
    every Python function it reaches."""
    out: list[tuple[Any, Any]] = []
    seen, todo = [function], [function]
    while todo:
        for cell in todo.pop().__closure__ or ():
            out.append((cell, cell.cell_contents))
            value = cell.cell_contents
            if type(value) is type(function) and not [f for f in seen if f is value]:
                seen.append(value)
                todo.append(value)
    return out
