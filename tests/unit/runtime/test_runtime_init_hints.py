"""The runtime as images run it (python -S -E boot.py): the one line it adds to say what to
change, after a module or distribution the image lacks, a volume or variable the run does not
give, or an entry starting its own server on ports that reach nothing."""

from __future__ import annotations

from textwrap import dedent

import pytest
from fake_image import ImageRoot

# --- the missing-module hint ---------------------------------------------------------------

HINT = (
    "summon: module 'csv' is not in this image; add it to include = [...] in [tool.summon] "
    "and rebuild\n"
)


def test_missing_stdlib_module_hint(image: ImageRoot) -> None:
    # None in sys.modules makes the import machinery fail as if the module were absent.
    image.app({"app.py": "import sys\nsys.modules['csv'] = None\ndef main():\n    import csv\n"})
    image.config("app:main")
    result = image.run()
    assert result.returncode == 1
    assert "ModuleNotFoundError: import of csv halted" in result.stderr
    assert result.stderr.endswith(HINT)


def test_missing_stdlib_module_hint_behind_another_error_in_async_code(image: ImageRoot) -> None:
    image.app(
        {
            "app.py": dedent("""
                import sys
                sys.modules["csv"] = None
                async def main():
                    try:
                        import csv
                    except ImportError as e:
                        raise RuntimeError("cannot export") from e
            """)
        }
    )
    image.config("app:main")
    result = image.run()
    assert result.returncode == 1
    assert "RuntimeError: cannot export" in result.stderr
    assert result.stderr.endswith(HINT)
    # Neither the runtime's frames nor asyncio's stand between the reader and the app's.
    assert "summon/runtime" not in result.stderr and "asyncio/" not in result.stderr


def test_hint_for_a_module_nobody_provides(image: ImageRoot) -> None:
    image.app({"app.py": "import no_such_package_anywhere\n"})
    image.config("/app/app.py")
    result = image.run()
    assert result.returncode == 1
    assert result.stderr.endswith(
        "ModuleNotFoundError: No module named 'no_such_package_anywhere'\n"
        "summon: module 'no_such_package_anywhere' is not in this image; add the distribution "
        "that provides it to requirements in [tool.summon] and rebuild\n"
    )


def test_an_entry_function_running_its_own_server_is_told_its_ports_reach_nothing(
    image: ImageRoot,
) -> None:
    # main() calls uvicorn.run (a click group does, a [project.scripts] entry): the sandbox
    # handed the -p listener to the Stack the entry never asked for, and requests hung.
    image.app({"app.py": "def main():\n    print('serving on my own', flush=True)\n"})
    image.config("app:main")
    result = image.run(env={"LISTEN_FDS": "1", "LISTEN_FDNAMES": "8000"})
    assert result.returncode == 0
    assert result.stdout == "serving on my own\n"
    assert result.stderr == (
        "summon: entry app:main asks for no Stack device, so the ports this run was given "
        "(-p) reach nothing it listens on: an entry that starts its own server (uvicorn.run, "
        'app.run) is a script: entry = "run.py" making that call, or point entry at the app '
        'object (entry = "module:app")\n'
    )
    assert image.run().stderr == ""  # no ports handed over: nothing to say


def test_a_database_on_a_volume_this_run_did_not_mount_is_named(image: ImageRoot) -> None:
    # Flask-SQLAlchemy on sqlite:////data/project.db, run without -v: sqlite's "unable to
    # open database file" and nothing more, the image's /data being read-only and empty.
    image.app(
        {
            "app.py": dedent("""
                import sqlite3
                db = sqlite3.connect("/no-such-folder-summon-test/project.db")
                db.execute("create table t (x)")
                def main():
                    pass
            """)
        }
    )
    image.config("app:main", volumes=["/no-such-folder-summon-test"])
    result = image.run()
    assert result.returncode == 1
    assert result.stderr.endswith(
        "sqlite3.OperationalError: unable to open database file\n"
        "summon: the image is read-only and this run mounts no volume at "
        "/no-such-folder-summon-test: give it one with summon run -v "
        "NAME:/no-such-folder-summon-test (a named volume, made on first use)\n"
    )
    mounted = image.run(env={"SUMMON_VOLUMES": "/no-such-folder-summon-test"})
    assert mounted.stderr.endswith("unable to open database file\n")  # no word: mounted


