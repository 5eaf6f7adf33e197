#!/usr/bin/env bash
# Set up, then run every check: lint, types, and the whole test suite (what CI runs).
#
#   bash scripts/test.sh            everything: unit, fuzz, integration, security
#   bash scripts/test.sh --quick    lint, types and the unit tests only: the fast local loop
#                                   (no setup, no root, no namespaces, no VMs; a minute or so)
# Any other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# This checkout's summon, not whichever one an editable install points at (in a git worktree,
# the main checkout's: its unit tests passed while the worktree's own new tests never ran).
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if [ "${1:-}" = "--quick" ]; then
  shift
  ruff check src tests benchmarks
  mypy
  exec python3 -m pytest tests/unit "$@"
fi
bash scripts/setup.sh
ruff check src tests benchmarks
mypy
python3 -m pytest "$@"
