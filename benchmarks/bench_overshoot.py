"""The runaway loop (issue 11): how much is spent past a cap before the first refusal.

The scenario, for the reference SDK and for ours, through the same fake
provider and rules feed:

* a pooled TOTAL_COST cap (default $1.00);
* ``--threads`` threads per process (default 16) calling the real openai SDK
  in a tight loop against a local fake OpenAI server, which answers each call
  with 20,000 prompt and 11,667 completion tokens of gpt-4o-mini ($0.15 /
  $0.60 per million: $0.01 a call) after ``--latency`` seconds; the request
  carries a prompt of about 20,000 tokens and ``max_tokens=11667``, so a
  client-side estimate sees the call's real size;
* a control plane (``enforcement.testing.RulesServer``) that recompiles the
  rule's ``currentValue`` from the provider's served usage every
  ``--recompile`` seconds (it counts spend with a delay) and flips
  ``breached`` once over;
* a ``--poll`` second poll (``REVENIUM_CB_POLL_INTERVAL_SECONDS``).

Each implementation runs in worker processes of its own (``--processes``,
sharing a cache directory; ``--redis URL`` is passed as
``REVENIUM_CB_LEDGER_URL``), so the two SDKs' patches never meet. A thread
stops at its first refusal. Printed per implementation: spend past the cap
when the first call was refused and in all, seconds from crossing the cap to
the first refusal, calls served, and whether ours met the target (the calls
in flight: threads x processes x $0.01).

    python benchmarks/bench_overshoot.py --impl both
    python benchmarks/bench_overshoot.py --impl ours --processes 4 --json
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

MODEL = "gpt-4o-mini"
PROMPT_TOKENS = 20_000
COMPLETION_TOKENS = 11_667
INPUT_PRICE = 0.15  # dollars per million tokens
OUTPUT_PRICE = 0.60
CALL_COST = (PROMPT_TOKENS * INPUT_PRICE + COMPLETION_TOKENS * OUTPUT_PRICE) / 1e6
#: about one token per word for any tokenizer, four characters per token for a rough count
PROMPT = "tok " * PROMPT_TOKENS
TEAM_ID = "team-overshoot"
API_KEY = "hak_overshoot"


# --------------------------------------------------------------------------- the fake provider


class FakeProvider:
    """A local OpenAI chat-completions endpoint that bills every call the same and logs when.

    Other POSTs (the reference's metering) get an empty 200, so nothing it
    sends on the side slows or breaks its calls.
    """

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self._served: list[float] = []
        self._lock = threading.Lock()
        self._httpd: Optional[ThreadingHTTPServer] = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def served(self) -> list[float]:
        with self._lock:
            return list(self._served)

    def spend_until(self, moment: float) -> float:
        with self._lock:
            return bisect.bisect_right(self._served, moment) * CALL_COST

    def _record(self) -> None:
        with self._lock:
            self._served.append(time.time())

    def __enter__(self) -> FakeProvider:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


def _completion() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-overshoot",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "length",
                    "message": {"role": "assistant", "content": "..."},
                }
            ],
            "usage": {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": COMPLETION_TOKENS,
                "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
            },
        }
    ).encode()


def _handler(provider: FakeProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else each keep-alive reply waits ~40 ms

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            billed = self.path.endswith("/chat/completions")
            if billed and provider.latency:
                time.sleep(provider.latency)
            answer = _completion() if billed else b"{}"
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            self.wfile.flush()
            if billed:
                provider._record()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# --------------------------------------------------------------------------- the control plane


def _cap_rule(cap: float, spend: float) -> dict[str, Any]:
    from enforcement.testing import make_rule

    return make_rule(
        1,
        "runaway-cap",
        threshold=cap,
        current_value=round(spend, 6),
        breached=spend >= cap,
        deny_message="Pooled cap reached.",
    )


class Recompiler:
    """The control plane's delayed view: every ``period`` s, ``currentValue`` is what was served."""

    def __init__(self, server: Any, provider: FakeProvider, cap: float, period: float) -> None:
        self._server, self._provider, self._cap, self._period = server, provider, cap, period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recompiler", daemon=True)

    def publish(self) -> None:
        counted_at = time.time()
        spend = self._provider.spend_until(counted_at)
        self._server.set_rules([_cap_rule(self._cap, spend)], compiled_at=round(counted_at, 3))

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            self.publish()

    def __enter__(self) -> Recompiler:
        self.publish()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)


