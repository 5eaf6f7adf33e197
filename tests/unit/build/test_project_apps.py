"""Apps laid out as projects (pyproject.toml with [project] or Poetry's table), built and run
from their image as a user starts them: what an installed project finds of itself."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_real_apps import run_in_image

from summon.build.image import build
from summon.errors import BuildError
from summon.store.image import Image
from summon.store.layout import Store
from summon.targets.base import RunSpec
from summon.targets.unix import UnixTarget

# What a project reads of itself at import once `pip install -e .` or `poetry install` ran.
APP = (
    "from importlib.metadata import entry_points, version\n"
    "__version__ = version('my-service')\n\n"
    "def main():\n"
    "    plugins = sorted(ep.load()() for ep in entry_points(group='my_service.plugins'))\n"
    "    print(__version__, plugins, flush=True)\n"
)
PLUGINS = "def hello():\n    return 'hello'\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    return Store(tmp_path_factory.mktemp("store"))


def run_entry(image: Image) -> subprocess.CompletedProcess[str]:
    return run_in_image(image, "import app; app.main()\n")


@pytest.mark.parametrize(
    "pyproject",
    [
        '[project]\nname = "my-service"\nversion = "1.4.2"\n\n'
        '[project.entry-points."my_service.plugins"]\nhello = "plugins:hello"\n\n'
        '[tool.summon]\nentry = "app:main"\n',
        '[tool.poetry]\nname = "my-service"\nversion = "1.4.2"\ndescription = ""\n\n'
        '[tool.poetry.plugins."my_service.plugins"]\nhello = "plugins:hello"\n\n'
        '[tool.summon]\nentry = "app:main"\n',
    ],
    ids=["pep621", "poetry"],
)
def test_an_app_finds_its_own_version_and_entry_points(
    store: Store, tmp_path: Path, pyproject: str
) -> None:
    """`__version__ = version("my-service")` at import failed the build (PackageNotFoundError):
    the project was not installed in the image as it is where its developer runs it."""
    app = tmp_path / "svc"
    app.mkdir()
    (app / "pyproject.toml").write_text(pyproject)
    (app / "app.py").write_text(APP)
    (app / "plugins.py").write_text(PLUGINS)
    result = build(app, store, tag="svc:test", record=False)
    out = run_entry(result.image)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "1.4.2 ['hello']\n"
    assert {"name": "my-service", "version": "1.4.2"}.items() <= next(
        p for p in result.image.bom["packages"] if p["name"] == "my-service"
    ).items()


def run_image(image: Image, tmp_path: Path) -> tuple[int | None, str]:
    """Run the image as a host process (the unix target) to its end: (status, console)."""
    log = tmp_path / "console.log"
    with log.open("wb") as out:
        spec = RunSpec(
            name="test-project",
            image=image.ref,
            rootfs=image.rootfs(),
            app_config=image.app_config(),
            stdout=out.fileno(),
        )
        status = UnixTarget().start(spec).wait(60)
    return status, log.read_text()


@pytest.mark.parametrize("entry", ["src/svc/__main__.py", "svc/__main__.py", "svc"])
def test_a_package_run_with_python_m_runs_in_its_package(
    store: Store, tmp_path: Path, entry: str
) -> None:
    """A project started with `python -m svc`: its __main__.py imports `from .core import
    ...`. The entry "src/svc/__main__.py" built, then died at start (ImportError: attempted
    relative import with no known parent package); "svc/__main__.py" was not found, and
    "svc" (as python -m names it) was refused."""
    app = tmp_path / "proj"
    (app / "src" / "svc").mkdir(parents=True)
    (app / "pyproject.toml").write_text(
        f'[project]\nname = "svc"\nversion = "2.0"\n\n[tool.summon]\nentry = "{entry}"\n'
        'network = "none"\n'
    )
    (app / "src" / "svc" / "__init__.py").write_text("STARTED = 'package first'\n")
    (app / "src" / "svc" / "core.py").write_text("ANSWER = 42\n")
    (app / "src" / "svc" / "__main__.py").write_text(
        "from . import STARTED\nfrom .core import ANSWER\n\n"
        "if __name__ == '__main__':\n    print(STARTED, ANSWER, __package__, flush=True)\n"
    )
    result = build(app, store, tag="proj:test", record=False)
    status, console = run_image(result.image, tmp_path)
    assert (status, console) == (0, "package first 42 svc\n")
    assert result.image.app_config()["entry"]["package"] == "svc"
    assert result.image.app_config()["manifest"] == "[tool.summon]"  # for messages


def test_a_dotenv_left_out_of_the_image_is_warned_of(store: Store, tmp_path: Path) -> None:
    """pydantic-settings' env_file=".env" read nothing in the image (hidden files stay out):
    the app ran on its defaults without a word."""
    app = tmp_path / "envapp"
    app.mkdir()
    (app / "summon.toml").write_text('name = "envapp"\nentry = "app:main"\nnetwork = "none"\n')
    (app / "app.py").write_text("def main():\n    pass\n")
    (app / ".env").write_text("# settings\nGREETING=hello\nexport DB_URL=sqlite://\n")
    result = build(app, store, tag="envapp:test", record=False)
    assert [w for w in result.warnings if ".env" in w] == [
        f"{app / '.env'} is not put in the image (hidden files stay out, and a .env holds "
        "secrets an image must not): an app that loads it (python-dotenv, pydantic-settings' "
        "env_file) runs on its defaults; give each run its values with summon run "
        f"--env-file {app / '.env'} (once rid of its `export`s and quotes: it takes lines as "
        "written) or -e GREETING=... -e DB_URL=..., or write those that are not secret into "
        "the manifest's env"
    ]
    assert not (result.image.rootfs() / "app" / ".env").exists()
    assert result.image.app_config()["manifest"] == "summon.toml"  # for messages


def test_the_dotenv_warning_names_env_file_relative_to_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A .env docker's --env-file reads as it is: the warning says to pass it as it is."""
    from summon.build.own_dist import dotenv_warnings
    from summon.manifest import load

    app = tmp_path / "envapp"
    app.mkdir()
    (app / "summon.toml").write_text('name = "envapp"\nentry = "app:main"\n')
    (app / "app.py").write_text("def main():\n    pass\n")
    (app / ".env").write_text("GREETING=hello\n")
    monkeypatch.chdir(app)
    [warning] = dotenv_warnings(load(app))
    assert "give each run its values with summon run --env-file .env or -e GREETING=...," in (
        warning
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="the scratch folder over a volume needs root")
def test_a_volume_the_build_host_lacks_is_named_when_the_import_fails(
    store: Store, tmp_path: Path
) -> None:
    """Django's migrate at import, its database under the volume /state: the build failed
    with "OperationalError: unable to open database file" and no word of the volume."""
    volume = f"/summon-absent-{os.getpid()}"
    app = tmp_path / "vol"
    app.mkdir()
    (app / "summon.toml").write_text(
        f'name = "vol"\nentry = "app:main"\nnetwork = "none"\nvolumes = ["{volume}"]\n'
    )
    (app / "app.py").write_text(
        f"import sqlite3\nsqlite3.connect({volume + '/db.sqlite3'!r})\n\ndef main():\n    pass\n"
    )
    with pytest.raises(BuildError) as info:
        build(app, store, tag="vol:test", record=False)
    assert str(info.value) == (
        "app failed to import during the closure trace: OperationalError: unable to open "
        "database file; if the app writes its volume at import: the build imports it on this "
        f"host, which has no {volume}, so it had no scratch folder there; create the folder "
        f"(mkdir -p {volume}: the build mounts an empty one over it and never writes the "
        "host's) and build again"
    )
    assert not Path(volume).exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the overlay over the app's folder needs root")
