"""The user-space disk tools behind volumes: ext4 images made and read without a mount.

`mkfs.ext4 -d` fills a new ext4 image from a folder and `debugfs rdump` copies one's files
out (after a full `e2fsck -f -p` has replayed what a killed VM left in its journal and found
the file system whole); all run as the volume's owner (the sandboxed app's host uid), so a
disk a VM wrote, which is untrusted input, is parsed by a process with no privilege and
never by the host kernel. debugfs writes each entry at DEST/NAME as the disk names it: a
VM's root can write any bytes to its disk, and an entry named `../../x` (a `/` no ext4 may
hold in a name) was written outside DEST, wherever the owner may write (another volume, the
host's /tmp; the user's home when summon does not run as root). So a disk that e2fsck cannot
preen (an illegal name, a duplicate entry, a second `..`) is refused, never dumped.
The helpers here walk volume folders without following symbolic links: the app made them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from summon.errors import SummonError, UserError


def make_disk(
    path: Path, label: str, size: int, owner: tuple[int, int] | None, source: Path | None = None
) -> None:
    """Make an ext4 file system in the new file `path` (sparse, `size` bytes), filled from
    the folder `source` (beside `path`) if given; as `owner`, and synced."""
    mkfs = tool("mkfs.ext4")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        try:
            f.truncate(size)
        except (OverflowError, OSError) as e:  # past what the host's file system holds
            why = e.strerror if isinstance(e, OSError) else "too large"
            raise UserError(f"volume {label}: no disk of {size} bytes here: {why}") from None
    if owner is not None:
        os.chown(path, *owner)
    os.chmod(path, 0o600)
    fill = ["-d", os.path.relpath(source, path.parent)] if source else []
    import uuid  # only when a disk is made: uuid imports platform

    # -m 0: no blocks reserved for root, the only user; root_owner: the VM's app is root.
    argv = [mkfs, "-q", "-F", "-m", "0", "-U", str(uuid.uuid4()), "-L", label[:16],
            "-E", "root_owner=0:0", *fill, path.name]  # fmt: skip
    run_tool(argv, owner, f"mkfs.ext4 could not make volume {label}", path.parent)
    with path.open("rb+") as f:
        os.fsync(f.fileno())


def dump_disk(disk: Path, dest: Path, owner: tuple[int, int] | None) -> None:
    """Copy the files of the ext4 image `disk` into the folder `dest` (beside it, owned by
    `owner`), with debugfs run as `owner`: no mount, no privilege. lost+found is left out."""
    debugfs, e2fsck = tool("debugfs"), tool("e2fsck")
    if owner is not None and disk.stat().st_uid != owner[0]:
        os.chown(disk, *owner)  # a disk made before volumes had owners: ours to hand over
    # A VM killed outright leaves its last changes in the file system's journal (a guest's
    # fsync commits them there); a mount would replay them, and debugfs reads none: replay
    # them first, with a full check, so that debugfs reads only a whole file system (see the
    # module's docstring). 0: clean, 1: errors corrected (a replayed journal); 4: errors
    # e2fsck will not fix on its own, which no kernel's ext4 writes.
    check = subprocess.run(
        [e2fsck, "-f", "-p", disk.name],
        capture_output=True,
        text=True,
        check=False,
        cwd=disk.parent,
        preexec_fn=as_owner(owner),
    )
    if check.returncode not in (0, 1):
        said = (check.stdout + check.stderr).strip().splitlines() or ["no output"]
        raise UserError(
            f"the ext4 disk {disk} holds what no ext4 file system may, so its files are not "
            f"copied out (refused: e2fsck -f -p says {said[0].removeprefix(disk.name + ': ')!r}); "
            f"`e2fsck -f {disk}` repairs it"
        )
    check_sizes(debugfs, disk, owner)
    # debugfs says what it could not dump but exits 0: any line but its banner is a failure,
    # except that it may not give files of the VM's root to root: they are the owner's.
    rdump = f"rdump / {os.path.relpath(dest, disk.parent)}"
    stderr = run_tool(
        [debugfs, "-R", rdump, disk.name], owner, f"debugfs could not read {disk}", disk.parent
    )
    problems = [
        line
        for line in stderr.splitlines()
        if line and not line.startswith("debugfs ") and "while changing ownership" not in line
    ]
    if problems:
        full = [p for p in problems if "No space left" in p]
        if full:
            raise UserError(f"the host's disk is full copying the files out of {disk}: {full[0]}")
        raise SummonError(f"debugfs could not copy every file out of {disk}: {problems[0]}")
    discard(dest / "lost+found")


_ENTRY = re.compile(r"/(\d+)/(\d+)/\d*/\d*/(.*)/(\d*)/")


def check_sizes(debugfs: str, disk: Path, owner: tuple[int, int] | None) -> None:
    """Refuse a disk whose files add up to more bytes than the disk has (rule: a disk's files
    are copied out only up to its own size). A sparse file costs its disk nothing and
    debugfs writes it out whole: a VM's 1 GiB volume could hold a 16 TiB file of holes and
    fill the host's disk. The folders are listed by inode (`ls -p <N>`, no name to quote),
    one debugfs run per level of the tree; a line that is no entry (a name with a line
    break could hide one) is refused too."""
    capacity = disk.stat().st_size
    total = 0
    seen = {2}
    level = [2]  # the root folder's inode
    while level:
        proc = subprocess.run(
            [debugfs, "-f", "-", disk.name],
            input="".join(f"ls -p <{ino}>\n" for ino in level),
            capture_output=True, text=True, errors="replace", check=False,
            cwd=disk.parent, preexec_fn=as_owner(owner),
        )  # fmt: skip
        if proc.returncode != 0:
            raise SummonError(f"debugfs could not list {disk}: {proc.stderr.strip()[-200:]}")
        level = []
        for line in proc.stdout.splitlines():
            if not line or line.startswith("debugfs: ls -p <"):
                continue
            entry = _ENTRY.fullmatch(line)
            if entry is None:
                raise UserError(
                    f"the ext4 disk {disk} names a file with a line break, so its files are not "
                    "copied out (rule: a disk's files are copied out only up to its size, which "
                    f"such a name could hide; its listing says {line[:60]!r})"
                )
            ino, mode, name, size = entry.groups()
            if name in (".", ".."):
                continue
            if mode.startswith("04") and int(ino) not in seen:
                seen.add(int(ino))
                level.append(int(ino))
            elif mode.startswith("10"):
                total += int(size or 0)
            if total > capacity:
                raise UserError(
                    f"the ext4 disk {disk} holds files of over {capacity} bytes, more than the "
                    f"disk itself (sparse files), so its files are not copied out (rule: a "
                    "disk's files are copied out only up to its size)"
                )


def give_to(folder: Path, owner: tuple[int, int]) -> None:
    """Make everything below `folder` owned by `owner` (files a unix-target run or a
    conversion left to another uid). Never follows a symbolic link: the app made them."""
    uid, gid = owner

    def fix(path: str) -> None:
        st = os.lstat(path)
        if (st.st_uid, st.st_gid) != owner:
            os.lchown(path, uid, gid)

    fix(str(folder))
    for top, dirs, files in os.walk(folder, followlinks=False):
        for entry in (*dirs, *files):
            fix(os.path.join(top, entry))


def tree_size(folder: Path) -> int:
    """Bytes the files below `folder` take on disk (as du counts them)."""
    total = 0
    for top, dirs, files in os.walk(folder, followlinks=False):
        for entry in (*dirs, *files):
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(top, entry)).st_blocks * 512
    return total


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/sbin:/usr/sbin")
    if found is None:
        raise UserError(f"{name} not found, needed for volumes: apt-get install e2fsprogs")
    return found


def run_tool(
    argv: list[str],
    owner: tuple[int, int] | None,
    failure: str,
    cwd: Path,
    ok: tuple[int, ...] = (0,),
) -> str:
    """Run a tool as `owner` in the folder `cwd`; its stderr, or an error naming `failure`.

    Paths given to it are relative to `cwd`: the process enters it before it drops to
    `owner` (subprocess changes folder first), so it reaches files below a folder that
    `owner` may not cross, such as /root.
    """
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        preexec_fn=as_owner(owner),
    )
    if proc.returncode not in ok:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        if "No space left" in proc.stderr:
            raise UserError(f"{failure}: the host's disk is full ({last})")
        raise SummonError(f"{failure}: {last}")
    return proc.stderr


def as_owner(owner: tuple[int, int] | None) -> Callable[[], None] | None:
    """A preexec_fn dropping to `owner` (no supplementary groups), or None to stay as is."""
    if owner is None:
        return None
    uid, gid = owner

    def drop() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return drop


def discard(path: Path) -> None:
    """Remove a file or a folder tree, whichever it is; nothing if it is missing."""
    if path.is_dir() and not path.is_symlink():
        gone = path.with_name(f".{path.name}.{os.getpid()}.gone")
        os.rename(path, gone)  # out of sight at once, then removed at leisure
        shutil.rmtree(gone, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(folder: Path) -> None:
    """fsync every file and folder below `folder`: what debugfs wrote, before it is renamed."""
    for top, _dirs, files in os.walk(folder, followlinks=False):
        for entry in files:
            path = os.path.join(top, entry)
            if os.path.islink(path):
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENXIO, errno.EACCES):
                    continue
                raise
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        sync_dir(Path(top))