def test_a_database_in_the_read_only_app_folder_is_named_though_sqlite_names_no_path(
    image: ImageRoot,
) -> None:
    # Django's startproject (db.sqlite3 beside manage.py) under `manage.py runserver`: its
    # migration check died at start with "unable to open database file" and no word more,
    # where the same command on the host creates the file.
    image.app(
        {
            "app.py": dedent("""
                import sqlite3
                db = sqlite3.connect("/no-such-folder-summon-test/db.sqlite3")
                def main():
                    pass
            """)
        }
    )
    image.config("app:main")
    result = image.run()
    assert result.returncode == 1
    assert result.stderr.endswith(
        "sqlite3.OperationalError: unable to open database file\n"
        "summon: sqlite could not open or create its database file; if it is in the app's "
        "folder, that is read-only in an image (/app): keep the database on a volume "
        '(volumes = ["/data"] in the manifest, summon run -v NAME:/data) and point the app '
        "there\n"
    )


def test_a_variable_the_run_does_not_set_is_named_with_the_flag_that_gives_it(
    image: ImageRoot,
) -> None:
    # Built with summon build -e SECRET_KEY=dev, run without it: only a KeyError traceback.
    image.app({"app.py": "import os\nKEY = os.environ['SECRET_KEY']\ndef main():\n    pass\n"})
    image.config("app:main")
    result = image.run()
    assert result.returncode == 1
    assert result.stderr.endswith(
        "KeyError: 'SECRET_KEY'\n"
        "summon: the app reads the variable SECRET_KEY, which this run does not set: give it "
        "with summon run -e SECRET_KEY=VALUE (or a default in the manifest's env)\n"
    )


def test_a_distribution_without_metadata_is_not_called_a_missing_module(image: ImageRoot) -> None:
    # importlib.metadata's PackageNotFoundError is a ModuleNotFoundError naming a distribution:
    # the hint said "module 'my-service' is not in this image", a module nobody imports.
    image.app({"app.py": "from importlib.metadata import version\nV = version('my-service')\n"})
    image.config("/app/app.py")
    result = image.run()
    assert result.returncode == 1
    assert result.stderr.endswith(
        "PackageNotFoundError: No package metadata was found for my-service\n"
        "summon: no distribution 'my-service' is installed in this image (importlib.metadata "
        "found no metadata for it); add it to requirements in [tool.summon], or, if it is the "
        "app's own project, give name and version in pyproject.toml's [project], and rebuild\n"
    )


@pytest.mark.parametrize(
    ("missing", "hint"),
    [
        (
            "jinja2",
            "module 'jinja2' is not in this image; it comes from the distribution Jinja2: "
            "add it to requirements in [tool.summon] and rebuild",
        ),
        (
            "werkzeug.debug.tbtools",
            "module 'werkzeug.debug' is not in this image: exclude = ['werkzeug.debug'] "
            "in the manifest leaves it out; remove it from exclude and rebuild",
        ),
    ],
)
def test_hint_names_the_distribution(image: ImageRoot, missing: str, hint: str) -> None:
    # The table the build writes for the modules its code names but the image lacks.
    (image.root / "etc/summon/modules.tsv").write_text(
        "jinja2\tmissing\tJinja2\n"
        "werkzeug\tvendored\tWerkzeug\n"
        "werkzeug.debug\texcluded\texclude = ['werkzeug.debug'] in the manifest\n"
    )
    image.app({"app.py": f"def main():\n    import {missing}\n", "werkzeug/__init__.py": ""})
    image.config("app:main")
    result = image.run()
    assert result.returncode == 1
    assert result.stderr.endswith(f"summon: {hint}\n")
