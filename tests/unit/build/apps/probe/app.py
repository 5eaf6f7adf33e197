"""Test app with probes: one that loads a module by a computed name, one that never returns."""

import importlib
import time


def main() -> None:
    pass


def warm() -> None:
    importlib.import_module("".join(["dec", "imal"]))


async def warm_async() -> None:
    importlib.import_module("".join(["frac", "tions"]))


def hang() -> None:
    while True:
        time.sleep(1)


def fail() -> None:
    raise ValueError("probe went wrong")


async def serve() -> None:
    pass