def test_what_the_app_writes_into_its_folder_at_build_stays_out_of_it_and_the_image(
    store: Store, tmp_path: Path
) -> None:
    """Flask-SQLAlchemy's quickstart (sqlite:///project.db, create_all at import): the build's
    import wrote instance/project.db into the developer's folder, the image shipped it
    read-only, and every write answered 500 (attempt to write a readonly database)."""
    app = tmp_path / "writer"
    app.mkdir()
    (app / "summon.toml").write_text('name = "writer"\nentry = "app:main"\nnetwork = "none"\n')
    (app / "app.py").write_text(
        "try:\n    open('cache.db', 'w').write('made at import')\nexcept OSError:\n    pass\n\n"
        "def main():\n    pass\n"
    )
    result = build(app, store, tag="writer:test", record=False)
    assert sorted(p.name for p in app.iterdir()) == ["app.py", "summon.toml"]
    assert not (result.image.rootfs() / "app" / "cache.db").exists()
    assert [w for w in result.warnings if "cache.db" in w] == [
        "the app wrote cache.db into its own folder when the build imported it (kept out of "
        "that folder and of the image): /app is read-only in an image, so such a write fails "
        'there; keep what the app writes on a volume (volumes = ["/data"] in the manifest, '
        "summon run -v NAME:/data) and point the app there"
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="the overlay over the app's folder needs root")
def test_an_app_that_must_write_its_folder_at_start_fails_the_build_saying_why(
    store: Store, tmp_path: Path
) -> None:
    app = tmp_path / "instance"
    app.mkdir()
    (app / "summon.toml").write_text('name = "inst"\nentry = "app:main"\nnetwork = "none"\n')
    (app / "app.py").write_text(
        "import os\nos.makedirs('instance', exist_ok=True)\n\ndef main():\n    pass\n"
    )
    with pytest.raises(BuildError) as info:
        build(app, store, tag="inst:test", record=False)
    assert str(info.value) == (
        "the entry does not import inside the image: OSError: [Errno 30] Read-only file "
        "system: 'instance' (/app/instance: the app runs in /app); the image is read-only, "
        "its app folder /app included: keep what "
        'the app writes at start on a volume (volumes = ["/data"] in the manifest, summon run '
        "-v NAME:/data) and point the app there (a sqlite file: sqlite:////data/app.db)"
    )
    assert not (app / "instance").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the recording run needs root")
