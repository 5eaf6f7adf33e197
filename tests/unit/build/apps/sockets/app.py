"""Test app: sockets and asyncio at import; more imports only inside functions."""

import asyncio
import socket

from pkg import handler

print("noise on stdout while the trace runs")


async def main() -> None:
    import json  # only inside a function: the static scan must still find it
    from xml.etree import ElementTree  # a submodule named with from-import

    try:
        import summon_test_no_such_module  # noqa: F401
    except ImportError:
        pass
    print(json.dumps({}), ElementTree, socket, asyncio, handler)


def later() -> None:
    import flaky  # imports, but raises: a warning, not an error

    print(flaky)