# --------------------------------------------------------------------------- a worker process


def _load(impl: str) -> tuple[type[BaseException], Any]:
    """Hook the openai SDK the implementation's own way; return its refusal type."""
    if impl == "reference":
        import logging

        logging.getLogger("revenium_middleware").setLevel(logging.CRITICAL)
        import revenium_middleware.openai  # noqa: F401  (patches the openai SDK on import)
        from revenium_middleware._core.exceptions import BudgetExceededError as RefusedRef

        return RefusedRef, None
    import enforcement

    enforcement.instrument("openai")
    return enforcement.BudgetExceededError, enforcement


def _wait_for_rules(impl: str, timeout: float = 15.0) -> None:
    """Start the loop from loaded rules, as a restarted process does from its disk snapshot.

    The cache directory starts empty here, so without this the first calls
    of each worker would run before the first fetch, unjudged by either
    implementation: that is start-up, not the runaway loop being measured.
    """
    deadline = time.time() + timeout
    if impl == "reference":
        from revenium_middleware._core import enforcement as reference

        reference._ensure_poller_running()
        while not reference._cache_initialized and time.time() < deadline:
            time.sleep(0.02)
        return
    import enforcement

    engine = enforcement.default_engine()
    engine.check()
    while not engine.status().loaded and time.time() < deadline:
        time.sleep(0.02)


def worker_main(args: argparse.Namespace) -> None:
    refused_type, _ = _load(args.impl)
    import openai

    _wait_for_rules(args.impl)

    client = openai.OpenAI(base_url=args.provider_url + "/v1", api_key="sk-test", max_retries=0)
    deadline = time.time() + args.duration
    lock = threading.Lock()
    report: dict[str, Any] = {"first_block": None, "source": None, "ok": 0, "blocked": 0}
    report["errors"] = 0

    def loop() -> None:
        while time.time() < deadline:
            try:
                client.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": PROMPT}],
                    max_tokens=COMPLETION_TOKENS,
                )
            except refused_type as refusal:
                with lock:
                    report["blocked"] += 1
                    if report["first_block"] is None:
                        report["first_block"] = time.time()
                        report["source"] = getattr(refusal, "source", None)
                return
            except Exception:
                with lock:
                    report["errors"] += 1
                time.sleep(0.01)
            else:
                with lock:
                    report["ok"] += 1

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(report), flush=True)


# --------------------------------------------------------------------------- the orchestrator


@dataclass
class Outcome:
    impl: str
    processes: int
    threads: int
    cap: float
    calls: int
    crossed_at: Optional[float]
    first_block: Optional[float]
    past_cap_at_block: Optional[float]
    past_cap_total: float
    seconds_to_block: Optional[float]
    source: Optional[str]
    target: float
    met: Optional[bool]
    errors: int


def _worker_env(args: argparse.Namespace, rules_env: dict[str, str], cache: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("REVENIUM_")}
    env.update(rules_env)
    env.update(
        REVENIUM_CB_POLL_INTERVAL_SECONDS=str(args.poll),
        REVENIUM_CACHE_DIR=cache,
        REVENIUM_CB_PRICES_FILE=os.path.join(cache, "prices.json"),
        PYTHONPATH=os.pathsep.join(filter(None, [_repo_root(), env.get("PYTHONPATH")])),
    )
    if args.redis:
        env["REVENIUM_CB_LEDGER_URL"] = args.redis
    return env


def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _spawn(args: argparse.Namespace, impl: str, provider_url: str, env: dict[str, str]) -> Any:
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--impl", impl]
    command += ["--threads", str(args.threads), "--duration", str(args.duration)]
    command += ["--provider-url", provider_url]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _collect(processes: list[Any], timeout: float) -> list[dict[str, Any]]:
    reports = []
    for process in processes:
        out, err = process.communicate(timeout=timeout)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if process.returncode != 0 or not lines:
            raise RuntimeError(f"worker failed ({process.returncode}): {err[-2000:]}")
        reports.append(json.loads(lines[-1]))
    return reports


