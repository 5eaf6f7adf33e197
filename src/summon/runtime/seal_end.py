"""How a sealed instance ends: before the interpreter's finalization, which runs code unhooked.

Image-side: stdlib only.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def exit_hook(status: list[Any]) -> Callable[[str, tuple[Any, ...]], None]:
    """The last audit hook of a sealed instance: the instance ends before the interpreter's
    finalization runs code with no audit hook.

    Python raises its last audit event ("cpython.PyInterpreterState_Clear") as it finalizes,
    after the threads' join, atexit and the flush of stdio, then drops the hooks and clears
    the modules, which runs the __del__ of what they held: code that ran after the seal could
    leave an object there whose __del__ exec()s a string, and it ran unsealed. Here the
    process exits at that event (os._exit, with the status seal.exiting() gave), so nothing runs
    after it; objects alive at exit are not finalized, which Python does not promise anyway.
    Everything it uses is bound now; the status is checked to be a plain int, since the list
    can be reached from the Sealer.
    """
    exit_now, int_type, type_of, stdio = os._exit, int, type, sys
    event_name = "cpython.PyInterpreterState_Clear"

    def exit_before_finalization(event: str, args: tuple[Any, ...]) -> None:
        if event != event_name:
            return
        code = 1
        try:
            if type_of(status[0]) is int_type:
                code = status[0] & 0xFF
            for stream in (stdio.stdout, stdio.stderr):
                stream.flush()
        except BaseException:
            pass
        finally:
            exit_now(code)

    return exit_before_finalization
