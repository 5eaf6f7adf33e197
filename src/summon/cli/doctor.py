"""`summon doctor`: what this host can run, target by target, and what to install for the rest."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click
from rich.markup import escape

from summon import targets
from summon.cli.output import out
from summon.errors import SummonError
from summon.targets.base import Check


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def doctor(as_json: bool) -> None:
    """Say what this host can run, and what to install for the rest."""
    from summon.build.python import probe_interpreter
    from summon.manifest import DEFAULT_PYTHON

    build = f"image interpreter {DEFAULT_PYTHON}"
    try:
        interp = probe_interpreter(DEFAULT_PYTHON)
        found = [("build", Check(f"{build} (Python {interp.version})", True))]
    except SummonError as e:
        found = [("build", Check(build, False, str(e)))]
    for name in targets.names():
        found += [(name, check) for check in targets.target_class(name).check()]
    checks: list[dict[str, Any]] = [{"target": t, **dataclasses.asdict(c)} for t, c in found]
    if as_json:
        print(json.dumps(checks, indent=2))
        return
    for c in checks:
        mark = "[green]ok[/]  " if c["ok"] else "[red]no[/]  "
        out.print(
            f"{mark}{escape(c['target']):8} {escape(c['what'])}"
            + (f"\n            fix: {escape(c['fix'])}" if c["fix"] else "")
            + (f"\n            tip: {escape(c['tip'])}" if c["tip"] else ""),
            markup=True,
        )
    usable = sorted({c["target"] for c in checks} - {c["target"] for c in checks if not c["ok"]})
    out.print(f"\nusable here: {', '.join(usable) or 'none'}")