def run(args: argparse.Namespace, impl: str) -> Outcome:
    from enforcement.testing import RulesServer

    with tempfile.TemporaryDirectory(prefix="overshoot-") as cache:
        with open(os.path.join(cache, "prices.json"), "w", encoding="utf-8") as file:
            json.dump({MODEL: {"input": INPUT_PRICE, "output": OUTPUT_PRICE}}, file)
        with FakeProvider(args.latency) as provider, RulesServer(TEAM_ID, API_KEY) as server:
            rules_env = server.env(REVENIUM_METERING_BASE_URL=provider.base_url)
            env = _worker_env(args, rules_env, cache)
            with Recompiler(server, provider, args.cap, args.recompile):
                workers = [
                    _spawn(args, impl, provider.base_url, env) for _ in range(args.processes)
                ]
                reports = _collect(workers, timeout=args.duration + 120)
            return _outcome(args, impl, provider.served(), reports)


def _outcome(
    args: argparse.Namespace, impl: str, served: list[float], reports: list[dict[str, Any]]
) -> Outcome:
    cap_calls = int(round(args.cap / CALL_COST))
    crossed_at = served[cap_calls - 1] if len(served) >= cap_calls else None
    blocks = [(r["first_block"], r["source"]) for r in reports if r["first_block"] is not None]
    first_block, source = min(blocks) if blocks else (None, None)
    at_block = None
    if first_block is not None:
        at_block = bisect.bisect_right(served, first_block) * CALL_COST - args.cap
    target = args.threads * args.processes * CALL_COST
    total = len(served) * CALL_COST - args.cap
    return Outcome(
        impl=impl,
        processes=args.processes,
        threads=args.threads,
        cap=args.cap,
        calls=len(served),
        crossed_at=crossed_at,
        first_block=first_block,
        past_cap_at_block=None if at_block is None else round(at_block, 4),
        past_cap_total=round(total, 4),
        seconds_to_block=(
            None
            if first_block is None or crossed_at is None
            else round(first_block - crossed_at, 2)
        ),
        source=source,
        target=round(target, 4),
        met=None if first_block is None else total <= target + CALL_COST / 2,
        errors=sum(r["errors"] for r in reports),
    )


def _money(value: Optional[float]) -> str:
    return "-" if value is None else f"${value:,.2f}"


def print_outcome(outcome: Outcome) -> None:
    name = "ours" if outcome.impl == "ours" else "reference SDK"
    scope = f"{outcome.processes} process(es) x {outcome.threads} threads"
    print(f"{name} ({scope}, cap {_money(outcome.cap)}):")
    if outcome.first_block is None:
        print(
            f"  never refused a call; {outcome.calls} calls, {_money(outcome.past_cap_total)} past"
        )
        return
    print(f"  spent past the cap at the first refusal: {_money(outcome.past_cap_at_block)}")
    print(f"  spent past the cap in all:               {_money(outcome.past_cap_total)}")
    print(f"  seconds from crossing to first refusal:  {outcome.seconds_to_block}")
    print(f"  calls served: {outcome.calls}; refusal source: {outcome.source or 'n/a'}")
    if outcome.errors:
        print(f"  calls that failed otherwise: {outcome.errors}")
    verdict = "yes" if outcome.met else "no"
    print(f"  within the calls in flight (<= {_money(outcome.target)}): {verdict}")


def parse(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", choices=["ours", "reference", "both"], default="both")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=16, help="per process")
    parser.add_argument("--redis", default=None, help="REVENIUM_CB_LEDGER_URL for the workers")
    parser.add_argument(
        "--duration", type=float, default=30.0, help="seconds a worker runs at most"
    )
    parser.add_argument("--cap", type=float, default=1.00)
    parser.add_argument("--poll", type=int, default=5)
    parser.add_argument("--recompile", type=float, default=6.0)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per provider call")
    parser.add_argument("--json", action="store_true", help="one JSON object per implementation")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--provider-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.redis and args.processes == 1:
        args.processes = 2
    return args


def main(argv: Optional[list[str]] = None) -> None:
    args = parse(argv)
    if args.worker:
        worker_main(args)
        return
    for impl in ["reference", "ours"] if args.impl == "both" else [args.impl]:
        outcome = run(args, impl)
        if args.json:
            print(json.dumps(asdict(outcome)), flush=True)
        else:
            print_outcome(outcome)


if __name__ == "__main__":
    main()
