#!/usr/bin/env bash
# Set up the benchmark extra (which installs the reference SDK) and run every
# benchmark, ours and the reference side by side. Pass --quick for fewer rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[bench]'
export PYTHONWARNINGS=ignore
for bench in bench_check bench_hooks bench_load bench_first_call; do
  echo "== $bench"
  .venv/bin/python "benchmarks/$bench.py" "$@" 2>/dev/null
  echo
done
