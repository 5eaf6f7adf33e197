"""Kernel fragments: every option says why, selection follows app.json, dropped options fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from summon.build import kernel
from summon.build.kernel import (
    KernelConfigError,
    KernelSourceMissing,
    Option,
    dropped_options,
    merge_config,
    parse_config,
    parse_fragment,
    requested_options,
    select_fragments,
    verify_config,
)
from summon.errors import BuildError, UserError


def test_every_shipped_fragment_parses_and_gives_each_option_a_reason() -> None:
    names = kernel.fragment_names()
    assert {"base", "serial-console", "virtio-net", "inet", "packet", "virtio-blk",
            "virtio-rng", "vsock"} <= set(names)  # fmt: skip
    for name in names:
        fragment = kernel.load_fragment(name)
        assert fragment.description, f"{name} has no opening comment"
        assert fragment.options, f"{name} sets nothing"
        for opt in fragment.options:
            assert opt.name.startswith("CONFIG_")
            assert len(opt.reason) > 10, f"{name}: {opt.name} has no real reason"


def test_base_fragment_holds_what_a_python_init_needs() -> None:
    base = {o.name: o.value for o in kernel.load_fragment("base").options}
    for needed in (
        "CONFIG_64BIT",
        "CONFIG_BINFMT_ELF",
        "CONFIG_BLK_DEV_INITRD",
        "CONFIG_FUTEX",
        "CONFIG_EPOLL",
        "CONFIG_UNIX",
        "CONFIG_DEVTMPFS",
        "CONFIG_TMPFS",
        "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES",
    ):
        assert base[needed] == "y", needed
    # SMP oopsed on microvm with this base; one vCPU it is.
    assert base["CONFIG_SMP"] == "n"


def test_parse_fragment_reads_reasons_set_and_unset_options() -> None:
    text = (
        "# What this fragment is for.\n"
        "\n"
        "# Because the app needs it,\n"
        "# over two lines.\n"
        "CONFIG_FOO=y\n"
        "\n"
        "# Nothing uses it.\n"
        "# CONFIG_BAR is not set\n"
        "\n"
        "# A number.\n"
        "CONFIG_N=4\n"
    )
    fragment = parse_fragment("t", text)
    assert fragment.description == "What this fragment is for."
    assert fragment.options == (
        Option("CONFIG_FOO", "y", "Because the app needs it, over two lines.", "t"),
        Option("CONFIG_BAR", "n", "Nothing uses it.", "t"),
        Option("CONFIG_N", "4", "A number.", "t"),
    )
    assert fragment.options[1].line() == "# CONFIG_BAR is not set"


def test_an_option_without_a_reason_is_refused() -> None:
    with pytest.raises(BuildError, match="line 3: CONFIG_FOO has no comment"):
        parse_fragment("t", "# about\n\nCONFIG_FOO=y\n")
    with pytest.raises(BuildError, match="cannot read"):
        parse_fragment("t", "# about\n\n# why\nFOO=y\n")


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        ({"network": "none"}, ["base", "serial-console", "virtio-rng"]),
        ({"network": "socket"}, ["base", "serial-console", "virtio-rng", "virtio-net", "inet"]),
        ({}, ["base", "serial-console", "virtio-rng", "virtio-net", "inet"]),  # socket: default
        ({"network": "direct"}, ["base", "serial-console", "virtio-rng", "virtio-net", "packet"]),
        (
            {"network": "none", "volumes": ["/data"]},
            ["base", "serial-console", "virtio-rng", "virtio-blk"],
        ),
        ({"network": "none", "volumes": []}, ["base", "serial-console", "virtio-rng"]),
        (
            {"network": "none", "seal": {"mode": "on"}},
            ["base", "serial-console", "virtio-rng", "seccomp"],
        ),
        # audit mode installs no filter; images from before sealing have no "seal"
        ({"network": "none", "seal": {"mode": "audit"}}, ["base", "serial-console", "virtio-rng"]),
    ],
)
def test_select_fragments_follows_the_app_config(
    app: dict[str, object], expected: list[str]
) -> None:
    assert select_fragments(app) == expected


def test_select_fragments_takes_extras_once_and_refuses_unknown_ones() -> None:
    assert select_fragments({"network": "none"}, ["vsock", "base"])[-1] == "vsock"
    with pytest.raises(UserError, match="no kernel fragment 'nope'; known fragments: base"):
        select_fragments({"network": "none"}, ["nope"])


def test_fragments_that_disagree_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "a.config").write_text("# a\n\n# on\nCONFIG_X=y\n")
    (tmp_path / "b.config").write_text("# b\n\n# off\n# CONFIG_X is not set\n")
    monkeypatch.setattr(kernel, "FRAGMENT_DIR", tmp_path)
    with pytest.raises(BuildError, match="fragments a and b disagree on CONFIG_X"):
        requested_options(["a", "b"])


def test_merge_replaces_lines_and_appends_new_options() -> None:
    base = "# header\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\n"
    wanted = {
        "CONFIG_B": Option("CONFIG_B", "y", "r", "f"),
        "CONFIG_C": Option("CONFIG_C", "n", "r", "f"),
        "CONFIG_D": Option("CONFIG_D", "y", "r", "f"),
    }
    merged = merge_config(base, wanted)
    assert parse_config(merged) == {
        "CONFIG_A": "y",
        "CONFIG_B": "y",
        "CONFIG_C": "n",
        "CONFIG_D": "y",
    }
    assert merged.startswith("# header\n")


def test_verify_names_every_option_olddefconfig_dropped() -> None:
    wanted = {
        "CONFIG_A": Option("CONFIG_A", "y", "r", "base"),
        "CONFIG_B": Option("CONFIG_B", "y", "r", "virtio-net"),
        "CONFIG_C": Option("CONFIG_C", "n", "r", "base"),
        "CONFIG_D": Option("CONFIG_D", "n", "r", "base"),
    }
    final = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\n"  # D absent: counts as n
    assert [o.name for o in dropped_options(wanted, parse_config(final))] == [
        "CONFIG_B",
        "CONFIG_C",
    ]
    with pytest.raises(KernelConfigError) as info:
        verify_config(wanted, final)
    message = str(info.value)
    assert "CONFIG_B=y (fragment virtio-net) ended up n" in message
    assert "# CONFIG_C is not set (fragment base) ended up y" in message
    assert "\n" not in message
    verify_config(wanted, "CONFIG_A=y\nCONFIG_B=y\n")  # nothing lost: no error


def test_verify_names_the_dependencies_of_a_dropped_option(tmp_path: Path) -> None:
    (tmp_path / "drivers").mkdir()
    (tmp_path / "drivers" / "Kconfig").write_text(
        'config VIRTIO_NET\n\ttristate "Virtio network driver"\n\tdepends on VIRTIO\n'
        "\tselect NET_FAILOVER\n\nconfig OTHER\n\tdepends on X\n"
    )
    wanted = {"CONFIG_VIRTIO_NET": Option("CONFIG_VIRTIO_NET", "y", "r", "virtio-net")}
    with pytest.raises(KernelConfigError, match="ended up n, needs VIRTIO"):
        verify_config(wanted, "", tmp_path)


def test_a_missing_source_package_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(KernelSourceMissing) as info:
        kernel.source_id(tmp_path / "linux-source-6.1.tar.xz")
    assert str(info.value) == (
        "linux-source-6.1 is not installed: apt-get install linux-source-6.1"
    )
    assert info.value.exit_status == 2


def test_request_keys_change_with_fragments_and_source() -> None:
    a = kernel.request_key(["base"], "s1")
    assert a == kernel.request_key(["base"], "s1")
    assert a != kernel.request_key(["base", "virtio-net"], "s1")
    assert a != kernel.request_key(["base"], "s2")


def test_a_failed_build_names_its_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """make failing mid-build: a UserError naming the log, which holds make's output."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    build_dir = tmp_path / "build"
    (build_dir / "arch").mkdir(parents=True)
    fake_make = tmp_path / "make"
    fake_make.write_text(
        "#!/bin/sh\necho '  CC      kernel/fork.o'\necho 'error: boom' >&2\nexit 2\n"
    )
    fake_make.chmod(0o755)
    target = kernel.Kernel("ab" * 32, kernel.kernels_dir() / ("ab" * 32))
    seen: list[kernel.Progress] = []
    with pytest.raises(kernel.KernelBuildError) as info:
        kernel._compile([str(fake_make)], build_dir, target, ["base"], "", seen.append, 1)
    message = str(info.value)
    assert "the kernel build failed (make exit status 2); its log is " in message
    log = Path(message.rsplit(" ", 1)[1])
    assert log.is_file() and "error: boom" in log.read_text()
    assert [p.done for p in seen] == [1]
    assert not target.path.exists()  # nothing half-made in the cache
    assert not list(kernel.kernels_dir().glob(".build-*"))
