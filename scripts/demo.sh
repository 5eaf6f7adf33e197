#!/usr/bin/env bash
# The main job: set up, build examples/http into an image, and serve it sandboxed on
# 127.0.0.1:8080 until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
summon build examples/http -t http
summon images
echo "serving http on http://127.0.0.1:8080/ (Ctrl-C to stop)"
exec summon run http --target sandbox -p 8080:80
