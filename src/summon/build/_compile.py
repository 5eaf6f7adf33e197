"""Byte-compiles files for the image; run by the IMAGE's interpreter, so stdlib only.

Reads a JSON list of [source, destination, name shown in tracebacks, strict] on stdin and
writes unchecked-hash .pyc files (PEP 552): no timestamps inside, and no stat of a source at
import. A file that does not compile fails the run when strict, and is skipped otherwise; a .pyc
that cannot be written (a full disk) fails it with WRITE_FAILED.
"""

import json
import py_compile
import sys

# The exit status (and the line before it) of a failure to write: a full or read-only disk
# under the build's folder, which the build says as the host's failure, naming the folder.
WRITE_FAILED = 3


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
        except OSError as e:  # writing dst (py_compile raises it as it is)
            print(f"cannot write: {e.errno} {dst}", file=sys.stderr)
            return WRITE_FAILED
        except py_compile.PyCompileError as e:
            print(f"cannot compile {src}: {e.msg.strip().splitlines()[-1]}", file=sys.stderr)
            if strict:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
