"""The app manifest: what is accepted, and the one-line errors for what is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from summon import manifest
from summon.errors import ManifestError


def write_app(tmp_path: Path, table: str, *, pyproject: bool = True) -> Path:
    (tmp_path / "app.py").write_text("def main():\n    return 0\n")
    (tmp_path / "static").mkdir()
    if pyproject:
        (tmp_path / "pyproject.toml").write_text(
            '[project]\nname = "demo_app"\nversion = "1.2"\ndependencies = ["h11==0.14.0"]\n\n'
            "[tool.summon]\n" + table
        )
    else:
        (tmp_path / "summon.toml").write_text(table)
    return tmp_path


def test_pyproject_table_with_defaults_from_project(tmp_path: Path) -> None:
    app = write_app(
        tmp_path,
        'entry = "app:main"\ndata = ["static"]\nports = [80, "53/udp"]\n'
        'memory = "64M"\nenv = {LEVEL = "info"}\n',
    )
    m = manifest.load(app)
    assert m.name == "demo-app"
    assert m.version == "1.2"
    assert m.entry == manifest.Entry("function", module="app", function="main")
    assert m.requirements == ("h11==0.14.0",)
    assert [str(p) for p in m.ports] == ["80/tcp", "53/udp"]
    assert m.memory == 64 * 1024 * 1024
    assert m.data == (app / "static",)
    assert m.env == {"LEVEL": "info"}
    assert m.source == app / "pyproject.toml"


def test_summon_toml_and_script_entry(tmp_path: Path) -> None:
    app = write_app(
        tmp_path, 'name = "hello"\nentry = "app.py"\nnetwork = "none"\n', pyproject=False
    )
    m = manifest.load(app)
    assert m.entry.kind == "script" and m.entry.script == "app.py"
    assert m.network == "none"
    assert m.requirements == ()


@pytest.mark.parametrize(
    ("table", "expect"),
    [
        (
            'entry = "app:main"\nnetwrok = "socket"\n',
            "netwrok: unknown key (did you mean 'network'?)",
        ),
        ('entry = "app:main"\nports = "80"\n', "ports: expected a list of port numbers"),
        ('entry = "app:main"\nports = [70000]\n', "ports: 70000 is not a port number"),
        (
            'entry = "app:main"\nnetwork = "tcp"\n',
            "network: 'tcp' is not one of socket, direct, none",
        ),
        ('entry = "app:main"\nmemory = "lots"\n', "memory: 'lots' is not a size"),
        ('entry = "app:main"\ndata = ["nope"]\n', "data: 'nope' is not a folder"),
        ('entry = "nomod:main"\n', "entry: module 'nomod' not found"),
        ('entry = "app:main:x"\n', 'is not "module:function"'),
        ('entry = "missing.py"\n', "entry: script 'missing.py' not found"),
        ('data = ["static"]\n', "entry: missing"),
        ('entry = "app:main"\nenv = {"1X" = "a"}\n', "env: '1X' is not a valid variable name"),
        ('entry = "app:main"\ninclude = ["no such"]\n', "include: 'no such' is not a module name"),
        ('entry = "app:main"\nexclude = ["x-y"]\n', "exclude: 'x-y' is not a module name"),
        ('entry = "app:main"\nexclude = "ssl"\n', "exclude: expected a list of module names"),
        (
            'entry = "app:main"\ninclude = ["ssl"]\nexclude = ["ssl"]\n',
            "exclude: 'ssl' is also in include; keep it in one of the two",
        ),
        ('entry = "app:main"\n[oops\n', "not valid TOML"),
        ('entry = "app:main"\ninterface = "cgi"\n', "interface: 'cgi' is not one of wsgi, asgi"),
        ('entry = "app.py"\ninterface = "wsgi"\n', 'interface: applies to an entry "module:app"'),
    ],
)
def test_bad_manifest_is_one_line_naming_file_and_key(
    tmp_path: Path, table: str, expect: str
) -> None:
    app = write_app(tmp_path, table)
    with pytest.raises(ManifestError) as e:
        manifest.load(app)
    msg = str(e.value)
    assert expect in msg
    assert str(app / "pyproject.toml") in msg
    assert "\n" not in msg


@pytest.mark.parametrize("interface", ["wsgi", "asgi"])
def test_interface_is_read(tmp_path: Path, interface: str) -> None:
    m = manifest.load(write_app(tmp_path, f'entry = "app:main"\ninterface = "{interface}"\n'))
    assert m.interface == interface and m.entry.kind == "function"


def test_interface_defaults_to_none_said(tmp_path: Path) -> None:
    assert manifest.load(write_app(tmp_path, 'entry = "app:main"\n')).interface == ""


def test_no_manifest_at_all(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"no summon\.toml or pyproject\.toml"):
        manifest.load(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    with pytest.raises(ManifestError, match=r"no \[tool.summon\] table"):
        manifest.load(tmp_path)


def test_parse_size() -> None:
    def bad(why: str) -> ValueError:
        return ValueError(why)

    assert manifest.parse_size("48M", bad) == 48 << 20
    assert manifest.parse_size("1G", bad) == 1 << 30
    assert manifest.parse_size("512k", bad) == 512 << 10
    assert manifest.parse_size("64MiB", bad) == 64 << 20
    assert manifest.parse_size(4096, bad) == 4096
