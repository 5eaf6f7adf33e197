"""The signature policy `summon run` and the gateway apply: config.toml's verify_key.

Apart from signing.py, which needs cryptography (~50 ms to import): a run with no key set
never loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from summon import paths
from summon.errors import UserError

if TYPE_CHECKING:
    from summon.store.layout import Descriptor, Store


# config.toml's keys: verify_key, and targets/snapshots.py's snapshot_cache_size. Another is
# refused: `verify-key = "team.pub"` (a typo) left every image unchecked without a word.
KEYS = ("verify_key", "snapshot_cache_size")


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
    if unknown := sorted(set(doc) - set(KEYS)):
        import difflib

        close = difflib.get_close_matches(unknown[0], KEYS, 1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise UserError(f"{path}: unknown key {unknown[0]!r}{hint}; known: {', '.join(KEYS)}")
    value = doc.get("verify_key")
    if value is None:
        return None
    if not isinstance(value, str):
        raise UserError(f"{path}: verify_key must be a path to a public key (a string)")
    if not value.strip():  # written from an unset variable: the policy is not switched off
        raise UserError(f"{path}: verify_key = {value!r}: give a public key's path, or remove it")
    key = Path(value).expanduser()
    return key if key.is_absolute() else path.parent / key


def config_rule() -> str:
    """How a refusal names this policy."""
    return f"verify_key in {config_file()}"


class SignaturePolicy:
    """config.toml's verify_key for a process that starts images for a long time (the
    gateway): the file is read at each check, so a key set or changed later applies to the
    next boot; an image digest that verified is not checked again with the same key file."""

    def __init__(self) -> None:
        self._passed: set[tuple[str, str, int]] = set()

    def check(self, store: Store, desc: Descriptor, ref: str) -> None:
        """Raise SignatureError (one line, naming the rule) unless the image may start."""
        key = default_verify_key()
        if key is None:
            return
        try:
            stamp = key.stat().st_mtime_ns
        except OSError:
            stamp = -1  # load_public_key says what is wrong with it
        seen = (desc.digest, str(key), stamp)
        if seen in self._passed:
            return
        from summon.store.signing import require_signature  # cryptography: only with a key

        require_signature(store, desc, ref, key, config_rule())
        self._passed.add(seen)
