"""--secret NAME=FILE: only a regular file, read with a bound, each refusal one line."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from summon.errors import UserError
from summon.targets import secrets
from summon.targets.base import MAX_SECRET_BYTES, SecretFile


def test_a_device_is_refused_not_read_until_memory_runs_out() -> None:
    # Before: Path.read_bytes() on /dev/zero grew until MemoryError (or the OOM killer).
    with pytest.raises(UserError, match=r"--secret k=/dev/zero: is a device, not a file"):
        secrets.parse("k=/dev/zero")
    with pytest.raises(UserError, match="is a device, not a file"):
        SecretFile("k", Path("/dev/zero")).read()


def test_a_fifo_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result: list[BaseException] = []

    def parse() -> None:
        try:
            secrets.parse(f"k={fifo}")
        except BaseException as e:
            result.append(e)

    t = threading.Thread(target=parse, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "--secret k=FIFO blocked, waiting for a writer"
    assert isinstance(result[0], UserError) and "is a pipe, not a file" in str(result[0])
    with pytest.raises(UserError, match="is a pipe"):
        SecretFile("k", fifo).read()  # the start-time read: O_NONBLOCK, then refused


def test_a_pipe_from_process_substitution_says_why_not_that_its_path_is_missing() -> None:
    # bash's <(...) gives /dev/fd/N, which resolve() turned into "/proc/PID/fd/pipe:[INODE]":
    # the error said that name did not exist. A pipe gives its bytes once; a restart rereads.
    r, w = os.pipe()
    try:
        os.write(w, b"hunter2\n")
        with pytest.raises(UserError) as err:
            secrets.parse(f"k=/dev/fd/{r}")
        assert f"--secret k=/dev/fd/{r}: is a pipe, not a file" in str(err.value)
        assert "pipe:[" not in str(err.value)
    finally:
        os.close(r)
        os.close(w)


def test_a_folder_a_missing_file_and_an_oversized_file_are_one_line_each(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is a folder, not a file"):
        secrets.parse(f"k={tmp_path}")
    with pytest.raises(UserError, match="cannot read it: No such file or directory"):
        secrets.parse(f"k={tmp_path / 'none'}")
    big = tmp_path / "big"
    big.write_bytes(b"x" * (MAX_SECRET_BYTES + 1))
    with pytest.raises(UserError, match=f"over {MAX_SECRET_BYTES} bytes"):
        secrets.parse(f"k={big}")


def test_a_regular_file_through_a_symbolic_link_is_read_whole(tmp_path: Path) -> None:
    value = bytes(range(256)) * 4096  # 1 MiB exactly, not UTF-8
    (tmp_path / "key").write_bytes(value)
    (tmp_path / "link").symlink_to(tmp_path / "key")
    secret = secrets.parse(f"tls.key={tmp_path / 'link'}")
    assert secret.path == tmp_path / "key" and secret.read() == value


def test_a_secrets_folder_whose_summon_was_killed_is_swept_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `summon run --target unix --secret ...` killed with SIGKILL took its app along but left
    # summon-secrets-NAME-... with the keys in /dev/shm until the next boot.
    monkeypatch.setattr(secrets, "SHM", tmp_path)
    key = tmp_path / "key"
    key.write_bytes(b"key")
    given = (SecretFile("tls.key", key),)
    script = (
        "import os, sys; from pathlib import Path; from summon.targets import secrets; "
        f"secrets.SHM = Path({str(tmp_path)!r}); "
        "print(secrets.private_folder('web-1', ()), flush=True); os.kill(os.getpid(), 9)"
    )
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    stale = Path(killed.stdout.strip())
    assert stale.is_dir() and stale.parent == tmp_path, killed.stderr  # left behind
    live = secrets.private_folder("web-2", given)  # held by this process
    assert not stale.exists()
    made = secrets.private_folder("web-3", given)
    assert live.exists() and (made / "tls.key").read_bytes() == b"key"
    secrets.release(live)
    secrets.release(made)
    assert list(tmp_path.glob("*summon-secrets*")) == []
