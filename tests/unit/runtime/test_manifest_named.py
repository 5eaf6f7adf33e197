"""Messages that say which manifest key to change name where the app's keys are: a
summon.toml, or [tool.summon] in a pyproject.toml (they said [tool.summon] to everyone)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_image import ImageRoot

from summon.errors import ManifestError
from summon.manifest import load


def configure(image: ImageRoot, entry: str, recorded: str | None) -> None:
    """app.json as a build records it; without "manifest" as builds before it did."""
    doc = image.config(entry)
    if recorded is None:
        del doc["manifest"]
    else:
        doc["manifest"] = recorded
    (image.root / "etc/summon/app.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("recorded", "said"),
    [
        ("summon.toml", "summon.toml"),
        ("[tool.summon]", "[tool.summon]"),
        (None, "the manifest"),  # an image built before app.json said
    ],
)
def test_the_runtime_names_the_manifest_the_image_was_built_from(
    image: ImageRoot, recorded: str | None, said: str
) -> None:
    image.app({"app.py": "import sys\nsys.modules['csv'] = None\ndef main():\n    import csv\n"})
    configure(image, "app:main", recorded)
    result = image.run()
    assert result.stderr.endswith(
        f"summon: module 'csv' is not in this image; add it to include = [...] in {said} "
        "and rebuild\n"
    )
    configure(image, "app:nothing", recorded)
    result = image.run()
    assert result.returncode == 2
    assert result.stderr == (
        f"summon: entry app:nothing: module 'app' has no function 'nothing'; fix entry in "
        f"{said} and rebuild\n"
    )


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_the_manifest_knows_where_its_keys_are(tmp_path: Path) -> None:
    app = write(tmp_path / "a", {"summon.toml": 'entry = "app:main"\n', "app.py": ""})
    assert load(app).table == "summon.toml"
    app = write(
        tmp_path / "b",
        {"pyproject.toml": '[tool.summon]\nentry = "app:main"\n', "app.py": ""},
    )
    assert load(app).table == "[tool.summon]"
    other = write(tmp_path / "c", {"https.toml": 'entry = "app:main"\n'}) / "https.toml"
    assert load(app, other).table == "https.toml"
    tooled = write(tmp_path / "d", {"x.toml": '[tool.summon]\nentry = "app:main"\n'}) / "x.toml"
    assert load(app, tooled).table == "[tool.summon] in x.toml"


@pytest.mark.parametrize(
    ("files", "said"),
    [
        ({"summon.toml": 'entry = "app:main"\n'}, "summon.toml"),
        ({"pyproject.toml": '[tool.summon]\nentry = "app:main"\n'}, "[tool.summon]"),
    ],
)
def test_a_requirements_file_with_pip_options_names_the_manifest(
    tmp_path: Path, files: dict[str, str], said: str
) -> None:
    app = write(
        tmp_path / "app",
        {**files, "app.py": "", "requirements.txt": "--index-url https://x/\nh11\n"},
    )
    with pytest.raises(ManifestError) as e:
        load(app)
    assert str(e.value).endswith(f"or put them in requirements = [...] in {said}")
