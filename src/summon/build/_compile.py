"""Byte-compiles files for the image; run by the IMAGE's interpreter, so stdlib only.

Reads a JSON list of [source, destination, name shown in tracebacks, strict] on stdin and
writes unchecked-hash .pyc files (PEP 552): no timestamps inside, and no stat of a source at
import. A file that does not compile fails the run when strict, and is skipped otherwise.
"""

import json
import py_compile
import sys


def main() -> int:
    jobs = json.load(sys.stdin)
    for src, dst, shown, strict in jobs:
        try:
            py_compile.compile(
                src,
                cfile=dst,
                dfile=shown,
                doraise=True,
                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
            )
        except py_compile.PyCompileError as e:
            print(f"cannot compile {src}: {e.msg.strip().splitlines()[-1]}", file=sys.stderr)
            if strict:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
