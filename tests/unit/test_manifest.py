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


def test_ports_take_ranges(tmp_path: Path) -> None:
    # FTP's passive ports and the like: one entry per port was the only way (dozens).
    app = write_app(tmp_path, 'entry = "app:main"\nports = [21, "21000-21002", "53-54/udp"]\n')
    assert [str(p) for p in manifest.load(app).ports] == [
        "21/tcp", "21000/tcp", "21001/tcp", "21002/tcp", "53/udp", "54/udp",
    ]  # fmt: skip


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
        ('entry = "app:main"\nports = "80"\n', "ports: expected a list of ports, such as"),
        ('entry = "app:main"\nports = [70000]\n', "ports: 70000 is not a port number"),
        ('entry = "app:main"\nports = ["21010-21000"]\n', "ports: '21010-21000' ends before"),
        ('entry = "app:main"\nports = [21, "20-22"]\n', "ports: '20-22': port 21/tcp is given"),
        ('entry = "app:main"\nports = ["1-2000"]\n', "ports: over 1024 ports"),
        ('entry = "app:main"\nports = ["80-x"]\n', "ports: '80-x' is not a port such as"),
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
        (
            'entry = "app:main"\nenv = {SUMMON_SEAL_LEARN = "1"}\n',
            "env: SUMMON_SEAL_LEARN is the build's recording run's own",
        ),
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
        ('entry = "app:app"\nwarm_up = "/"\n', "warm_up: expected"),
        ('entry = "app:app"\nwarm_up = ["items"]\n', "warm_up: 'items' is not a path such as"),
        ('entry = "app:app"\nwarm_up = ["/a b"]\n', "warm_up: '/a b' is not a path such as"),
        ('entry = "app:app"\nwarm_up = [1]\n', "warm_up: 1 is not a path such as"),
        ('entry = "app.py"\nwarm_up = ["/"]\n', "warm_up: applies to a WSGI or ASGI entry"),
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


def test_warm_up_paths_are_read_and_default_to_none_said(tmp_path: Path) -> None:
    table = 'entry = "app:app"\nwarm_up = ["/", "/items?page=1"]\n'
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert manifest.load(write_app(tmp_path / "a", table)).warm_up == ("/", "/items?page=1")
    assert manifest.load(write_app(tmp_path / "b", 'entry = "app:app"\n')).warm_up is None


def test_the_name_defaults_to_the_app_folders(tmp_path: Path) -> None:
    """As `docker build`, a manifest without a name (and no [project].name) builds: the
    image is named after its folder, and a folder name that is no image name says so."""
    (tmp_path / "My_App").mkdir()
    app = write_app(tmp_path / "My_App", 'entry = "app:main"\n', pyproject=False)
    assert manifest.load(app).name == "my-app"
    (tmp_path / "not ok").mkdir()
    odd = write_app(tmp_path / "not ok", 'entry = "app:main"\n', pyproject=False)
    with pytest.raises(ManifestError, match=r"name: 'not ok' is not a valid image name.*"
                       r"it is the folder's, used when none is set: set name = "):  # fmt: skip
        manifest.load(odd)


def test_a_tool_summon_table_in_summon_toml_says_where_the_keys_go(tmp_path: Path) -> None:
    app = write_app(tmp_path, '[tool.summon]\nentry = "app:main"\n', pyproject=False)
    with pytest.raises(ManifestError) as e:
        manifest.load(app)
    assert str(e.value) == (
        f"{app / 'summon.toml'}: tool: summon.toml holds the keys at its top level, "
        "without [tool.summon]"
    )


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


@pytest.mark.parametrize(
    ("line", "seal"), [("", "on"), ("seal = true\n", "on"), ("seal = false\n", "off"),
                       ('seal = "audit"\n', "audit")]
)  # fmt: skip
def test_seal_modes(tmp_path: Path, line: str, seal: str) -> None:
    assert manifest.load(write_app(tmp_path, 'entry = "app:main"\n' + line)).seal == seal


