#!/usr/bin/env bash
# GPU acceptance: one JSON document on stdout (benchmarks/gpu_acceptance.py has the sections).
# On a CUDA machine it measures at the paper's tri-pd size in < 8 minutes; without CUDA it runs
# the same code at toy size. Extra arguments go to the script, e.g. --out gpu.json.
#
#   bash benchmarks/gpu_acceptance.sh --out gpu-acceptance.json
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export RAY_USAGE_STATS_ENABLED="${RAY_USAGE_STATS_ENABLED:-0}"
exec timeout "${GPU_ACCEPTANCE_TIMEOUT_S:-900}" "${PYTHON:-python}" benchmarks/gpu_acceptance.py "$@"
