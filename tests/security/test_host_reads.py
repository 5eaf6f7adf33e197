"""What the host reads of a running instance's own files: never through a link the app made.

The host asks the app for its figures and reads the answer from the instance's /tmp through
/proc/PID/root (`summon stats`, the gateway's status page; a direct-mode stack's counters
alike). The app names that file; a symbolic link there, opened plainly, was followed by the
host's process as root, from the host's root: a hostile app had the host read a file of the
host's (or /dev/zero, without end). Rule (targets/sandbox/procroot.py): the last name is
opened without following links or blocking, and only a small regular file is read.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile_apps import needs_sandbox
from sealed_image import SealedImage, make_sealed_image

from summon.targets.base import IMAGE_ARGV, RunSpec
from summon.targets.sandbox import appstats, procroot, tap

pytestmark = needs_sandbox

PLANT = r"""
import os, sys, time
for path, target in zip(sys.argv[1::2], sys.argv[2::2]):
    os.symlink(target, path)
print("planted", flush=True)
time.sleep(30)
"""


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealedImage]:
    yield make_sealed_image(tmp_path_factory.mktemp("host-reads"))


def test_a_link_the_app_plants_is_never_followed_by_the_host(
    image: SealedImage, tmp_path: Path
) -> None:
    bait = tmp_path / "host-figures"
    bait.write_text("seq=99 gc0=12345\n")
    os.chmod(tmp_path, 0o755)
    (image.root / "app" / "plant.py").write_text(PLANT)
    args = [appstats.STATS_PATH, str(bait), tap.STATS_PATH, "/dev/zero"]
    app = image.app_json("plant.py", seal={"mode": "off", "preload": []}, args=args)
    (image.root / "etc/summon/app.json").write_text(json.dumps(app))
    out = tmp_path / "out"
    with open(out, "wb") as f:
        spec = RunSpec(
            name=f"reads-{uuid.uuid4().hex[:8]}",
            image="sealed-test",
            rootfs=image.root,
            app_config=app,
            argv=IMAGE_ARGV,
            env={},
            network="socket",
            state_dir=tmp_path / "state",
            stdout=f.fileno(),
        )
        instance = image.target.start(spec)
    try:
        deadline = time.monotonic() + 20
        while "planted" not in out.read_text():
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        pid = instance._pid  # type: ignore[attr-defined]
        # Control: the link is there, and leads to the host's file when followed.
        assert os.readlink(f"/proc/{pid}/root{appstats.STATS_PATH}") == str(bait)
        started = time.monotonic()
        assert appstats._read(pid) == {}  # not the bait's seq=99
        assert tap.counters(pid) == {}  # not /dev/zero, read without end
        assert time.monotonic() - started < 1
        assert procroot.read_file(pid, "/tmp/absent", 10) is None
    finally:
        instance.stop(grace=1)


def test_the_host_reads_a_small_regular_file_only(tmp_path: Path) -> None:
    """The same rule on a folder of this host (/proc/self/root is /): a FIFO is not waited
    on, a link not followed, a file over the limit not read."""
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "big").write_bytes(b"x" * 100)
    (tmp_path / "ok").write_bytes(b"seq=1")
    (tmp_path / "link").symlink_to(tmp_path / "ok")
    me = os.getpid()
    assert procroot.read_file(me, f"{tmp_path}/ok", 10) == b"seq=1"
    assert procroot.read_file(me, f"{tmp_path}/link", 10) is None
    assert procroot.read_file(me, f"{tmp_path}/fifo", 10) is None
    assert procroot.read_file(me, f"{tmp_path}/big", 10) is None