@pytest.mark.skipif(shutil.which("runc") is None, reason="the recording run needs runc")
def test_a_script_that_writes_its_folder_as_it_starts_fails_the_build_saying_why(
    store: Store, tmp_path: Path
) -> None:
    """FastHTML's quickstart (fast_app() writes a session key to .sesskey in the working
    folder, then serve()): the build passed with a warning that the recording run's app had
    ended, and the image died at every start (Read-only file system: '.sesskey'). A script's
    start runs first in the recording run; the build fails there as an import would."""
    app = tmp_path / "keyed"
    app.mkdir()
    (app / "summon.toml").write_text('name = "keyed"\nentry = "server.py"\nports = [8000]\n')
    (app / "server.py").write_text(
        "import http.server, pathlib, uuid\n"
        "key = pathlib.Path('.sesskey')\n"
        "if not key.exists():\n    key.write_text(str(uuid.uuid4()))\n"
        "http.server.ThreadingHTTPServer(('', 8000), http.server.SimpleHTTPRequestHandler)"
        ".serve_forever()\n"
    )
    with pytest.raises(BuildError) as info:
        build(app, store, tag="keyed:test")
    assert str(info.value) == (
        "the app failed as it started in the image's recording run: OSError: [Errno 30] "
        "Read-only file system: '.sesskey' (/app/.sesskey: the app runs in /app); the image "
        "is read-only, its app folder /app included: keep what the app writes at start on a "
        'volume (volumes = ["/data"] in the manifest, summon run -v NAME:/data) and point the '
        "app there (a sqlite file: sqlite:////data/app.db)"
    )
    assert "key.write_text" in getattr(info.value, "detail", "")
    assert sorted(p.name for p in app.iterdir()) == ["server.py", "summon.toml"]
    assert not [ref for ref, _ in store.refs() if "keyed" in ref]
