#!/usr/bin/env bash
# Run every example (or the ones named), each in its own process with a time limit.
#
#   bash examples/run_all.sh                 # all of them, with the python on PATH (your venv)
#   bash examples/run_all.sh bypass ...      # only these
#   PYTHON=.venv/bin/python EXAMPLE_TIMEOUT=300 bash examples/run_all.sh
#
# Prints "pass" or "FAIL" per example (a failure's output below it) and exits 1
# when any failed. Each example is offline: local rules server, local fake provider.
set -uo pipefail
cd "$(dirname "$0")"
# The test virtualenv (bash tests/run.sh builds it) has every provider SDK the examples use.
default_python=$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python
[[ -x $default_python ]] || default_python=$(command -v python || command -v python3)
python=${PYTHON:-$default_python}
limit=${EXAMPLE_TIMEOUT:-120}

if (($# == 0)); then
  set --
  for script in [!_]*.py; do
    [[ $script == fake_* ]] || set -- "$@" "${script%.py}"
  done
fi

failed=0
output=$(mktemp)
trap 'rm -f "$output"' EXIT
for name in "$@"; do
  started=$SECONDS
  if [[ -f $name.py ]] && timeout --kill-after=10 "$limit" "$python" "$name.py" >"$output" 2>&1; then
    printf 'pass  %-26s %3d s\n' "$name" $((SECONDS - started))
  else
    status=$?
    [[ -f $name.py ]] || echo "no example named $name" >"$output"
    ((status == 124)) && echo "timed out after $limit s" >>"$output"
    printf 'FAIL  %-26s %3d s\n' "$name" $((SECONDS - started))
    sed 's/^/      /' "$output"
    failed=1
  fi
done
exit $failed