def test_syscalls_are_checked_against_the_syscall_table(tmp_path: Path) -> None:
    app = write_app(tmp_path, 'entry = "app:main"\nsyscalls = ["uname", "getcwd", "uname"]\n')
    assert manifest.load(app).syscalls == ("getcwd", "uname")


@pytest.mark.parametrize(
    ("table", "expect"),
    [
        ('seal = "on"\n', "seal: 'on' is not true, false or \"audit\""),
        ("seal = 1\n", 'seal: expected true (the default), false, or "audit"'),
        ('syscalls = ["getcwd", "nosuch"]\n', "syscalls: 'nosuch' is not an x86_64 syscall"),
        ('syscalls = ["ptrace"]\n', "syscalls: 'ptrace' is never allowed in the sandbox"),
        (
            'syscalls = ["getcwd", "fsmount"]\n',
            "syscalls: 'fsmount' is never allowed in the sandbox (rule seccomp.deny",
        ),
        ("syscalls = [1]\n", "syscalls: expected a list of syscall names"),
    ],
)
def test_bad_seal_or_syscalls_is_one_line(tmp_path: Path, table: str, expect: str) -> None:
    app = write_app(tmp_path, 'entry = "app:main"\n' + table)
    with pytest.raises(ManifestError) as info:
        manifest.load(app)
    message = str(info.value)
    assert "\n" not in message and expect in message, message
    assert str(app / "pyproject.toml") in message


# --- tls and secrets ---


def _tls_app(tmp_path: Path, table: str, extra: str = "") -> Path:
    (tmp_path / "app.py").write_text("async def main(): pass\n")
    (tmp_path / "summon.toml").write_text(
        f'name = "t"\nentry = "app:main"\nports = [80, "53/udp"]\n{extra}\n[tls]\n{table}\n'
    )
    return tmp_path


def test_tls_ports_bring_their_secrets_along(tmp_path: Path) -> None:
    m = manifest.load(_tls_app(tmp_path, 'ports = [80]\nkey = "site.key"', 'secrets = ["token"]'))
    assert m.tls is not None and m.tls.backend == "openssl" and m.tls.ports == (80,)
    assert m.secrets == ("token", "tls.crt", "site.key")
    assert m.name == "t"


def test_an_app_that_declares_secrets_keeps_its_name(tmp_path: Path) -> None:
    """An asyncssh server with secrets = ["ssh_host_key"] was built as ssh_host_key:0.1.0:
    the image took the name of its last secret."""
    m = manifest.load(write_app(tmp_path, 'entry = "app:main"\nsecrets = ["api-token", "key"]'))
    assert (m.name, m.secrets) == ("demo-app", ("api-token", "key"))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('backend = "boringssl"', "backend 'boringssl' is not one of openssl, python"),
        ("ports = [443]", "port 443 is not one of the app's TCP ports [80]"),
        ("ports = [53]", "port 53 is not one of the app's TCP ports [80]"),
        ('client_auth = "required"', "needs client_ca"),
        ('key = "../etc/shadow"', "is not a secret name"),
        ("colour = 1", "unknown key 'colour'"),
    ],
)
def test_a_wrong_tls_table_is_one_line_naming_it(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ManifestError) as e:
        manifest.load(_tls_app(tmp_path, table))
    assert "tls:" in str(e.value) and message in str(e.value)


def test_another_manifest_builds_the_same_folder(tmp_path: Path) -> None:
    app = _tls_app(tmp_path, "")
    other = tmp_path / "elsewhere" / "https.toml"
    other.parent.mkdir()
    other.write_text('name = "t-tls"\nentry = "app:main"\nports = [80]\n[tls]\nports = [80]\n')
    m = manifest.load(app, other)
    assert (m.name, m.app_dir, m.source) == ("t-tls", app.resolve(), other.resolve())
    with pytest.raises(ManifestError, match="no such file"):
        manifest.load(app, tmp_path / "missing.toml")
    # A folder or a device is there, but no file: "no such file" sent the user looking.
    with pytest.raises(ManifestError, match=f"--manifest {other.parent}: not a file"):
        manifest.load(app, other.parent)


