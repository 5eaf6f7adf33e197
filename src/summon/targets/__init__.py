"""Where an image runs: the registry of targets, each one module or package behind targets.base.

Everything that needs a target by name asks here: the CLI's --target choices, the gateway
config, the instance monitor, the benchmarks. Adding a target is a new module and one line in
TARGETS; nothing in cli/, gateway/ or instances/ names a target. Target modules are imported
only when that target is used, so `summon ps` never pays for QEMU's code. A module the
registry names may answer default_preference() itself, as a function (the qemu package does),
so that a `summon run` naming no target asks every target without importing their machinery.
"""

from __future__ import annotations

import importlib

from summon.errors import UserError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from summon.targets.base import Target

# The one place a target's name may be spelled outside this package: the default, when no
# target says it is a better choice on this host (see choose_default).
DEFAULT_TARGET = "sandbox"

# name -> "module:class". Order is the order shown in help and in `summon doctor`.
TARGETS: dict[str, str] = {
    "sandbox": "summon.targets.sandbox:SandboxTarget",
    "qemu": "summon.targets.qemu:QemuTarget",
    "unix": "summon.targets.unix:UnixTarget",
    "browser": "summon.targets.browser:BrowserTarget",
}

_classes: dict[str, type[Target]] = {}


class UnknownTarget(UserError):
    """No target is registered under that name."""


def register(name: str, target: str | type[Target]) -> None:
    """Add a target: "module:class" (imported when first used) or the class itself."""
    if isinstance(target, str):
        TARGETS[name] = target
        _classes.pop(name, None)
    else:
        TARGETS[name] = f"{target.__module__}:{target.__qualname__}"
        _classes[name] = target


def unregister(name: str) -> None:
    """Remove a target (tests register fakes and take them away again)."""
    TARGETS.pop(name, None)
    _classes.pop(name, None)


def names() -> list[str]:
    """Every registered target's name."""
    return list(TARGETS)


def target_class(name: str) -> type[Target]:
    """The class of the target called name, importing its module on first use."""
    cls = _classes.get(name)
    if cls is not None:
        return cls
    where = TARGETS.get(name)
    if where is None:
        raise UnknownTarget(f"unknown target {name!r}; targets: {', '.join(names())}")
    module_name, _, class_name = where.partition(":")
    module = importlib.import_module(module_name)
    found: type[Target] = getattr(module, class_name)
    _classes[name] = found
    return found


def get(name: str, **options: Any) -> Target:
    """The target called name, made with options (e.g. accel="tcg" for a VM target).

    An option the target does not take is the user's mistake: the error says which targets
    take it, so that `--accel` on the wrong target reads as it should.
    """
    cls = target_class(name)
    given = {k: v for k, v in options.items() if v is not None}
    for key in given:
        if key not in cls.options:
            takers = [n for n in names() if key in target_class(n).options]
            # A flag pair's off side as given: `--no-snapshot` read "--snapshot is not an..."
            flag = ("--no-" if given[key] is False else "--") + key.replace("_", "-")
            where = f"it is for: {', '.join(takers)}" if takers else "no target takes it"
            raise UserError(f"{flag} is not an option of target {name} ({where})")
    return cls(**given)


def choose_default() -> tuple[str, str]:
    """(target, why) for a run that names none: the target that ranks itself highest here.

    Each target's default_preference() says how much it wants to be the default on this host
    (0: not at all) and why. The why is the chosen target's own, else why the targets that
    declined did so (no usable KVM, say).
    """
    best, best_rank, best_why, declined = DEFAULT_TARGET, 0, "", []
    for name in names():
        rank, why = _preference(name)
        if rank > best_rank:
            best, best_rank, best_why = name, rank, why
        elif rank == 0 and why:
            declined.append(why)
    return best, best_why or "; ".join(declined) or "the default"


def _preference(name: str) -> tuple[int, str]:
    """The target's default_preference(): from a function of that name in the module the
    registry names, when it has one (so that choosing the default imports no target's
    machinery: the qemu target's is 20-30 ms), else from the target's class."""
    module_name = TARGETS[name].partition(":")[0]
    light = getattr(importlib.import_module(module_name), "default_preference", None)
    if callable(light):
        found: tuple[int, str] = light()
        return found
    return target_class(name).default_preference()


def export_formats() -> dict[str, str]:
    """Every format `summon export --as` knows -> the target that provides it."""
    found: dict[str, str] = {}
    for name in names():
        for fmt in target_class(name).export_formats:
            found.setdefault(fmt, name)
    return found
