"""`python3 -m summon`: the `summon` command, for a tree used from PYTHONPATH uninstalled."""

from summon.cli.main import main

main()
