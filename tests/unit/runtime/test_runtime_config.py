"""app.json reading: the small JSON reader agrees with json.loads; the shape is checked."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from summon.runtime import config
from summon.runtime.config import ConfigError, parse_json

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values, st.booleans(), st.sampled_from([None, 0, 2]))
def test_reads_what_json_writes(value: Any, ensure_ascii: bool, indent: int | None) -> None:
    text = json.dumps(value, ensure_ascii=ensure_ascii, indent=indent)
    parsed = parse_json(text)
    assert parsed == json.loads(text)
    assert repr(parsed) == repr(json.loads(text))  # the same types too: 1 is not 1.0


# Characters that make up JSON, lowercase only so that json.loads's NaN and Infinity
# extensions cannot appear.
JSONISH = st.text(alphabet='{}[],:"\\/ \t\n\r\x01-+.0123456789eEtruefalsnbu', max_size=40)


@settings(max_examples=2000)
@given(JSONISH)
def test_accepts_and_rejects_what_json_loads_does(text: str) -> None:
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            parse_json(text)
        return
    assert repr(parse_json(text)) == repr(expected)


@pytest.mark.parametrize(
    "text",
    [
        '"\\ud83d\\ude00"',  # a surrogate pair is one character
        '"\\ud800"',  # a lone surrogate stays
        '"\\ud800\\u0041"',
        '{"a": 1, "a": 2}',  # the last duplicate wins
        "-0",
        "-0.0e+5",
        "1E400",
        " \t\n\r[ ] ",
    ],
)
def test_corner_cases(text: str) -> None:
    assert repr(parse_json(text)) == repr(json.loads(text))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "NaN",
        "Infinity",
        "+1",
        "01",
        "1.",
        ".5",
        '"\\u12"',
        '"\\u+123"',
        '"\\x"',
        "[1,]",
        '{"a" 1}',
        "tru",
        "[" * 100 + "]" * 100,
        '"a\nb"',
        "1 2",
    ],
)
def test_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_json(text)


def test_load_the_documented_example(tmp_path: Path) -> None:
    file = tmp_path / "app.json"
    file.write_text(
        json.dumps(
            {
                "name": "http",
                "entry": {"kind": "function", "module": "app", "function": "main"},
                "path": ["/app", "/usr/lib/summon/site"],
                "data": {"static": "/data/static"},
                "network": "socket",
                "ports": ["80/tcp"],
                "env": {"LEVEL": "info"},
                "args": [],
                "memory": 67108864,  # keys the runtime does not use are ignored
            }
        )
    )
    cfg = config.load(str(file))
    assert (cfg.name, cfg.entry, cfg.entry_kind) == ("http", "app:main", "function")
    assert cfg.path == ["/app", "/usr/lib/summon/site"]
    assert (cfg.data, cfg.network, cfg.ports) == ({"static": "/data/static"}, "socket", ["80/tcp"])
    assert (cfg.env, cfg.args) == ({"LEVEL": "info"}, [])


def test_script_entry_and_defaults() -> None:
    cfg = config.from_dict({"entry": {"kind": "script", "path": "/app/hello.py"}})
    assert (cfg.entry, cfg.entry_path, cfg.network, cfg.path, cfg.env) == (
        "/app/hello.py",
        "/app/hello.py",
        "socket",
        [],
        {},
    )


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_app_entries_name_an_attribute(kind: str) -> None:
    cfg = config.from_dict({"entry": {"kind": kind, "module": "pkg.web", "attr": "app"}})
    assert (cfg.entry_kind, cfg.entry_module, cfg.entry_function) == (kind, "pkg.web", "app")
    assert cfg.entry == "pkg.web:app"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "app.json: must hold a JSON object"),
        (
            {"entry": {"kind": "wsgi", "module": "app", "function": "app"}},
            '\'entry\' must be {"kind": "wsgi", "module": M, "attr": A}',
        ),
        ({"entry": {"kind": "asgi", "attr": "app"}}, '{"kind": "asgi", "module": M, "attr": A}'),
        ({}, "app.json: 'entry' must be an object with a \"kind\""),
        ({"entry": {"kind": "binary"}}, '\'entry\' must be of kind "function", "script"'),
        ({"entry": {"kind": "function", "module": "app"}}, '\'entry\' must be {"kind": "fun'),
        ({"entry": {"kind": "script", "path": "app.py"}}, "an absolute image path"),
        ({"entry": {"kind": "script", "path": "/a.py"}, "path": "/app"}, "'path' must be a list"),
        ({"entry": {"kind": "script", "path": "/a.py"}, "env": {"A": 1}}, "'env' must be an obj"),
        ({"entry": {"kind": "script", "path": "/a.py"}, "args": [1]}, "'args' must be a list"),
        ({"entry": {"kind": "script", "path": "/a.py"}, "network": 1}, "'network' must be a str"),
    ],
)
def test_shape_errors(doc: object, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        config.from_dict(doc)
    assert message in str(e.value)


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^cannot read .*missing\.json: No such file"):
        config.load(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\xff")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        config.load(str(bad))


def test_seal_fields() -> None:
    base = {"entry": {"kind": "function", "module": "app", "function": "main"}}
    old = config.from_dict(base)
    assert (old.seal, old.preload, old.seal_at, old.probe) == ("off", [], "auto", "")
    doc = {
        **base,
        "probe": "app:probe",
        "volumes": ["/data"],
        "seal": {"mode": "audit", "preload": ["/x.so"], "imports": ["json"], "at": "ready"},
    }
    cfg = config.from_dict(doc)
    assert (cfg.seal, cfg.preload, cfg.seal_imports, cfg.seal_at) == (
        "audit",
        ["/x.so"],
        ["json"],
        "ready",
    )
    assert (cfg.probe, cfg.volumes) == ("app:probe", ["/data"])
    for bad in ({"mode": "maybe"}, "on", {"mode": "on", "preload": [1]}):
        with pytest.raises(ConfigError, match=r"'seal'|'preload'"):
            config.from_dict({**base, "seal": bad})


def test_seal_code_is_a_list_of_digest_and_name_pairs() -> None:
    base = {"entry": {"kind": "function", "module": "app", "function": "main"}}
    digest = "ab" * 32
    cfg = config.from_dict({**base, "seal": {"mode": "on", "code": [[digest, ""], ["", "f"]]}})
    assert cfg.seal_code == [(digest, ""), ("", "f")]
    assert config.from_dict({**base, "seal": {"mode": "on"}}).seal_code == []
    for bad in (
        {"code": "x"},
        {"code": [[digest]]},
        {"code": [["AB" * 32, ""]]},  # upper case: not what the build writes
        {"code": [["ab", ""]]},
        {"code": [[digest, 1]]},
        {"code": [(digest, "")]},  # a tuple is not what JSON loads
    ):
        with pytest.raises(ConfigError, match=r"seal\.code"):
            config.from_dict({**base, "seal": {"mode": "on", **bad}})
