#!/usr/bin/env bash
# The support-range matrix: one provider SDK's hook tests against one release of that SDK,
# to find the oldest release a hook's declared `minimum` can honestly claim.
#
#   bash tests/matrix.sh SDK VERSION [pytest args]
#   MATRIX_WITH='httpx<0.28' bash tests/matrix.sh openai 1.0.0    also install these requirements
#
# Builds /tmp/matrix-venvs/SDK-VERSION, reused while tests/constraints.txt is unchanged: the
# test extra locked by tests/constraints.txt less SDK's own pin (installed once per SDK, in
# .base-SDK, and copied), then SDK==VERSION with pip adjusting its own dependencies
# (MATRIX_WITH: e.g. an older httpx for releases that pass proxies= to httpx).
# Then runs SDK's hook tests and its table of the conformance suite, from the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: bash tests/matrix.sh SDK VERSION [pytest args]"
sdk=${1:?$usage} version=${2:?$usage}
shift 2
case $sdk in
  openai) file=test_openai.py table=openai req=openai ;;
  anthropic) file=test_anthropic.py table=anthropic req='anthropic[bedrock,vertex]' ;;
  google-genai) file=test_google_genai.py table=google_genai req=google-genai ;;
  ollama) file=test_ollama.py table=ollama req=ollama ;;
  langchain-core) file=test_langchain.py table='' req=langchain-core ;;
  *) echo "matrix.sh: no hook tests known for $sdk" >&2; exit 2 ;;
esac
venv=/tmp/matrix-venvs/$sdk-$version base=/tmp/matrix-venvs/.base-$sdk
with=${MATRIX_WITH:-}
PIP=(-m pip install -q --disable-pip-version-check)
lock=$(grep -iv "^$sdk==" tests/constraints.txt | sha1sum)  # rebuilt when the lock changes
if [[ "$(cat "$base/.matrix" 2>/dev/null)" != "$lock" ]]; then  # shared by SDK's releases
  rm -rf "$base" "$venv"
  python3 -m venv "$base"
  grep -iv "^$sdk==" tests/constraints.txt >"$base/constraints.txt"
  "$base/bin/python" "${PIP[@]}" -c "$base/constraints.txt" -e "$PWD[test]"
  echo "$lock" >"$base/.matrix"
fi
if [[ "$(cat "$venv/.matrix" 2>/dev/null)" != "$lock with=$with" ]]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  cp -a "$base/lib/." "$venv/lib/"  # the locked test extra, as a copy: one install per SDK
  # shellcheck disable=SC2086  # MATRIX_WITH is a list of requirements
  "$venv/bin/python" "${PIP[@]}" "$req==$version" $with
  echo "$lock with=$with" >"$venv/.matrix"
fi
"$venv/bin/python" -c 'import importlib.metadata as m, sys
print(" ".join(f"{d}=={m.version(d)}" for d in sys.argv[1:]))' "$sdk" httpx
tests=("tests/hooks/$file")
select=()
if [[ -n $table ]]; then
  tests+=(tests/hooks/test_conformance.py)
  select=(-k "$file or [$table")  # the whole provider file, and that table's conformance cases
fi
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider -W ignore::DeprecationWarning \
  "${tests[@]}" "${select[@]}" "$@"
