"""The Git format, checked by the real git: what the store writes, git reads (fsck --strict
clean, log/show/cat-file agree, clones round-trip); what git writes, the store reads (loose
objects, packs with OFS and REF deltas, packed-refs, tags, merges)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from kv_helpers import GIT_ENV, Clock, fsck, git, git_in

from summon import kv


def _fill(store: kv.Store) -> list[str]:
    """A history with folders, deletes, a branch and a merge; returns the commit ids made."""
    ids = [store.set("tasks/1", b"milk\n"), store.set("tasks/2", b"eggs\n")]
    ids.append(store.set("notes/2024/jan", b'{"text": "x"}', author="Ada <ada@example.org>"))
    with store.transaction("several at once") as tx:
        tx.set("tasks/3", b"bread\n")
        tx.delete("tasks/1")
        tx.set("done/1", b"milk\n")
    ids.append(store.head or "")
    store.create_branch("side")
    store.checkout("side")
    ids.append(store.set("tasks/2", b"eggs, a dozen\n"))
    ids.append(store.set("side/only", b"s"))
    store.checkout("main")
    ids.append(store.set("tasks/3", b"brown bread\n"))
    ids.append(store.merge("side") or "")
    ids.append(store.set("unicode/ключ é", "значение".encode()))
    ids.append(store.revert(ids[2]))
    return ids


def test_what_the_store_writes_is_fsck_clean_and_git_log_agrees(
    folder_store: kv.Store, folder: Path
) -> None:
    _fill(folder_store)
    folder_store.flush()
    fsck(folder)
    fmt = "%H%x00%an <%ae>%x00%ct%x00%P%x00%B%x01"
    out = git(folder, "log", f"--format={fmt}", "main")
    records = [r.lstrip("\n") for r in out.split("\x01") if r.strip()]
    seen = []
    for record in records:
        oid, author, when, parents, message = record.split("\x00")
        seen.append((oid, author, int(when), tuple(parents.split()), message.rstrip("\n")))
    mine = [(c.id, c.author, c.time, c.parents, c.message) for c in folder_store.history()]
    assert seen == mine
    assert git(folder, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert git(folder, "rev-parse", "main").strip() == folder_store.head


def test_git_show_and_ls_tree_match_every_commit(folder_store: kv.Store, folder: Path) -> None:
    ids = _fill(folder_store)
    folder_store.flush()
    for oid in ids:
        view = folder_store.at(oid)
        names = git(folder, "ls-tree", "-r", "-z", "--name-only", oid).split("\0")
        assert sorted(n for n in names if n) == view.list()
        for key in view.list():
            blob = subprocess.run(
                ["git", "--git-dir", str(folder), "show", f"{oid}:{key}"],
                capture_output=True, env=GIT_ENV, check=True,
            ).stdout
            assert blob == view.get(key)
    head = folder_store.head or ""
    assert git(folder, "cat-file", "-t", head).strip() == "commit"
    assert f"tree {git(folder, 'rev-parse', head + '^{tree}').strip()}" in git(
        folder, "cat-file", "-p", head
    )


def test_git_log_of_a_key_matches_history_of_the_key(folder_store: kv.Store, folder: Path) -> None:
    _fill(folder_store)
    folder_store.flush()
    for key in ("tasks/1", "tasks/2", "tasks/3", "side/only", "done/1", "notes/2024/jan"):
        expected = git(folder, "log", "--format=%H", "main", "--", key).split()
        assert [c.id for c in folder_store.history(key)] == expected, key


def test_a_clone_round_trips(folder_store: kv.Store, folder: Path, tmp_path: Path) -> None:
    _fill(folder_store)
    folder_store.close()
    clone = tmp_path / "clone.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(folder), str(clone)], env=GIT_ENV,
                   check=True)
    work = tmp_path / "work"
    subprocess.run(["git", "clone", "-q", str(folder), str(work)], env=GIT_ENV, check=True)
    with kv.open_folder(str(folder)) as original, kv.open_folder(str(clone)) as copy:
        assert copy.history() == original.history()
        assert copy.branches() == original.branches()
        for key in original.list():
            assert copy.get(key) == original.get(key)
            assert (work / key).read_bytes() == original.get(key)  # a checkout: the files
        copy.set("tasks/9", b"from the clone")
    fsck(clone)


def test_a_pack_written_by_a_flush_is_read_by_git(folder: Path, clock: Clock) -> None:
    store = kv.open_folder(str(folder), clock=clock, batch_records=100_000)
    for i in range(60):
        store.set(f"items/{i % 7}", f"value {i} ".encode() * 20)
    store.flush()
    packs = list((folder / "objects" / "pack").glob("*.pack"))
    assert len(packs) == 1
    verify = git(folder, "verify-pack", "-v", str(packs[0]))
    assert "chain length = 1" in verify  # trees and values stored as deltas
    fsck(folder)
    store.close()


def test_gc_packs_everything_with_deltas_and_packs_refs(folder: Path, clock: Clock) -> None:
    store = kv.open_folder(str(folder), clock=clock, batch_records=10)
    for i in range(200):
        store.set(f"list/{i % 40:02d}", b"x" * 100 + str(i).encode())
    store.create_branch("keep")
    before = [c.id for c in store.history()]
    store.gc()
    assert len(list((folder / "objects" / "pack").glob("*.pack"))) == 1
    assert not [p for p in (folder / "objects").iterdir() if len(p.name) == 2]  # no loose
    assert not list((folder / "refs" / "heads").iterdir())
    assert "refs/heads/keep" in (folder / "packed-refs").read_text()
    fsck(folder)
    pack = next((folder / "objects" / "pack").glob("*.pack"))
    assert "chain length = 40" in git(folder, "verify-pack", "-v", str(pack))
    assert [c.id for c in store.history()] == before
    store.set("list/00", b"after gc")
    store.close()
    fsck(folder)
    assert git(folder, "show", "main:list/00") == "after gc"


@pytest.mark.parametrize("ofs_delta", [True, False])
def test_a_repository_made_by_git_is_readable(tmp_path: Path, ofs_delta: bool) -> None:
    work = tmp_path / "work"
    work.mkdir()
    git_in(work, "init", "-q", "-b", "master")
    text = "".join(f"line {i}\n" for i in range(300))
    (work / "dir").mkdir()
    for i in range(12):
        (work / "doc.txt").write_text(text.replace(f"line {i * 7}\n", f"changed {i}\n"))
        (work / "dir" / f"f{i % 3}").write_text(f"file {i}\n" * 30)
        git_in(work, "add", "-A")
        git_in(work, "commit", "-q", "-m", f"commit {i}")
        if i == 5:
            git_in(work, "branch", "side")
    git_in(work, "checkout", "-q", "side")
    (work / "side.txt").write_text("side\n")
    os.chmod(work / "dir" / "f0", 0o755)
    os.symlink("doc.txt", work / "link")
    git_in(work, "add", "-A")
    git_in(work, "commit", "-q", "-m", "on side")
    git_in(work, "checkout", "-q", "master")
    git_in(work, "merge", "-q", "--no-edit", "side")
    git_in(work, "tag", "-a", "v1", "-m", "release 1")
    repo = work / ".git"
    if ofs_delta:
        git(repo, "gc", "-q", "--aggressive")
    else:
        git(repo, "-c", "repack.usedeltabaseoffset=false", "repack", "-q", "-a", "-d", "-f")
        git(repo, "pack-refs", "--all")
    packs = list((repo / "objects" / "pack").glob("*.pack"))
    verify = git(repo, "verify-pack", "-v", str(packs[0]))
    assert "chain length" in verify
    assert (repo / "packed-refs").exists()
    with kv.open_folder(str(repo)) as store:
        assert store.branch == "master"
        assert store.branches() == ["master", "side"]
        for oid in git(repo, "rev-list", "--all").split():
            view = store.at(oid)
            names = git(repo, "ls-tree", "-r", "--name-only", oid).split()
            assert view.list() == sorted(n for n in names if n != "link")  # a link is no key
            for key in view.list():
                assert view.get(key).decode() == git(repo, "show", f"{oid}:{key}")
        for key in ("doc.txt", "dir/f0", "side.txt"):
            expected = git(repo, "log", "--format=%H", "--", key).split()
            assert [c.id for c in store.history(key)] == expected
        assert [c.id for c in store.history()] == git(repo, "log", "--format=%H").split()
        store.set("dir/new", b"written by summon")
    fsck(repo)
    assert git(repo, "show", "master:dir/new") == "written by summon"
    assert git(repo, "describe", "--tags", "master~1") == "v1\n"  # the tag survived


def test_repositories_it_cannot_read_are_refused(tmp_path: Path) -> None:
    sha256 = tmp_path / "sha256.git"
    subprocess.run(["git", "init", "-q", "--bare", "--object-format=sha256", str(sha256)],
                   env=GIT_ENV, check=True)
    with pytest.raises(kv.UnsupportedRepository, match="objectformat"):
        kv.open_folder(str(sha256))
    source = tmp_path / "src"
    source.mkdir()
    git_in(source, "init", "-q")
    for i in range(3):
        (source / "f").write_text(str(i))
        git_in(source, "add", "f")
        git_in(source, "commit", "-q", "-m", str(i))
    shallow = tmp_path / "shallow.git"
    subprocess.run(["git", "clone", "-q", "--bare", "--depth", "1", f"file://{source}",
                    str(shallow)], env=GIT_ENV, check=True)
    with pytest.raises(kv.UnsupportedRepository, match="shallow"):
        kv.open_folder(str(shallow))


def test_bundle_export_is_verified_and_cloned_by_git(
    folder_store: kv.Store, folder: Path, tmp_path: Path
) -> None:
    _fill(folder_store)
    bundle = tmp_path / "store.bundle"
    folder_store.export_bundle(str(bundle))
    assert bundle.read_bytes().startswith(b"# v2 git bundle\n")
    verify = subprocess.run(["git", "bundle", "verify", str(bundle)], cwd=folder,
                            capture_output=True, env=GIT_ENV, check=False)
    assert verify.returncode == 0, verify.stderr
    clone = tmp_path / "from-bundle"
    subprocess.run(["git", "clone", "-q", str(bundle), str(clone)], env=GIT_ENV, check=True)
    assert git_in(clone, "log", "--format=%H").split() == [c.id for c in folder_store.history()]
    assert (clone / "tasks" / "2").read_bytes() == folder_store.get("tasks/2")


def test_bundle_import_makes_the_same_store(
    folder_store: kv.Store, folder: Path, tmp_path: Path
) -> None:
    _fill(folder_store)
    bundle = tmp_path / "store.bundle"
    folder_store.export_bundle(str(bundle))
    target = tmp_path / "imported"
    kv.import_bundle(str(bundle), str(target))
    fsck(target)
    with kv.open_folder(str(target)) as copy:
        assert copy.history() == folder_store.history()
        assert copy.branches() == folder_store.branches()
        assert copy.branch == "main"
        assert {k: copy.get(k) for k in copy.list()} == {
            k: folder_store.get(k) for k in folder_store.list()
        }
    with pytest.raises(kv.BundleError, match="not an empty store"):
        kv.import_bundle(str(bundle), str(target))


def test_a_bundle_made_by_git_imports(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    git_in(work, "init", "-q", "-b", "trunk")
    for i in range(5):
        (work / "k").write_text("value\n" * 50 + str(i))
        git_in(work, "add", "k")
        git_in(work, "commit", "-q", "-m", f"c{i}")
    git_in(work, "bundle", "create", "-q", str(tmp_path / "all.bundle"), "--all")
    git_in(work, "bundle", "create", "-q", str(tmp_path / "part.bundle"), "HEAD~2..trunk")
    kv.import_bundle(str(tmp_path / "all.bundle"), str(tmp_path / "s"))
    with kv.open_folder(str(tmp_path / "s")) as store:
        assert store.branch == "trunk"
        assert store.get("k").endswith(b"4")
        assert [c.id for c in store.history()] == git_in(work, "log", "--format=%H").split()
    with pytest.raises(kv.BundleError, match="only whole bundles"):
        kv.import_bundle(str(tmp_path / "part.bundle"), str(tmp_path / "s2"))
    (tmp_path / "junk").write_bytes(b"not a bundle")
    with pytest.raises(kv.BundleError, match="not a Git bundle"):
        kv.import_bundle(str(tmp_path / "junk"), str(tmp_path / "s3"))


def test_background_flushes_and_gc_keep_reads_right_and_git_whole(
    folder: Path, clock: Clock
) -> None:
    """Batches flushed and packs gc'd in the background thread while commits and reads go
    on: every read sees the latest value, and git finds the repository whole after."""
    store = kv.open_folder(str(folder), clock=clock, batch_records=25, gc_packs=4)
    latest: dict[str, bytes] = {}
    for i in range(600):
        key = f"d{i % 9}/k{i % 37}"
        value = b"v%d " % i * (1 + i % 5)
        store.set(key, value)
        latest[key] = value
        probe = f"d{(i * 7) % 9}/k{(i * 11) % 37}"
        if probe in latest:
            assert store.get(probe) == latest[probe]
    store.flush()
    assert len(list((folder / "objects" / "pack").glob("*.pack"))) <= 4  # gc kept up
    assert (folder / "packed-refs").exists()
    fsck(folder)
    assert len(store.history()) == 600
    assert {k: store.get(k) for k in store.list()} == latest
    store.close()
    assert git(folder, "rev-list", "--count", "main").strip() == "600"


def test_merging_an_unrelated_history(folder_store: kv.Store, folder: Path) -> None:
    """A branch with a root of its own (made by git: `checkout --orphan`) merges from an
    empty base: its keys come in, keys on both sides with different values conflict."""
    folder_store.set("shared", b"ours")
    folder_store.set("mine", b"1")
    folder_store.close()
    blob = git(folder, "hash-object", "-w", "--stdin", input=b"theirs").strip()
    other = git(folder, "mktree", input=f"100644 blob {blob}\tshared\n100644 blob {blob}\tnew\n"
                .encode()).strip()
    root = git(folder, "commit-tree", other, "-m", "another root").strip()
    git(folder, "update-ref", "refs/heads/orphan", root)
    with kv.open_folder(str(folder)) as store:
        with pytest.raises(kv.Conflict) as caught:
            store.merge("orphan")
        assert caught.value.keys == ["shared"]
        store.merge("orphan", policy="last-writer")
        assert {k: store.get(k) for k in store.list()} == {
            "mine": b"1", "new": b"theirs", "shared": b"theirs"
        }
    fsck(folder)


def test_keys_as_long_as_file_names_allow_clone_and_longer_ones_are_refused(
    folder_store: kv.Store, folder: Path, tmp_path: Path
) -> None:
    # A 10,000-character key was stored; `git clone` of the export then failed its checkout
    # ("cannot stat ...: File name too long", status 128). Longer than a file name or a path
    # is now InvalidKey, naming the limits.
    longest = ["x" * 255, "é" * 127, "/".join(["a" * 200] * 20)]  # 255 B, 254 B, 4019 B
    for key in longest:
        folder_store.set(key, b"v")
    for key in ["x" * 10_000, "x" * 256, "é" * 128, "/".join(["a" * 200] * 21)]:
        with pytest.raises(kv.InvalidKey, match="at most 255 bytes and the key at most 4095"):
            folder_store.set(key, b"v")
    bundle = tmp_path / "s.bundle"
    folder_store.export_bundle(str(bundle))
    clone = subprocess.run(
        ["git", "clone", "-q", str(bundle), str(tmp_path / "c")],
        capture_output=True, text=True, env=GIT_ENV,
    )  # fmt: skip
    assert clone.returncode == 0, clone.stderr
    for key in longest:
        assert (tmp_path / "c" / key).read_bytes() == b"v"
