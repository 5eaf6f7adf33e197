"""What the build's recording run says of the code the app made from strings (the runtime's
"learned" lines, seal.Sealer._learned), and the build's notes on it (syscalls.py, image.py)."""

from __future__ import annotations

import ast
from collections.abc import Sequence

from summon.runtime.seal import LEARNED_PREFIX

# (SHA-256 of a source, or "" for code compiled before the seal, file name), sorted.
Learned = list[tuple[str, str]]


def learned_code(lines: Sequence[str], prefixes: Sequence[str] = (LEARNED_PREFIX,)) -> Learned:
    """What a learning run's runtime said it let through (seal.Sealer._learned's lines; with
    LEARNED_EARLY_PREFIX among prefixes, also what it compiled before the seal): each
    (sha256, file name) once, and a name alone only when no compile learned it."""
    markers = tuple("summon: " + prefix for prefix in prefixes)
    found: set[tuple[str, str]] = set()
    for line in lines:
        for marker in markers:
            head, sep, rest = line.partition(marker)
            if sep and not head:
                break
        else:
            continue
        digest, _, quoted = rest.partition(" ")
        try:
            name = ast.literal_eval(quoted)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            continue
        if not isinstance(name, str):
            continue
        digest = "" if digest == "-" else digest
        if digest and (len(digest) != 64 or digest.strip("0123456789abcdef")):
            continue
        found.add((digest, name))
    compiled = {name for digest, name in found if digest}
    return sorted((d, n) for d, n in found if d or n not in compiled)


def learned_note(after: Learned, total: int) -> str:
    """The build's word on the code its recording run saw the app make after the seal (of
    total pieces the image lets through, the rest made before the seal, as the app started)."""
    names = sorted({name or "''" for _digest, name in after})
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    started = f", and {total - len(after)} it made as it started" if total > len(after) else ""
    return (
        f"the app compiled or ran {len(after)} piece(s) of code from strings after the seal "
        f"in the recording run ({shown}); the sealed image lets exactly those through{started} "
        '(app.json seal.code; docs/sealing.md, "Code the build saw")'
    )


def warm_note(paths: Sequence[str], table: str) -> str:
    """The build's word on the warm-up paths it adds (image.py)."""
    shown = ", ".join(f'"{p}"' for p in paths[:5]) + (" ..." if len(paths) > 5 else "")
    return (
        f"the recording run's requests for {shown} made code after the seal: the runtime "
        "asks for them before the seal at every start (app.json seal.warm_up); set warm_up "
        f"in {table} to choose the paths yourself (docs/sealing.md)"
    )
