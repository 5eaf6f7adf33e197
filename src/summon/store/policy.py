"""The signature policy `summon run` applies: config.toml's verify_key.

Apart from signing.py, which needs cryptography (~50 ms to import): a run with no key set
never loads it.
"""

from __future__ import annotations

from pathlib import Path

from summon import paths
from summon.errors import UserError


def config_file() -> Path:
    return paths.config_dir() / "config.toml"


def default_verify_key() -> Path | None:
    """`verify_key` from config.toml, relative to the file's folder; None if unset."""
    path = config_file()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    import tomllib  # only when there is a file to read

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path} is not valid TOML: {e}") from None
    value = doc.get("verify_key")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UserError(f"{path}: verify_key must be a path to a public key (a string)")
    key = Path(value).expanduser()
    return key if key.is_absolute() else path.parent / key
