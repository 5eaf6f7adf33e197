"""Hints for what an app tried that an image cannot do: fork, or start another program.

The sandbox's seccomp filter answers EPERM to fork, vfork and execve. A pre-forking server
(gunicorn, uvicorn --workers, multiprocessing) then fails with a bare PermissionError; the
runtime adds one line saying why and what to do instead. Imported only on that error path.
"""

from __future__ import annotations

from errno import EPERM

# Not from typing: importing typing costs ~9 ms at every start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

# Names a function calls to make a process, as its code object lists them (co_names).
FORK_NAMES = frozenset(("fork", "forkpty"))
EXEC_NAMES = frozenset(
    ("fork_exec", "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp",
     "execlpe", "posix_spawn", "posix_spawnp", "spawnv", "spawnve", "system", "popen")
)  # fmt: skip
FORK_HINT = (
    "this app tried to fork (pre-forking servers such as gunicorn cannot run here); "
    'serve it with entry = "module:app" so summon\'s runtime serves it'
)
EXEC_HINT = (
    "this app tried to start another program or process, which the sandbox denies: an image "
    "runs one Python process; use threads or asyncio instead"
)


def chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception behind it: causes, contexts, members of groups."""
    pending: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while pending:
        e = pending.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        pending += [e.__cause__, e.__context__]
        if isinstance(e, BaseExceptionGroup):
            pending += e.exceptions


def sandbox_hint(exc: BaseException) -> str | None:
    """The hint for a fork or exec denied with EPERM, if that is (behind) `exc`.

    Which call failed is read from the innermost frame: os.fork raises from C, so the last
    Python frame is the one that called it, and its code's co_names hold the name.
    """
    for e in chain(exc):
        if not (isinstance(e, OSError) and e.errno == EPERM):
            continue
        tb = e.__traceback__
        if tb is None:
            continue
        while tb.tb_next is not None:
            tb = tb.tb_next
        names = set(tb.tb_frame.f_code.co_names)
        if names & FORK_NAMES:
            return FORK_HINT
        if names & EXEC_NAMES:
            return EXEC_HINT
    return None
