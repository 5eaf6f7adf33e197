"""A name checked with a pattern ending in `$` let a trailing newline through (`$` matches
before one): `--name $'web\\n'`, a volume, a tag, `-e $'KEY\\n=v'`, a gateway service and a
port spec were each taken, and the newline then reached file names, DNS labels and the
environment. Each check ends at the string's end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from summon.cli.envflags import parse_env
from summon.errors import UserError
from summon.gateway.config import ConfigError, parse
from summon.instances import state
from summon.store import normalize_ref
from summon.store.reference import RemoteRef
from summon.targets import volumes


@pytest.mark.parametrize("end", ["\n", "\r\n", " "])
def test_a_name_with_something_after_it_is_refused(end: str) -> None:
    state.check_name("web")
    with pytest.raises(UserError):
        state.check_name("web" + end)
    volumes.check_name("data")
    with pytest.raises(UserError):
        volumes.check_name("data" + end)
    assert normalize_ref("http:v1") == "http:v1"
    with pytest.raises(UserError):
        normalize_ref("http:v1" + end)
    RemoteRef.parse("127.0.0.1:5000/team/http:v1")
    with pytest.raises(UserError):
        RemoteRef.parse("127.0.0.1:5000/team/http:v1" + end)
    assert parse_env(("KEY=v",)) == {"KEY": "v"}
    with pytest.raises(UserError):
        parse_env(("KEY" + end + "=v",))


def _gateway(name: str) -> dict[str, Any]:
    return {
        "gateway": {"dns": "127.0.0.1:5353", "status": "127.0.0.1:8099"},
        "service": [{"name": name, "image": "http:latest", "ports": [8080]}],
    }


def test_a_gateway_service_name_with_a_newline_is_refused(tmp_path: Path) -> None:
    assert [s.name for s in parse(_gateway("web"), tmp_path / "gw.toml").services] == ["web"]
    with pytest.raises(ConfigError, match="not a DNS label"):
        parse(_gateway("web\n"), tmp_path / "gw.toml")


@pytest.mark.parametrize("name", ["café", "-web", ".web"])
def test_a_refused_name_says_which_letters_and_where(name: str) -> None:
    # 'é' is a letter and '-' was listed: "use letters, digits, '.', '_' and '-'" read as
    # if these names were fine.
    with pytest.raises(UserError, match=r"use ASCII letters.*starting with a letter or digit"):
        state.check_name(name)
    with pytest.raises(UserError, match=r"use ASCII letters.*starting with a letter or digit"):
        volumes.check_name(name)
