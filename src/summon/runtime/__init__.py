"""Code that runs inside the image: the PID-1 runtime and the device implementations.

Everything under summon.runtime uses the stdlib only and imports as little as it can: it is
copied into every image, and every import it makes costs every image size and start time.

Apps may call ready() (docs/sealing.md).
"""

import sys


def ready() -> None:
    """The app's warm-up is done: close the seal now.

    Everything the app builds lazily (templates, dataclasses, imports that make them) must be
    built by then. A no-op outside a sealing image (the unix target, tests, the host).
    """
    seal = sys.modules.get("summon.runtime.seal")
    if seal is not None:
        seal.ready()
