"""-e KEY=VALUE and --env-file FILE, as `summon run` and `summon build` take them."""

from __future__ import annotations

import os
import re
from pathlib import Path

from summon.errors import UserError

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")


def parse_env(values: tuple[str, ...], files: tuple[str, ...] = ()) -> dict[str, str]:
    """The variables of the env files, in order, then of the -e flags: a later one wins."""
    env: dict[str, str] = {}
    for file in files:
        env.update(read_env_file(file))
    for v in values:
        key, sep, value = v.partition("=")
        if not _ENV_NAME.match(key):
            raise UserError(f"-e {v}: expected KEY=VALUE with a valid variable name")
        if not sep:
            if key not in os.environ:
                raise UserError(f"-e {key}: not set in this environment; give -e {key}=VALUE")
            value = os.environ[key]
        if not is_text(value):  # the name only: the value may be a secret
            raise UserError(f"-e {key}: its value is not UTF-8 text{NOT_TEXT}")
        env[key] = value
    return env


# Why bytes that are no text are refused, not passed on: runc's config and qemu's kernel
# command line are text, and the sandbox gave the app U+FFFD for each such byte.
NOT_TEXT = " (an instance's environment and arguments are text on every target)"


def is_text(value: str) -> bool:
    """Whether value is text: not bytes of no encoding, which Python holds as surrogates."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# An environment is at most a few hundred KiB (execve's limit); a bigger file is a mistake.
MAX_ENV_FILE = 1 << 20


def read_env_file(file: str) -> dict[str, str]:
    """An env file as docker's --env-file reads it: KEY=VALUE lines, the value as written (no
    quotes removed, no $expansion); KEY alone takes this environment's value; blank lines and
    lines starting with # are skipped."""
    if not file.strip():  # an unset "$ENV_FILE": Path('') is '.', "cannot read: Is a directory"
        raise UserError(f"--env-file {file!r}: give a path (is a variable unset?)")
    try:
        with Path(file).open("rb") as f:
            data = f.read(MAX_ENV_FILE + 1)  # a FIFO (<(cmd)) reads too; /dev/zero ends
        text = data.decode("utf-8")
    except OSError as e:
        raise UserError(f"--env-file {file}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise UserError(f"--env-file {file}: not UTF-8 text") from None
    if len(data) > MAX_ENV_FILE:
        raise UserError(f"--env-file {file}: over {MAX_ENV_FILE >> 20} MiB: not an env file")
    env: dict[str, str] = {}
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.removesuffix("\r").lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        where = f"--env-file {file}:{number}"
        if not _ENV_NAME.match(key):
            # The name only: what follows an = may be a secret, not for a log.
            shown = key if len(key) <= 40 else key[:37] + "..."
            why = "expected KEY=VALUE with a valid variable name"
            if key.startswith("export "):
                why += " (an env file is not a shell script: drop the `export`)"
            raise UserError(f"{where}: {shown!r}: {why}")
        if "\0" in value:
            raise UserError(f"{where}: {key}: a value cannot hold a NUL byte")
        if not sep:
            if key not in os.environ:
                raise UserError(f"{where}: {key} is not set in this environment; write {key}=VALUE")
            value = os.environ[key]
            if not is_text(value):
                raise UserError(f"{where}: {key}: its value here is not UTF-8 text{NOT_TEXT}")
        env[key] = value
    return env
