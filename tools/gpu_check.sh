#!/usr/bin/env bash
# The NVIDIA GPU device check (issue 34), within 8 minutes: the set-up (skipped when .venv is there), then
# tools/gpu_check.py, which writes its JSON report to $1 (default gpu-check.json). Exit 3: no GPU here, and it stopped
# before its first GPU call, saying what it would have done.
set -euo pipefail
cd "$(dirname "$0")/.."
report="${1:-gpu-check.json}"
[ -x .venv/bin/python ] || bash tools/setup.sh --test >&2
timeout 480 .venv/bin/python tools/gpu_check.py --report "$report" --minutes 6.5 "${@:2}"
