"""`summon kernel ...`: build, list and explain the kernels specialized per image."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from summon.build import kernel as kernel_mod
from summon.cli import numbers
from summon.cli.output import animated, err, open_store, out
from summon.cli.usage import VerbGroup
from summon.store.image import Image


@contextlib.contextmanager
def kernel_progress(title: str) -> Iterator[Callable[[kernel_mod.Progress], None]]:
    """A status line for a kernel build: the phase, and while compiling, lines done of total.

    On a terminal it is a rich spinner; otherwise one line per phase and every 10%.
    """
    if animated():
        with err.status(title) as status:

            def show(p: kernel_mod.Progress) -> None:
                status.update(f"{title}: {_line(p)}")

            yield show
        return
    last: list[Any] = [None]

    def plain(p: kernel_mod.Progress) -> None:
        key = (p.phase, 10 * p.done // p.total if p.total else 0)
        if key != last[0]:
            last[0] = key
            print(f"{title}: {_line(p)}", file=sys.stderr, flush=True)

    yield plain


def _line(p: kernel_mod.Progress) -> str:
    if not p.total:
        return p.phase
    pct = min(99, 100 * p.done // p.total)
    return f"{p.phase} {pct}% ({p.done}/~{p.total} steps) {p.line}"


@click.group(cls=VerbGroup)
def kernel() -> None:
    """Kernels built per image for the qemu target (from Debian's linux-source-6.1)."""


@kernel.command("build")
@click.argument("image", required=False)
@click.option(
    "--with",
    "extra",
    multiple=True,
    metavar="FRAGMENT",
    help="Add a fragment (e.g. vsock) beyond what the image needs.",
)
@click.option(
    "-j", "--jobs", type=numbers.IntRange(min=1), help="Parallel compile jobs (default: CPUs)."
)
def build_cmd(image: str | None, extra: tuple[str, ...], jobs: int | None) -> None:
    """Build (or find cached) the kernel for IMAGE, or the base kernel without an image."""
    app: dict[str, Any] = {"network": "none"}
    title = "kernel"
    if image:
        img = Image.open(open_store(), image)
        app = img.app_config()
        title = f"kernel for {img.ref}"
    fragments = kernel_mod.select_fragments(app, extra)
    with kernel_progress(f"building the {title}") as show:
        k = kernel_mod.build_kernel(fragments, show, jobs)
    meta = k.meta()
    size = k.bzimage.stat().st_size
    out.print(
        f"kernel {k.id} ({meta.get('version', '?')}): {size / 1e6:.2f} MB bzImage, "
        f"fragments {', '.join(fragments)}; {k.bzimage}"
    )


@kernel.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def ls_cmd(as_json: bool) -> None:
    """List the cached kernels."""
    rows = []
    for k in kernel_mod.list_kernels():
        meta = k.meta()
        rows.append(
            {
                "id": k.id,
                "config_hash": k.config_hash,
                "version": meta.get("version", ""),
                "size": k.bzimage.stat().st_size,
                "fragments": meta.get("fragments", []),
                "build_seconds": meta.get("build_seconds"),
                "path": str(k.bzimage),
            }
        )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(box=None, pad_edge=False)
    for col in ("KERNEL", "VERSION", "SIZE", "BUILT IN", "FRAGMENTS"):
        table.add_column(col)
    for r in rows:
        built = f"{r['build_seconds']:.0f}s" if r["build_seconds"] is not None else "-"
        table.add_row(
            r["id"], r["version"], f"{r['size'] / 1e6:.2f} MB", built, ", ".join(r["fragments"])
        )
    out.print(table)


@kernel.command("config")
@click.argument("image")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def config_cmd(image: str, as_json: bool) -> None:
    """Show the options IMAGE's kernel turns on and off, and why, by fragment."""
    img = Image.open(open_store(), image)
    fragments = kernel_mod.select_fragments(img.app_config())
    cached = kernel_mod.cached_kernel(fragments)
    final = kernel_mod.kernel_options(cached) if cached else {}
    groups = [kernel_mod.load_fragment(name) for name in fragments]
    if as_json:
        doc = {
            "image": img.ref,
            "kernel": cached.config_hash if cached else None,
            "fragments": [
                {
                    "name": g.name,
                    "description": g.description,
                    "options": [
                        {"name": o.name, "value": o.value, "why": o.reason} for o in g.options
                    ],
                }
                for g in groups
            ],
        }
        print(json.dumps(doc, indent=2))
        return
    state = f"built, {cached.id}" if cached else "not built yet: summon kernel build " + img.ref
    out.print(
        f"[bold]kernel for {escape(img.ref)}[/] ({escape(state)}): "
        f"tinyconfig plus {escape(', '.join(fragments))}",
        markup=True,
    )
    for g in groups:
        out.print(f"\n[bold]{escape(g.name)}[/]: {escape(g.description)}", markup=True)
        table = Table(box=None, pad_edge=False, show_header=False)
        table.add_column("option", no_wrap=True)
        table.add_column("why")
        for o in g.options:
            table.add_row(o.line(), o.reason)
        out.print(table)
    if final:
        on = sum(1 for v in final.values() if v != "n")
        out.print(f"\nthe final .config sets {on} options ({cached.config if cached else ''})")
