"""The ``enforcement`` command: what an operator asks of a running deployment.

It reads the same environment as the library (CONTRACT §5), so what it says
is what the application sees. Only :mod:`argparse` is imported up front: the
engine, HTTP client and rich are imported by the command that needs them, so
``enforcement --help`` answers at once.

>>> main(["status", "--json"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, NoReturn, Optional, Sequence

__all__ = ["EXIT_BLOCKED", "EXIT_OK", "EXIT_UNHEALTHY", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_UNHEALTHY = 2
EXIT_BLOCKED = 3

_EPILOG = """\
exit codes:
  0  healthy / the call would pass
  1  usage error (bad option, unreadable file)
  2  unhealthy: enforcement would fail closed, the rules are older than --max-age,
     or a doctor check failed
  3  explain: the call would be blocked

environment: the library's own (REVENIUM_CIRCUIT_BREAKER_ENABLED, REVENIUM_METERING_API_KEY,
REVENIUM_TEAM_ID, REVENIUM_ENFORCEMENT_BASE_URL, REVENIUM_CACHE_DIR, ...).
The API key is never printed.
"""

Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """A command-line value no command can use; reported on stderr with exit 1."""


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error; 2 here means unhealthy, so usage errors exit 1."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_caller_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    caller = parser.add_argument_group("the call to judge")
    caller.add_argument("--model", required=required, help="model as the hook reports it")
    caller.add_argument("--provider", required=required, help="provider label, e.g. openai")
    caller.add_argument("--org", help="organizationName")
    caller.add_argument("--product", help="productName")
    caller.add_argument("--subscriber-id")
    caller.add_argument("--subscriber-email")
    caller.add_argument("--credential", help="subscriber credential name")
    caller.add_argument("--agent")
    caller.add_argument("--task-type")
    caller.add_argument("--metadata", help="usage_metadata as a JSON object (options win)")


def _add_engine_options(parser: argparse.ArgumentParser, *, offline: bool = True) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds per request to the control plane"
    )
    if offline:
        parser.add_argument(
            "--offline", action="store_true", help="read the disk snapshot only, fetch nothing"
        )


def _lazy(spec: str) -> Handler:
    """``"_rules:run_rules"``: the handler, its module imported only when the command runs."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        module_name, _, function = spec.partition(":")
        handler: Handler = getattr(importlib.import_module(f"{__name__}.{module_name}"), function)
        return handler(args)

    return run


def _run_audit(args: argparse.Namespace) -> int:
    try:
        from .._audit import run_audit  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        print(
            "enforcement audit: this installation has no decision-log reader "
            "(enforcement._audit is missing); upgrade enforcement",
            file=sys.stderr,
        )
        return EXIT_USAGE
    code: int = run_audit(args.file, as_json=args.json, out=sys.stdout)
    return code


def _version() -> str:
    from .. import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; building it imports nothing but argparse."""
    parser = _Parser(
        prog="enforcement",
        description="Inspect and test client-side LLM cost enforcement.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"enforcement {_version()}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="show the library's log (-vv: debug)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help,
            description=help,
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(handler=handler)
        return sub

    status = command(
        "status", _lazy("_status:run_status"), "is enforcement on, and are its rules fresh?"
    )
    status.add_argument(
        "--max-age", type=float, metavar="SECONDS", help="exit 2 when the rules are older"
    )
    _add_engine_options(status)

    rules = command("rules", _lazy("_rules:run_rules"), "the rules held, as a table")
    _add_engine_options(rules)

    explain = command(
        "explain", _lazy("_rules:run_explain"), "the verdict for one call, rule by rule"
    )
    _add_caller_options(explain, required=True)
    explain.add_argument("--all", action="store_true", help="list rules that do not cover it too")
    _add_engine_options(explain)

    doctor = command(
        "doctor", _lazy("_doctor:run_doctor"), "check the configuration and say what to fix"
    )
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.add_argument("--timeout", type=float, default=3.0, help="seconds for the one request")

    watch = command(
        "watch", _lazy("_watch:run_watch"), "refresh every interval and print what changed"
    )
    watch.add_argument("--interval", type=float, default=5.0, metavar="SECONDS")
    watch.add_argument("--count", type=int, metavar="N", help="stop after N rounds")
    _add_caller_options(watch, required=False)
    _add_engine_options(watch, offline=False)

    serve = command(
        "serve-rules", _lazy("_serve:run_serve"), "serve a hand-written payload on 127.0.0.1"
    )
    serve.add_argument("file", help="JSON: a payload object or a bare list of rules")
    serve.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (a loopback one unless --public)"
    )
    serve.add_argument(
        "--public",
        action="store_true",
        help="allow a non-loopback --host: the file is served to anyone, with no key checked",
    )
    serve.add_argument("--team-id", default="local-team")
    serve.add_argument("--poll", type=float, default=0.5, help="seconds between file checks")

    audit = command("audit", _run_audit, "summarize a JSON-lines decision log")
    audit.add_argument("file")
    audit.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _configure_logging(verbosity: int) -> None:
    """Quiet by default: what the library would warn about, the commands report as data."""
    import logging

    level = {0: logging.CRITICAL + 1, 1: logging.WARNING}.get(verbosity, logging.DEBUG)
    logger = logging.getLogger("enforcement")
    logger.setLevel(level)
    if verbosity:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; returns its exit code (see ``enforcement --help``)."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    handler: Handler = args.handler
    try:
        return handler(args)
    except UsageError as problem:
        print(f"enforcement {args.command}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # `enforcement rules | head`
        return EXIT_OK
