"""The sandbox's OCI config: the user namespace and its id range, the masked /proc."""

from __future__ import annotations

from pathlib import Path

import pytest

from summon.errors import UserError
from summon.targets.base import RunSpec
from summon.targets.sandbox import config


def subids(tmp_path: Path, text: str) -> tuple[Path, Path]:
    (tmp_path / "subuid").write_text(text)
    (tmp_path / "subgid").write_text(text.replace("200000", "300000"))
    return tmp_path / "subuid", tmp_path / "subgid"


def test_the_default_range_is_unprivileged(tmp_path: Path) -> None:
    files = subids(tmp_path, "alice:100000:65536\n")
    assert config.id_range(files) == (config.DEFAULT_ID_RANGE, config.DEFAULT_ID_RANGE)
    assert config.DEFAULT_ID_RANGE[0] > 0


def test_a_summon_entry_in_subuid_chooses_the_range(tmp_path: Path) -> None:
    files = subids(tmp_path, "alice:100000:65536\nsummon:200000:131072\n")
    assert config.id_range(files) == ((200000, 65536), (300000, 65536))


@pytest.mark.parametrize("entry", ["summon:0:65536", "summon:200000:1000"])
def test_a_summon_entry_that_cannot_hold_the_app_is_one_line(tmp_path: Path, entry: str) -> None:
    with pytest.raises(UserError, match="the summon entry"):
        config.id_range(subids(tmp_path, entry + "\n"))


def test_the_app_runs_unprivileged_in_a_user_namespace(tmp_path: Path) -> None:
    spec = RunSpec(name="x", image="x", rootfs=tmp_path, app_config={}, state_dir=tmp_path)
    doc = config.oci_config(spec, Path("/run/netns/x"), tmp_path / "sock")
    linux = doc["linux"]
    assert {"type": "user"} in linux["namespaces"]
    assert (
        doc["process"]["user"]
        == {"uid": config.APP_UID, "gid": config.APP_GID}
        != {"uid": 0, "gid": 0}
    )
    (uids,), (gids,) = linux["uidMappings"], linux["gidMappings"]
    assert uids["containerID"] == gids["containerID"] == 0 and uids["hostID"] > 0
    assert all(not v for v in doc["process"]["capabilities"].values())
    # At least what the issue names; each decided by what the runtime reads (docs/sandbox.md).
    named = """kallsyms config.gz kpageflags kpagecount kpagecgroup iomem ioports slabinfo
        vmallocinfo cmdline sched_debug keys key-users timer_list modules buddyinfo zoneinfo
        pagetypeinfo sysvipc partitions diskstats devices""".split()
    assert {f"/proc/{name}" for name in named} <= set(linux["maskedPaths"])


def test_volumes_are_bound_writable_but_nothing_in_them_runs(tmp_path: Path) -> None:
    spec = RunSpec(name="x", image="x", rootfs=tmp_path, app_config={}, state_dir=tmp_path)
    doc = config.oci_config(
        spec, Path("/run/netns/x"), tmp_path / "sock", volumes=[("/data", tmp_path / "v")]
    )
    (mount,) = [m for m in doc["mounts"] if m["destination"] == "/data"]
    assert mount == {
        "destination": "/data",
        "type": "bind",
        "source": str(tmp_path / "v"),
        "options": ["bind", "rw", "nosuid", "nodev", "noexec"],
    }
    assert "SUMMON_VOLUMES=/data" in doc["process"]["env"]
    assert doc["root"]["readonly"] is True
    bare = config.oci_config(spec, Path("/run/netns/x"), tmp_path / "sock")
    assert not any(e.startswith("SUMMON_VOLUMES=") for e in bare["process"]["env"])


def test_the_images_passwd_names_the_uid_the_sandbox_runs_as() -> None:
    from summon.build.records import ETC_FILES, SANDBOX_UID
    from summon.targets.sandbox.config import APP_UID

    assert SANDBOX_UID == APP_UID
    assert f"app:x:{APP_UID}:{APP_UID}:".encode() in ETC_FILES["/etc/passwd"]


def test_long_instance_names_never_share_a_container() -> None:
    # The gateway names instances gw-SERVICE-PID-N: with a long service name, only the part
    # past the first 64 characters tells two boots (or two services) apart.
    service = "customer-facing-service-with-a-rather-long-name-0123456789abcdef"
    first, second = (
        config.container_id(f"gw-{service}-4242-1"),
        config.container_id(f"gw-{service}-4242-2"),
    )
    assert first != second
    assert len(first) == len(second) == 64
    assert first.startswith("summon-gw-customer-facing")
    assert config.container_id("web-1") == "summon-web-1"  # short ones read as they are


def test_the_runs_arguments_follow_the_image_argv() -> None:
    spec = RunSpec(name="x", image="x", rootfs=Path("/r"), app_config={}, args=("migrate", "-v"))
    doc = config.oci_config(spec, Path("/run/netns/x"), Path("/s"))
    assert doc["process"]["args"] == [*spec.argv, "migrate", "-v"]


def _shutdown_rules(spec: RunSpec, tmp_path: Path) -> list[dict[str, object]]:
    doc = config.oci_config(spec, Path("/run/netns/x"), tmp_path / "sock")
    return [r for r in doc["linux"]["seccomp"]["syscalls"] if "shutdown" in r["names"]]


def test_an_app_handed_host_listeners_shuts_down_for_writing_only(tmp_path: Path) -> None:
    """Rule seccomp.shutdown_rules: its shutdown(SHUT_RD) of a handed listener stopped it for
    the host and freed its port. An app that binds its own listeners keeps shutdown whole."""
    app = {"entry": {"kind": "function", "module": "app", "function": "main"}}
    served = RunSpec(name="x", image="x", rootfs=tmp_path, app_config=app, state_dir=tmp_path,
                     syscalls=("read", "write", "shutdown"))  # fmt: skip
    assert served.takes_host_sockets
    rules = _shutdown_rules(served, tmp_path)
    assert [(r["action"], r["args"]) for r in rules] == [
        ("SCMP_ACT_ALLOW", [{"index": 1, "value": 1, "op": "SCMP_CMP_EQ"}]),
        ("SCMP_ACT_NOTIFY", [{"index": 1, "value": 1, "op": "SCMP_CMP_NE"}]),
    ]
    script = {"entry": {"kind": "script", "path": "/app/main.py"}}
    own = RunSpec(name="x", image="x", rootfs=tmp_path, app_config=script, state_dir=tmp_path,
                  syscalls=("read", "write", "shutdown"))  # fmt: skip
    assert not own.takes_host_sockets
    assert [r.get("args") for r in _shutdown_rules(own, tmp_path)] == [None]
