"""`summon doctor`: what this host can run, target by target, and what to install for the rest."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.markup import escape

from summon import targets
from summon.cli.output import out
from summon.errors import SummonError


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def doctor(as_json: bool) -> None:
    """Say what this host can run, and what to install for the rest."""
    from summon.build.python import probe_interpreter
    from summon.manifest import DEFAULT_PYTHON

    checks: list[dict[str, Any]] = []
    try:
        interp = probe_interpreter(DEFAULT_PYTHON)
        checks.append(
            {
                "target": "build",
                "what": f"image interpreter {DEFAULT_PYTHON} (Python {interp.version})",
                "ok": True,
                "fix": "",
                "tip": "",
            }
        )
    except SummonError as e:
        checks.append(
            {
                "target": "build",
                "what": f"image interpreter {DEFAULT_PYTHON}",
                "ok": False,
                "fix": str(e),
                "tip": "",
            }
        )
    for name in targets.names():
        for found in targets.target_class(name).check():
            checks.append(
                {
                    "target": name,
                    "what": found.what,
                    "ok": found.ok,
                    "fix": found.fix,
                    "tip": found.tip,
                }
            )
    if as_json:
        print(json.dumps(checks, indent=2))
        return
    for c in checks:
        mark = "[green]ok[/]  " if c["ok"] else "[red]no[/]  "
        out.print(
            f"{mark}{escape(c['target']):8} {escape(c['what'])}"
            + (f"\n            fix: {escape(c['fix'])}" if c["fix"] else "")
            + (f"\n            tip: {escape(c['tip'])}" if c.get("tip") else ""),
            markup=True,
        )
    usable = sorted({c["target"] for c in checks} - {c["target"] for c in checks if not c["ok"]})
    out.print(f"\nusable here: {', '.join(usable) or 'none'}")
