"""``doctor``: each thing enforcement needs, checked, with what to do when it is missing.

A check says OK, WARN (works, but probably not as meant), FAIL (enforcement
cannot work as configured; exit 2) or SKIP (could not be checked, because an
earlier check failed or there is no way to).
"""

from __future__ import annotations

import argparse
import email.utils
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Optional

from . import EXIT_OK, EXIT_UNHEALTHY
from ._output import print_json
from ._session import API_KEY, Session, open_session

__all__ = ["Check", "run_doctor"]

TEAM_ID = "REVENIUM_TEAM_ID"
BASE_URL = "REVENIUM_ENFORCEMENT_BASE_URL"
CACHE_DIR = "REVENIUM_CACHE_DIR"
# The Date header has a resolution of one second and the request takes some.
CLOCK_TOLERANCE_SECONDS = 30.0


@dataclass(frozen=True)
class Check:
    name: str
    result: str  # OK, WARN, FAIL, SKIP
    detail: str
    fix: Optional[str] = None


def _credentials() -> list[Check]:
    key = (os.environ.get(API_KEY) or "").strip()
    team = os.environ.get(TEAM_ID) or ""
    checks = []
    if not key:
        checks.append(
            Check("api key", "FAIL", "not set", f"set {API_KEY} to the team's Revenium API key")
        )
    elif not key.startswith(("hak_", "rev_")):
        checks.append(
            Check("api key", "WARN", "set, but not starting with hak_ or rev_; used anyway")
        )
    else:
        checks.append(Check("api key", "OK", "set"))
    if not team:
        checks.append(Check("team id", "FAIL", "not set", f"set {TEAM_ID} to the team's id"))
    elif set(team) <= {"."}:
        checks.append(Check("team id", "FAIL", f"{team!r} is not a team id", f"fix {TEAM_ID}"))
    else:
        checks.append(Check("team id", "OK", team))
    return checks


def _switches(session: Session) -> Check:
    status = session.engine.status()
    if status.bypass:
        return Check("enabled", "WARN", "REVENIUM_BYPASS is on: nothing is enforced")
    if not status.enabled:
        return Check(
            "enabled",
            "WARN",
            "enforcement is off: every call passes",
            "set REVENIUM_CIRCUIT_BREAKER_ENABLED=true",
        )
    mode = "closed" if status.fail_closed else "open"
    return Check("enabled", "OK", f"on, fail mode {mode}")


def _feed(session: Session) -> list[Check]:
    engine = session.engine
    base = engine.status().base_url
    if not engine.status().configured:
        reason = "needs the api key and team id"
        return [Check("base url", "SKIP", reason), Check("payload", "SKIP", reason)]
    if engine.refresh():
        status = engine.status()
        return [
            Check("base url", "OK", f"{base} answered"),
            Check("payload", "OK", f"{status.rule_count} rule(s), {status.tripped_count} tripped"),
        ]
    error = engine.status().last_error or "unknown error"
    if error.startswith(("unreadable body", "payload not usable", "body over")):
        return [
            Check("base url", "OK", f"{base} answered"),
            Check("payload", "FAIL", error, f"is {BASE_URL} the control plane, not a proxy page?"),
        ]
    return [Check("base url", "FAIL", f"{base}: {error}", _feed_fix(error)), _skip_payload()]


def _skip_payload() -> Check:
    return Check("payload", "SKIP", "no answer to read")


def _feed_fix(error: str) -> str:
    if error.startswith("HTTP 401") or error.startswith("HTTP 403"):
        return f"the server refused the key: check {API_KEY}"
    if error.startswith("HTTP 404"):
        return f"no such team at this address: check {TEAM_ID} and {BASE_URL}"
    return f"check {BASE_URL} (or REVENIUM_METERING_BASE_URL) and the network"


def _snapshot_dir(session: Session) -> Check:
    directory = session.engine.settings.cache_dir
    if directory is None:
        return Check(
            "snapshot dir",
            "WARN",
            f"disabled ({CACHE_DIR}=off): a restarted process starts with no rules",
        )
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".doctor-"):
            pass
    except OSError as problem:
        return Check(
            "snapshot dir",
            "FAIL",
            f"cannot write to {directory}: {problem.strerror or problem}",
            f"set {CACHE_DIR} to a writable directory (or off)",
        )
    return Check("snapshot dir", "OK", f"{directory} is writable")


def _clock(session: Session, reachable: bool, timeout: float) -> Check:
    """Compares with the server's ``Date``: rule windows end by the wall clock."""
    if not reachable:
        return Check("clock", "SKIP", "the server was not reached")
    import httpx

    try:  # no key sent: the Date header of any answer will do
        response = httpx.get(session.engine.status().base_url, timeout=timeout)
        server = email.utils.parsedate_to_datetime(response.headers["date"]).timestamp()
    except (httpx.HTTPError, KeyError, TypeError, ValueError):
        return Check("clock", "SKIP", "the server sent no usable Date header")
    skew = time.time() - server
    if abs(skew) <= CLOCK_TOLERANCE_SECONDS:
        return Check("clock", "OK", f"within {abs(skew):.0f} s of the server's")
    side = "ahead of" if skew > 0 else "behind"
    return Check(
        "clock",
        "FAIL",
        f"{abs(skew):.0f} s {side} the server's: budget windows end early or late",
        "synchronize the system clock (NTP)",
    )


def _print_human(checks: list[Check]) -> None:
    width = max(len(check.name) for check in checks)
    for check in checks:
        sys.stdout.write(f"{check.result:<4}  {check.name:<{width}}  {check.detail}\n")
        if check.fix and check.result != "OK":
            sys.stdout.write(f"{'':<4}  {'':<{width}}  fix: {check.fix}\n")


def run_doctor(args: argparse.Namespace) -> int:
    checks = _credentials()
    with open_session(offline=False, timeout=args.timeout) as session:
        checks.append(_switches(session))
        feed = _feed(session)
        checks.extend(feed)
        checks.append(_snapshot_dir(session))
        checks.append(_clock(session, feed[0].result == "OK", args.timeout))
    failed = [check for check in checks if check.result == "FAIL"]
    if args.json:
        print_json({"ok": not failed, "checks": [asdict(check) for check in checks]}, sys.stdout)
    else:
        _print_human(checks)
    return EXIT_UNHEALTHY if failed else EXIT_OK
