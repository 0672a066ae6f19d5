"""``serve-rules FILE``: the public test server, serving a payload a developer edits by hand.

The file is checked every ``--poll`` seconds and served again when it
changes; a file that does not parse keeps the last good payload (and says
so), as the library keeps its last good rules.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from typing import Any, Optional

from . import UsageError

__all__ = ["read_payload", "run_serve"]

_LOCAL_HOST = "127.0.0.1"
_DUMMY_KEY = "hak_local_dummy"


def read_payload(path: str) -> Any:
    """The file's payload: an object with a ``rules`` list, or a bare list of rules."""
    try:
        with open(path, encoding="utf-8") as handle:
            payload = json.load(handle)
    except OSError as problem:
        raise UsageError(f"cannot read {path}: {problem.strerror or problem}") from None
    except ValueError as problem:
        raise UsageError(f"{path} is not JSON: {problem}") from None
    if isinstance(payload, dict) and isinstance(payload.get("rules"), list):
        return payload
    if isinstance(payload, list):
        return payload
    raise UsageError(f"{path}: expected an object with a 'rules' list, or a list of rules")


def _rule_count(payload: Any) -> int:
    return len(payload["rules"] if isinstance(payload, dict) else payload)


def _stamp(path: str) -> Optional[tuple[int, int]]:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _reload(path: str, served: Any) -> Any:
    """The new payload, or the one served when the new file is unusable."""
    try:
        payload = read_payload(path)
    except UsageError as problem:
        print(f"{problem}; still serving the last good payload", file=sys.stderr, flush=True)
        return served
    print(f"reloaded {path}: {_rule_count(payload)} rule(s)", flush=True)
    return payload


def _check_address(args: argparse.Namespace) -> None:
    # RulesServer binds 127.0.0.1 on a free port; a fixed port or another host needs
    # a RulesServer(host=, port=) the public test helper does not have yet.
    if args.host != _LOCAL_HOST:
        raise UsageError(f"--host: only {_LOCAL_HOST} is served")
    if args.port:
        raise UsageError("--port: a fixed port is not supported yet; leave it out (any free port)")


def run_serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (which ``main`` turns into exit 0)."""
    _check_address(args)
    payload = read_payload(args.file)
    from ..testing import RulesServer

    stamp = _stamp(args.file)  # before the address is printed: a client may edit at once
    with RulesServer(team_id=args.team_id, api_key=None) as server:
        server.set_payload(payload)
        environment = server.env(REVENIUM_METERING_API_KEY=_DUMMY_KEY)
        for name, value in environment.items():
            print(f"export {name}={shlex.quote(value)}")
        print(f"# serving {_rule_count(payload)} rule(s) from {args.file} at {server.url}")
        print("# any API key is accepted; Ctrl-C stops", flush=True)
        while True:
            time.sleep(args.poll)
            current = _stamp(args.file)
            if current != stamp and current is not None:
                stamp = current
                payload = _reload(args.file, payload)
                server.set_payload(payload)
