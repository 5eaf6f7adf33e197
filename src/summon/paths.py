"""Where summon keeps its files on the host, after the XDG base directory spec."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    base = Path(value) if value and os.path.isabs(value) else Path.home() / default
    return base / "summon"


def data_dir() -> Path:
    """Long-lived data: the image store."""
    return _xdg("XDG_DATA_HOME", ".local/share")


def config_dir() -> Path:
    """The user's settings (config.toml)."""
    return _xdg("XDG_CONFIG_HOME", ".config")


def cache_dir() -> Path:
    """Things summon can make again: unpacked root filesystems, pip downloads, kernels."""
    return _xdg("XDG_CACHE_HOME", ".cache")


def state_dir() -> Path:
    """Per-instance state: runtime bundles, logs."""
    return _xdg("XDG_STATE_HOME", ".local/state")


def store_dir() -> Path:
    # Empty is unset, as an XDG variable's: Path("") is the current folder, and
    # `SUMMON_STORE= summon images` made a store wherever the user stood.
    value = os.environ.get("SUMMON_STORE", "")
    return Path(value) if value else data_dir() / "store"
