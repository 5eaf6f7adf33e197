"""The seal while another thread imports: nothing it reads of sys.modules may change under it."""

from __future__ import annotations

import sys
import threading
import types

from summon.runtime import seal


def test_forgetting_ctypes_survives_another_thread_importing_meanwhile() -> None:
    """asyncio's getaddrinfo thread imports encodings.idna while the main thread seals: the
    seal once died of "dictionary changed size during iteration" (a gateway boot, 1 in ~50)."""
    stop = threading.Event()

    def importer() -> None:  # sys.modules grows and shrinks, as imports and their undo do
        n = 0
        while not stop.is_set():
            name = f"_summon_test_mod_{n % 64}"
            sys.modules[name] = types.ModuleType(name)
            sys.modules.pop(f"_summon_test_mod_{(n + 32) % 64}", None)
            n += 1

    kept = {n: m for n, m in sys.modules.items() if n == "_ctypes" or n.startswith("ctypes")}
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    thread = threading.Thread(target=importer, daemon=True)
    thread.start()
    try:
        for _ in range(300):
            fake = types.ModuleType("ctypes._summon_test")
            sys.modules["ctypes._summon_test"] = fake
            seal.forget_ctypes()
            assert "ctypes._summon_test" not in sys.modules
    finally:
        stop.set()
        thread.join()
        sys.setswitchinterval(interval)
        for name in [n for n in list(sys.modules) if n.startswith("_summon_test_mod_")]:
            del sys.modules[name]
        sys.modules.update(kept)  # the real ctypes, for the tests after this one