def test_stores_live_in_the_volumes(tmp_path: Path) -> None:
    m = manifest.load(
        write_app(
            tmp_path,
            'entry = "app:main"\nvolumes = ["/data/", "/srv"]\n'
            '[tool.summon.stores]\ntodo = "/data/todo"\nnotes = "/srv/a/notes/"\n',
        )
    )
    assert m.volumes == ("/data", "/srv")
    assert m.stores == {"todo": "/data/todo", "notes": "/srv/a/notes"}


@pytest.mark.parametrize(
    ("table", "expect"),
    [
        ('volumes = ["data"]\n', "volumes: 'data': give an absolute path in the image"),
        ('volumes = ["/proc/x"]\n', "volumes: '/proc/x': /proc belongs to the image"),
        ('volumes = ["/da:ta"]\n', "volumes: '/da:ta': use letters, digits"),
        ('volumes = ["/a", "/a/b"]\n', "volumes: /a and /a/b nest"),
        ('data = ["static"]\nvolumes = ["/data"]\n', "volumes: /data would hide the data folder"),
        ('stores = "todo"\n', "stores: expected a table of KV_RW stores"),
        ('volumes = ["/data"]\nstores = { "my-todo" = "/data/t" }\n', "'my-todo' is not a param"),
        ('volumes = ["/data"]\nstores = { todo = "data/t" }\n', "todo = 'data/t' is not an abs"),
        ('volumes = ["/data"]\nstores = { todo = "/data" }\n', "is a volume's mount point"),
        ('stores = { todo = "/srv/todo" }\n', "is in no volume; declare its volume with volumes"),
        (
            'volumes = ["/data"]\nstores = { a = "/data/a", b = "/data/a/b" }\n',
            "stores: a and b nest (/data/a, /data/a/b)",
        ),
    ],
)
def test_bad_volumes_and_stores_are_one_line(tmp_path: Path, table: str, expect: str) -> None:
    app = write_app(tmp_path, 'entry = "app:main"\n' + table)
    with pytest.raises(ManifestError) as e:
        manifest.load(app)
    assert expect in str(e.value)
    assert "\n" not in str(e.value)


def test_a_script_gets_no_store(tmp_path: Path) -> None:
    (tmp_path / "s.py").write_text("print(1)\n")
    app = write_app(tmp_path, 'entry = "s.py"\nvolumes = ["/data"]\nstores = {t = "/data/t"}\n')
    with pytest.raises(ManifestError, match="stores: a script gets no devices"):
        manifest.load(app)


def test_a_src_layout_puts_src_in_as_the_app(tmp_path: Path) -> None:
    """The PyPA's src layout: the entry's package under src/, the manifest beside src/."""
    (tmp_path / "src" / "shop").mkdir(parents=True)
    (tmp_path / "src" / "shop" / "__init__.py").write_text("app = None\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "shop"\n\n[tool.summon]\nentry = "shop:app"\ndata = ["data"]\n'
        'probe = "shop:app"\n'
    )
    m = manifest.load(tmp_path)
    assert m.app_dir == tmp_path / "src"
    assert m.data == (tmp_path / "data",)  # the manifest's paths stay the project's
    assert m.name == "shop"


def test_a_module_in_neither_the_folder_nor_src_is_named_with_both(tmp_path: Path) -> None:
    (tmp_path / "summon.toml").write_text('name = "x"\nentry = "shop:app"\n')
    with pytest.raises(ManifestError, match=r"module 'shop' not found .* nor in its src/"):
        manifest.load(tmp_path)


