"""The CLI against ``enforcement serve-rules``: a hand-written payload as a local control plane.

    python examples/cli_serve_rules.py

``enforcement serve-rules rules.json`` serves the file on 127.0.0.1 and
prints the ``export`` lines that point the library (and the CLI) at it. This
example starts it, then runs ``status``, ``rules``, ``explain`` and
``doctor`` against it as an operator would, edits the file, and sees
``explain`` change its verdict (exit 3: the call would be blocked).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from _example import clean_environment, expect, run_cli

from enforcement.testing import make_filter, make_rule

BLOCKED = 3  # explain's exit status for "this call would be blocked"


def payload(breached: bool) -> str:
    cap = make_rule(
        1,
        "acme gpt-4o cap",
        breached=breached,
        threshold=500.0,
        current_value=512.4 if breached else 120.0,
        filters=[make_filter("ORGANIZATION", "IS", "acme")],
    )
    return json.dumps({"rules": [cap]}, indent=2)


def read_exports(server: subprocess.Popen[str]) -> dict[str, str]:
    """The ``export NAME=value`` lines ``serve-rules`` prints before it serves."""
    environment: dict[str, str] = {}
    assert server.stdout is not None
    for line in server.stdout:
        if line.startswith("# serving"):
            return environment
        name, _, value = line.removeprefix("export ").strip().partition("=")
        environment[name] = value.strip("'")
    raise SystemExit("serve-rules ended before serving")


def main() -> None:
    clean_environment()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "rules.json")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(payload(breached=False))
        command = [sys.executable, "-m", "enforcement", "serve-rules", path, "--poll", "0.2"]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            served = read_exports(server)
            environ = {**os.environ, **served, "REVENIUM_CACHE_DIR": os.path.join(folder, "cache")}
            print(f"serve-rules is up at {served['REVENIUM_ENFORCEMENT_BASE_URL']}")
            status, output = run_cli("status", environ=environ)
            expect(
                status == 0 and served["REVENIUM_METERING_API_KEY"] not in output, "no key shown"
            )
            status, output = run_cli("rules", "--json", environ=environ)
            expect(status == 0 and "acme gpt-4o cap" in output, "rules lists the served rule")
            explain = ("explain", "--model", "gpt-4o", "--provider", "openai", "--org", "acme")
            status, _ = run_cli(*explain, environ=environ)
            expect(status == 0, "explain: the call would pass")
            status, _ = run_cli("doctor", environ=environ)
            expect(status == 0, "doctor finds nothing to fix")

            print("Edit the file: the cap is breached.")
            with open(path + ".new", "w", encoding="utf-8") as handle:
                handle.write(payload(breached=True))
            os.replace(path + ".new", path)
            deadline = time.monotonic() + 30
            while run_cli(*explain, environ=environ)[0] != BLOCKED:
                expect(time.monotonic() < deadline, "serve-rules picked up the edit")
                time.sleep(0.2)
            expect(True, "explain names the blocking rule, exit 3")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
