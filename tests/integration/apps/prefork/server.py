"""A test app: forks a worker the way a pre-forking server's master does, and exits from its
except block when that fails (as gunicorn's arbiter does), after logging the error."""

import os
import sys


def spawn_worker():
    pid = os.fork()
    if pid == 0:
        os._exit(0)  # the worker would serve here
    os.waitpid(pid, 0)
    return pid


try:
    spawn_worker()
except Exception as e:
    print(f"Unhandled exception in main loop: {e!r}", file=sys.stderr, flush=True)
    sys.exit(-1)
print("worker spawned", flush=True)
