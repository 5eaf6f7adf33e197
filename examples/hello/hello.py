"""A plain stdlib script (POSIX mode): greets, then exits with the status it is given.

The status is the first argument, else HELLO_STATUS, else 0, so a test can see an exit
status travel from the app through the runtime and the target to the caller.
"""

import os
import sys


def main() -> int:
    name = os.environ.get("HELLO_NAME", "world")
    print(f"hello, {name}")
    status = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("HELLO_STATUS", "0")
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
