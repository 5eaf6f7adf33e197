"""-e KEY=VALUE, as `summon run` and `summon build` take it."""

from __future__ import annotations

import os
import re

from summon.errors import UserError

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_env(values: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for v in values:
        key, sep, value = v.partition("=")
        if not _ENV_NAME.match(key):
            raise UserError(f"-e {v}: expected KEY=VALUE with a valid variable name")
        if not sep:
            if key not in os.environ:
                raise UserError(f"-e {key}: not set in this environment; give -e {key}=VALUE")
            value = os.environ[key]
        env[key] = value
    return env
