"""A test app for restart policies and stops: prints a line, then exits with CRASH_STATUS (3).

CRASH_SLEEP=N: stay up N seconds first. CRASH_IGNORE_TERM=1: ignore SIGTERM meanwhile, so
only a kill ends it.
"""

import os
import signal
import sys
import time

status = int(os.environ.get("CRASH_STATUS", "3"))
if os.environ.get("CRASH_IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(f"crash app up, exiting with {status}", flush=True)
time.sleep(float(os.environ.get("CRASH_SLEEP", "0")))
sys.exit(status)
