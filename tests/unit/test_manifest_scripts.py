"""A project without [tool.summon]: built unchanged when [project.scripts] names one command."""

from __future__ import annotations

from pathlib import Path

import pytest

from summon import manifest
from summon.errors import ManifestError


def project(tmp_path: Path, scripts: str) -> Path:
    """A src-layout project as the PyPA's guide makes one, with [project.scripts] given."""
    (tmp_path / "src" / "myweb").mkdir(parents=True)
    (tmp_path / "src" / "myweb" / "__init__.py").write_text("")
    (tmp_path / "src" / "myweb" / "app.py").write_text("def main():\n    pass\n")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "myweb"\nversion = "0.3"\ndependencies = ["flask==3.1.3"]\n\n' + scripts
    )
    return tmp_path


def test_its_one_command_is_the_entry_and_the_build_says_so(tmp_path: Path) -> None:
    app = project(tmp_path, '[project.scripts]\nmyweb = "myweb.app:main [speedups]"\n')
    m = manifest.load(app)
    assert str(m.entry) == "myweb.app:main"  # extras dropped
    assert (m.name, m.version, m.requirements) == ("myweb", "0.3", ("flask==3.1.3",))
    assert m.app_dir == app / "src"  # the src layout's code folder, as with an entry given
    (note,) = manifest.script_entry_note(m)
    assert "has no [tool.summon] table: built with its one command" in note
    assert "myweb.app:main" in note


def test_a_manifest_given_says_nothing_of_scripts(tmp_path: Path) -> None:
    app = project(
        tmp_path,
        '[project.scripts]\nmyweb = "myweb.app:main"\n\n[tool.summon]\nentry = "myweb.app:main"\n',
    )
    assert manifest.script_entry_note(manifest.load(app)) == []


@pytest.mark.parametrize(
    ("scripts", "needle"),
    [
        (
            '[project.scripts]\nserve = "myweb.app:main"\nmigrate = "myweb.app:main"\n',
            "[project.scripts] names 2 commands (migrate = 'myweb.app:main', serve = "
            "'myweb.app:main'); add one with at least entry = \"module:function\" to say "
            "which one serves",
        ),
        ("", "no [tool.summon] table and no [project.scripts]; add one with at least entry"),
    ],
)
def test_none_or_several_commands_are_one_line_saying_what_to_add(
    tmp_path: Path, scripts: str, needle: str
) -> None:
    with pytest.raises(ManifestError) as e:
        manifest.load(project(tmp_path, scripts))
    assert needle in str(e.value) and "\n" not in str(e.value)
