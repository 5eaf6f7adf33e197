"""The error an app's death shows: its console's last words, never the runtime's banner."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from summon.gateway.server import ImageLauncher

BANNER = "summon: serving the ASGI app main:app on port 80 (HTTP/1.1)"


def launcher(tmp_path: Path) -> ImageLauncher:
    return ImageLauncher(state_root=tmp_path)


def test_a_crash_with_no_words_does_not_show_the_banner_as_its_reason(tmp_path: Path) -> None:
    """It said "app exited with status 3: summon: serving the ASGI app ..."."""
    (tmp_path / "gw-web-1-1.log").write_text(
        "summon: warm-up: GET / -> 200, before the seal\n" + BANNER + "\n\n"
    )
    assert launcher(tmp_path).last_line("gw-web-1-1") == ""


def test_the_apps_own_last_line_is_shown_even_after_the_banner(tmp_path: Path) -> None:
    (tmp_path / "gw-web-1-1.log").write_text(f"KeyError: 'DATABASE_URL'\n{BANNER}\n")
    assert launcher(tmp_path).last_line("gw-web-1-1") == "KeyError: 'DATABASE_URL'"
    # The runtime's own reasons are reasons.
    (tmp_path / "gw-web-1-1.log").write_text("summon: the app's lifespan startup failed: x\n")
    assert launcher(tmp_path).last_line("gw-web-1-1") == (
        "summon: the app's lifespan startup failed: x"
    )


def test_a_log_just_rotated_shows_the_rotated_out_parts_last_line(tmp_path: Path) -> None:
    (tmp_path / "gw-web-1-1.log").write_text("")
    (tmp_path / "gw-web-1-1.log.1").write_text("one\nMemoryError\n")
    assert launcher(tmp_path).last_line("gw-web-1-1") == "MemoryError"


def test_only_the_tail_of_a_full_log_is_read(tmp_path: Path) -> None:
    """The whole log (up to 10 MB) was read at each death, on the gateway's event loop."""
    with (tmp_path / "gw-web-1-1.log").open("w") as f:
        for _ in range(10 * 1024):
            f.write("x" * 1023 + "\n")
        f.write("ValueError: the last words\n")
    tracemalloc.start()
    try:
        said = launcher(tmp_path).last_line("gw-web-1-1")
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert said == "ValueError: the last words"
    assert peak < 1 << 20  # the whole log would be over 10 MB in memory at once
