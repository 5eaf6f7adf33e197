"""`summon gateway`: flags and the config's check; the gateway runs in a process of its own.

cli/main.py registers COMMANDS. Once the config has loaded, this process becomes the gateway's
own (summon.gateway.main, by execve: the same pid, for the signals a supervisor sends), which
starts without site.py and without click: its memory at rest is a goal of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from summon.cli.pathflags import NonEmptyPath


@click.command("gateway")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=NonEmptyPath(path_type=Path, dir_okay=False),
    help="The gateway config file (TOML; see docs/gateway.md).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log boots, stops and failures.")
def gateway_command(config_path: Path, verbose: bool) -> None:
    """Serve services on demand: boot on DNS query or connection, stop when idle."""
    from summon.gateway import config as config_mod
    from summon.gateway.main import lean_command

    # A bad file fails here, one line, before anything listens; the gateway's process gets
    # the document that was checked (main.CHECKED_CONFIG).
    checked = config_mod.read(config_path)
    config_mod.check_paths(config_mod.parse(checked, config_path))
    argv, env = lean_command(config_path.absolute(), verbose, checked)
    os.execve(argv[0], argv, env)


COMMANDS: tuple[click.Command, ...] = (gateway_command,)
