#!/usr/bin/env bash
# Set up, then run every check: lint, types, and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ruff check src tests benchmarks
mypy
python3 -m pytest "$@"
