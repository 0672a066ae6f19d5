#!/usr/bin/env bash
# Set up a virtualenv with the openai SDK and run the end-to-end demo.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[openai]'
.venv/bin/python examples/demo.py
