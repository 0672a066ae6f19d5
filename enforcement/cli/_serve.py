"""``serve-rules FILE``: the public test server, serving a payload a developer edits by hand.

The file is checked every ``--poll`` seconds and served again when it
changes; a file that does not parse keeps the last good payload (and says
so), as the library keeps its last good rules.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shlex
import sys
import time
from typing import TYPE_CHECKING, Any, Optional

from . import UsageError

if TYPE_CHECKING:
    from ..testing import RulesServer

__all__ = ["is_loopback", "read_payload", "run_serve"]

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


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host``: ``localhost`` or a loopback address."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _check_address(args: argparse.Namespace) -> None:
    """Refuse to serve the network by accident: the file is served to anyone, with no key."""
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: not a port (0 to 65535; 0 picks a free one)")
    if is_loopback(args.host):
        return
    if not args.public:
        raise UsageError(
            f"--host {args.host} is reachable from other machines, and serve-rules serves "
            "the file to anyone without checking a key; add --public if that is meant"
        )
    print(
        f"warning: serving {args.file} on {args.host} to the network, with no authentication",
        file=sys.stderr,
        flush=True,
    )


def _start(args: argparse.Namespace) -> RulesServer:
    from ..testing import RulesServer

    server = RulesServer(team_id=args.team_id, api_key=None, host=args.host, port=args.port)
    try:
        return server.start()
    except OSError as problem:
        raise UsageError(
            f"cannot listen on {args.host}:{args.port}: {problem.strerror or problem}"
        ) from None


def run_serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (which ``main`` turns into exit 0)."""
    _check_address(args)
    payload = read_payload(args.file)
    stamp = _stamp(args.file)  # before the address is printed: a client may edit at once
    server = _start(args)
    try:
        _announce(server, args.file, payload)
        while True:
            time.sleep(args.poll)
            current = _stamp(args.file)
            if current != stamp and current is not None:
                stamp = current
                payload = _reload(args.file, payload)
                server.set_payload(payload)
    finally:
        server.close()


def _announce(server: RulesServer, path: str, payload: Any) -> None:
    """Serve ``payload`` and print the environment that points the library at it."""
    server.set_payload(payload)
    for name, value in server.env(REVENIUM_METERING_API_KEY=_DUMMY_KEY).items():
        print(f"export {name}={shlex.quote(value)}")
    print(f"# serving {_rule_count(payload)} rule(s) from {path} at {server.url}")
    print("# any API key is accepted; Ctrl-C stops", flush=True)