@pytest.mark.parametrize("entry", ["pyramid.scripts.pserve:main", "aiohttp.web"])
def test_a_requirements_command_as_the_entry_says_to_call_it_from_a_script(
    tmp_path: Path, entry: str
) -> None:
    """Pyramid's projects start with `pserve production.ini`, aiohttp's app factories with
    `python -m aiohttp.web`: naming either as the entry said only that the module is not in
    the app's folder, not how to start it."""
    (tmp_path / "summon.toml").write_text(f'name = "x"\nentry = "{entry}"\n')
    with pytest.raises(ManifestError) as e:
        manifest.load(tmp_path)
    assert str(e.value).endswith(
        "the entry is the app's own code: to start a command one of its requirements installs "
        "(pserve production.ini, python -m aiohttp.web), call it from a script in the app's "
        'folder and make that the entry (entry = "run.py")'
    )


def test_requirements_txt_when_the_manifest_names_none(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("def main():\n    return 0\n")
    (tmp_path / "summon.toml").write_text('name = "x"\nentry = "app:main"\n')
    (tmp_path / "requirements.txt").write_text(
        "# the app's\nflask==3.1.0  # pinned\n-r more.txt\njinja2 \\\n  >=3\n\n"
    )
    (tmp_path / "more.txt").write_text('pyyaml==6.0.2 ; python_version >= "3.8"\n')
    m = manifest.load(tmp_path)
    assert m.requirements == (
        "flask==3.1.0",
        'pyyaml==6.0.2 ; python_version >= "3.8"',
        "jinja2   >=3",
    )
    # The manifest's own list, or [project].dependencies, come first.
    (tmp_path / "summon.toml").write_text('name = "x"\nentry = "app:main"\nrequirements = []\n')
    assert manifest.load(tmp_path).requirements == ()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("--index-url https://example.invalid/simple\nflask\n", "line 1: --index-url"),
        ("flask==3.1.0 --hash=sha256:00\n", "line 1: --hash is pip's option"),
        ("flask\n-e ./vendored\n", "line 2: -e is pip's option"),
        ("-r requirements.txt\n", "includes itself"),
        ("-r missing.txt\n", "cannot read"),
    ],
)
def test_what_requirements_txt_cannot_say_is_one_error(
    tmp_path: Path, text: str, needle: str
) -> None:
    (tmp_path / "app.py").write_text("def main():\n    return 0\n")
    (tmp_path / "summon.toml").write_text('name = "x"\nentry = "app:main"\n')
    (tmp_path / "requirements.txt").write_text(text)
    with pytest.raises(ManifestError, match="requirements: ") as e:
        manifest.load(tmp_path)
    assert needle in str(e.value)


def test_host_sockets_is_a_boolean_off_by_default(tmp_path: Path) -> None:
    for name, line, expect in (("a", "", False), ("b", "host_sockets = true\n", True)):
        (tmp_path / name).mkdir()
        loaded = manifest.load(write_app(tmp_path / name, 'entry = "app:main"\n' + line))
        assert loaded.host_sockets is expect
    (tmp_path / "c").mkdir()
    with pytest.raises(ManifestError, match="host_sockets"):
        manifest.load(write_app(tmp_path / "c", 'entry = "app:main"\nhost_sockets = "yes"\n'))


def test_a_symlink_loop_is_no_folder_not_an_internal_error(tmp_path: Path) -> None:
    # `summon build loop` (a link to itself) was "internal error: RuntimeError: Symlink loop
    # from 'loop'" (Path.resolve's), and so was a data folder that is one.
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(ManifestError, match=r"loop: not a folder; give the folder that holds"):
        manifest.load(tmp_path / "loop")
    (tmp_path / "app").mkdir()
    app = write_app(tmp_path / "app", 'entry = "app:main"\ndata = ["lp"]\n')
    (app / "lp").symlink_to("lp")
    with pytest.raises(ManifestError, match=r"data: 'lp' is not a folder in "):
        manifest.load(app)
