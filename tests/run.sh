#!/usr/bin/env bash
# Set up a virtualenv, then lint, type-check and run the tests.
#
#   bash tests/run.sh [pytest args]   the whole suite, with exactly the versions in
#                                     tests/constraints.txt (what CI runs)
#   bash tests/run.sh --latest        the newest release of every provider SDK, hook suite;
#                                     prints each SDK's version and its pass or fail
#   bash tests/run.sh --pythons       the core suite (no provider SDKs) on every CPython
#                                     3.9 and newer found on PATH, locked like the default
#
# Regenerate the lock with `bash tests/lock.sh` when pyproject.toml's extras change.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=(-m pip install -q --disable-pip-version-check)
SDKS=(openai anthropic google-genai ollama litellm langchain-core boto3 perplexityai fal-client)
# SDKs whose newest release caps another's (google-cloud-aiplatform keeps google-genai below 3):
# each gets a venv of its own for --latest, with only its own tests.
APART=(google-cloud-aiplatform:vertexai)

locked() {
  python3 -m venv .venv
  .venv/bin/python "${PIP[@]}" -c tests/constraints.txt -e '.[test]'
  .venv/bin/ruff check .
  .venv/bin/ruff format --check .
  .venv/bin/mypy
  .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
}

# A venv with the locked suite, then the newest release of the given SDKs; report per SDK.
newest() {
  local venv=$1 sdks=$2
  shift 2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" "${PIP[@]}" -c tests/constraints.txt -e '.[test]'
  # shellcheck disable=SC2086  # $sdks is a list of names
  "$venv/bin/python" "${PIP[@]}" --upgrade --upgrade-strategy eager $sdks
  # shellcheck disable=SC2086
  "$venv/bin/python" tests/sdk_report.py $sdks -- -q -p no:cacheprovider "$@"
}

latest() {
  local failed=0 apart
  newest .venv-latest "${SDKS[*]}" tests/hooks -k "not vertexai" "$@" || failed=1
  for apart in "${APART[@]}"; do
    newest ".venv-latest-${apart#*:}" "${apart%%:*}" tests/hooks -k "${apart#*:}" "$@" || failed=1
  done
  return $failed
}

# The interpreter for one Python version: on PATH, or installed by pyenv but not selected.
interpreter() {
  local candidate
  for candidate in "$(command -v "python$1" || true)" \
    "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$1".*/bin/"python$1"; do
    if [[ -x $candidate ]] && "$candidate" -c 'pass' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
}

pythons() {
  local failed=0 python version
  for version in 3.9 3.10 3.11 3.12 3.13 3.14 3.15; do
    python=$(interpreter "$version")
    [[ -n $python ]] || continue
    echo "== Python $version"
    rm -rf ".venv-$version"
    "$python" -m venv ".venv-$version"
    ".venv-$version/bin/python" "${PIP[@]}" -c tests/constraints.txt -e '.[test-core]'
    ".venv-$version/bin/python" -m pytest -q -p no:cacheprovider --ignore=tests/hooks "$@" \
      || failed=1
  done
  return $failed
}

case "${1:-}" in
  --latest) shift; latest "$@" ;;
  --pythons) shift; pythons "$@" ;;
  *) locked "$@" ;;
esac
