"""A ref name from the store's own files or from a bundle is untrusted: each ref becomes a
file named after it, so a name leading out of the store would have the host write or remove
files elsewhere when it opens the store (`summon volume export`, as root) or imports a bundle.

Rule (summon.kv.refs.check_ref, and FolderBackend's paths): refs are Git ref names below
refs/ (git check-ref-format); no path of the store's leads out of its folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from summon import kv
from summon.cli.main import cli
from summon.kv.backend import FolderBackend
from summon.kv.errors import CorruptStore

ESCAPE = "refs/heads/" + "../" * 12


def _hostile_journal(folder: Path, victim: Path, planted: Path) -> None:
    """What a hostile app can leave in its volume: journal records naming refs outside the
    store (summon's own check taken out, as the app may run any code), never flushed."""
    script = f"""
import os
from summon import kv
from summon.kv import refs
refs.check_ref = lambda name: name
store = kv.open_folder({str(folder)!r})
store.set("a", b"1")
store.flush()
store._repo.record_ref({ESCAPE + str(victim)[1:]!r}, None)
store._repo.record_ref({ESCAPE + str(planted)[1:]!r}, bytes.fromhex(store.head))
os._exit(0)
"""
    subprocess.run([sys.executable, "-c", script], check=True, env=os.environ)


def test_volume_export_of_a_journal_naming_refs_outside_the_store_touches_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # rule: refs are Git ref names below refs/. Before: the export replayed the journal and
    # removed the victim file and planted a new one, wherever the names led (root's files).
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    runner = CliRunner()
    folder = Path(runner.invoke(cli, ["volume", "create", "todo"]).output.strip())
    victim, planted = tmp_path / "victim", tmp_path / "planted"
    victim.write_text("precious")
    _hostile_journal(folder / "todo", victim, planted)
    result = runner.invoke(cli, ["volume", "export", "todo", "-o", str(tmp_path / "t.bundle")])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1
    assert "is not a Git ref name: it holds '..'" in result.output
    assert victim.read_text() == "precious" and not planted.exists()


def test_a_bundle_naming_refs_outside_the_store_is_refused(tmp_path: Path) -> None:
    # rule: refs are Git ref names below refs/
    with kv.open_folder(str(tmp_path / "src")) as store:
        store.set("a", b"1")
    good = tmp_path / "good.bundle"
    kv.export_bundle(str(tmp_path / "src"), str(good))
    header, _, pack = good.read_bytes().partition(b"\n\n")
    oid = header.split(b"\n")[1].split()[0]
    for n, ref in enumerate([ESCAPE + "tmp/x", "refs/heads/a/../../../x", "refs/heads/x.lock"]):
        bad = tmp_path / f"bad{n}.bundle"
        bad.write_bytes(b"# v2 git bundle\n" + oid + b" " + ref.encode() + b"\n\n" + pack)
        with pytest.raises(CorruptStore, match="is not a Git ref name"):
            kv.import_bundle(str(bad), str(tmp_path / f"new{n}"))
    assert not (tmp_path / "new1" / "x").exists() and not (tmp_path / "x").exists()


def test_no_path_of_a_folder_store_leads_out_of_its_folder(tmp_path: Path) -> None:
    # rule: no path of the store's leads out of its folder (whatever named it)
    backend = FolderBackend(str(tmp_path / "store"))
    for path in ("../x", "refs/../../x", "/etc/x"):
        with pytest.raises(CorruptStore, match="leads out of the store"):
            backend.write_atomic(path, b"x")
        with pytest.raises(CorruptStore, match="leads out of the store"):
            backend.remove(path)
    assert not (tmp_path / "x").exists()


def test_a_head_naming_a_ref_outside_refs_is_a_corrupt_store(tmp_path: Path) -> None:
    # rule: refs are Git ref names below refs/. Before: the store opened, its export had no
    # HEAD (git clone: "remote HEAD refers to nonexistent ref"), a commit wrote ../../x.
    with kv.open_folder(str(tmp_path / "s")) as store:
        store.set("a", b"1")
    (tmp_path / "s" / "HEAD").write_text("ref: refs/heads/../../../x\n")
    with pytest.raises(CorruptStore, match=r"is not a Git ref name: it holds '\.\.'"):
        kv.open_folder(str(tmp_path / "s"))


@pytest.mark.parametrize(
    ("place", "name"),
    [("packed", "refs/heads/../../x"), ("loose", "refs/heads/a\nb"), ("loose", "refs/heads/a b")],
)
def test_a_ref_in_the_store_that_git_could_not_name_is_a_corrupt_store(
    tmp_path: Path, place: str, name: str
) -> None:
    # rule: refs are Git ref names below refs/. Before: such names were read and written into
    # the export's header, where a newline in one makes a line of its own.
    with kv.open_folder(str(tmp_path / "s")) as store:
        store.set("a", b"1")
        head = store.head or ""
    if place == "packed":
        (tmp_path / "s" / "packed-refs").write_text(f"{head} {name}\n")
    else:
        (tmp_path / "s" / name).write_text(head + "\n")
    with pytest.raises(CorruptStore, match="is not a Git ref name"):
        kv.open_folder(str(tmp_path / "s"))


def test_a_journal_pointing_head_outside_refs_is_a_corrupt_store(tmp_path: Path) -> None:
    # rule: refs are Git ref names below refs/ (HEAD's target too, from a journal record)
    script = f"""
import os
from summon import kv
from summon.kv import refs
refs.check_ref = lambda name: name
store = kv.open_folder({str(tmp_path / "s")!r})
store.set("a", b"1")
store.flush()
store._repo.record_head("refs/heads/../../x\\nref: refs/heads/main")
os._exit(0)
"""
    subprocess.run([sys.executable, "-c", script], check=True, env=os.environ)
    with pytest.raises(CorruptStore, match="is not a Git ref name"):
        kv.open_folder(str(tmp_path / "s"))
    assert (tmp_path / "s" / "HEAD").read_text() == "ref: refs/heads/main\n"
