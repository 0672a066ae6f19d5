"""A soak: a flapping control plane, steady traffic, forks and SIGKILLs, judged check by check.

    python benchmarks/soak.py --minutes N [--processes P] [--reference]

Not part of the test suite; it runs for ``N`` minutes and prints a report.

The scenario
------------
* One :class:`~enforcement.testing.RulesServer` on 127.0.0.1, in this process.
  It serves *generations*: every ``--flip`` seconds (default 3) the payload
  becomes generation ``g + 1``. A generation holds one ``BLOCK`` rule per
  model ``soak-m0``, ``soak-m1``, ``soak-m2`` (a ``MODEL IS`` filter), named
  ``cap-<model index>-g<g>`` so that every refusal says which generation it
  came from. Each generation toggles one model's breach, in turn: the breached
  sets run {}, {m0}, {m0,m1}, {m0,m1,m2}, {m1,m2}, {m2}, {} and round again (a
  rule breached for one model, then for two, then lifted, then breached for
  another...). A fourth model, ``soak-free``, is covered by no rule.
* Fault stretches, with healthy stretches between, cycling through every
  kind in :data:`FAULT_KINDS` (500; 429 with ``Retry-After`` 0, a past HTTP
  date, 30 and 10**9; a TCP reset; an HTML body; truncated JSON; 100,000-deep
  JSON; a 20 MiB body; ``{"error": ...}``; ``{"rules": null}``; a slow but
  healthy origin; a hang; a body trickling one byte every 2 s). During a
  stretch every request to the server gets the fault. The kinds whose effect
  lasts longest come last in the cycle.
* ``P`` worker processes (default 4) share one ``REVENIUM_CACHE_DIR`` (a
  temporary directory) and ``REVENIUM_CB_POLL_INTERVAL_SECONDS=1``. Each runs
  ``--threads`` threads (default 4) calling ``check_enforcement`` at a steady
  pace (``--pace`` checks per second per thread), cycling through the four
  models. Every ``--fork-every`` seconds (10) a worker ``os.fork()``s a child that
  checks from its one thread for ``--child-life`` seconds (8) and exits (the
  first fork comes moments after the worker starts, while its threads are
  making their first calls); a child that does not finish is killed by its
  own ``alarm()`` watchdog and counted as hung. Every ``--kill-every``
  seconds one worker other than worker 0 is SIGKILLed and replaced by a new
  process. Worker 0 lives the whole run; its RSS is reported.
* ``--reference`` runs the same scenario against the reference SDK,
  ``revenium_middleware._core.enforcement.check_enforcement``, configured by
  the same environment variables. Its state is module-global (one team per
  process), which is all this scenario needs.

When a verdict is wrong
-----------------------
All times are ``CLOCK_MONOTONIC``, which every process on the host shares.

* A *serve* is the server producing a healthy answer to a rules read: a 200
  with generation ``g``'s payload, or a 304 for it. Its time ``s`` is when
  the answer was built (never later than the client could have it). Fault
  answers are never serves: whatever a fault body says (``{"error": ...}``,
  ``{"rules": null}``, the 20 MiB body's ``{"rules": [], ...}``, a truncated
  copy) is not a generation, so during and after a fault stretch the last
  generation served must keep holding.
* A fault stretch of kind ``k`` runs from ``a`` to ``b``; its *allowed delay*
  ``D(k)`` (:data:`FAULT_KINDS`) is how long after ``b`` the contract lets a
  client still be behind because of it: the longest single backoff (4.4 s)
  plus one interval for statuses and resets; one interval (plus the 20 MiB
  transfer) for a failed read; the 10 s read timeout plus a backoff for a
  hang; the trickle's 20 s; ``Retry-After`` 30 honoured in full; the 300 s
  cooldown ceiling for ``Retry-After`` 10**9. Its *shadow* is ``[a, b + D(k)]``.
* The base tolerance is ``T = 2 x poll interval + --grace`` (default 2.5 s).
* A serve at ``s`` is *due* at ``s + T``, or, when a fault's shadow overlaps
  ``[s, due]``, at ``b + D(k) + T`` of that fault (applied in order, so a
  chain of overlapping shadows extends it again).
* A check that starts at ``t0`` and returns at ``t1`` (for model ``m``) may
  reflect any generation ``h`` with ``lo <= h <= hi``, where ``lo`` is the
  newest generation whose serve is due by ``t0`` and ``hi`` the newest served
  by ``t1``. Before anything is due, "no rules yet" is also allowed (fail
  open: a pass).
* The check is **wrong** when it passes but ``m`` is breached in every
  generation from ``lo`` to ``hi``, or when it raises ``BudgetExceededError``
  whose rule is not ``cap-<m>-g<h>`` for some such ``h`` in which ``m`` is
  breached (or whose message is not the rule's block message). Any other
  exception is counted apart, as "other exceptions", never as a verdict.
* The report also counts the checks whose ``lo`` a fault's allowed delay
  lowered, and the checks that would be wrong had no delay been allowed
  (every serve due at ``s + T``): how stale the processes really got, within
  what the contract permits. By default the stretches are sized to fit one
  whole cycle into the run (healthy stretches of ``(run - warm-up) / 15 -
  fault`` seconds, 2.5 to 8), so a two-minute run spends most of its time
  inside some fault's allowance; a longer run with ``--healthy 10`` judges
  more of its checks at ``T``.

Requests per fault kind are the requests the server received while the
stretch ran, per second, for the whole host (every process), against the
rate during healthy stretches.

Every process imports one copy of ``enforcement/`` taken when the run starts
(``--source DIR`` takes it from ``DIR/enforcement`` instead, e.g. a ``git
archive`` of another commit), so edits made to the checkout during a run do
not mix versions; the report's first lines name the code. A forked child that
gets stuck leaves its Python stack (``faulthandler``) and the report prints
where. ``--keep`` keeps the work directory: per-process record files, worker
logs, and ``timeline.json`` (serves, stretches, request times).
"""

from __future__ import annotations

import argparse
import bisect
import collections
import email.utils
import faulthandler
import hashlib
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

MODELS = ("soak-m0", "soak-m1", "soak-m2", "soak-free")
RULED = 3  # models 0..2 have rules; soak-free has none
# Breached-model bitmask per generation, g % 6: each generation toggles one model.
BREACHED = (0b000, 0b001, 0b011, 0b111, 0b110, 0b100)
POLL_INTERVAL = 1.0
FAR_END = "2099-12-31T23:59:59.999999999Z"
NAME_RE = re.compile(r"^cap-(\d)-g(\d+)$")
BLOCK_PREFIX = "Request blocked by Revenium enforcement rule: "

# A record: t0 ns, duration ns, model, outcome, generation code, flags.
REC = struct.Struct("<qqBBiB")
PASS, BLOCK, OTHER, BAD_BLOCK, START, END = 0, 1, 2, 3, 8, 9
FLAG_CHILD, FLAG_FIRST = 1, 2

# kind -> allowed delay D(k) in seconds after the stretch ends (see the docstring).
_RETRIED = 4.4 + POLL_INTERVAL
FAULT_KINDS: dict[str, float] = {
    "500": _RETRIED,
    "429 Retry-After 0": _RETRIED,
    "429 Retry-After past date": _RETRIED,
    "reset": _RETRIED,
    "garbage (HTML)": POLL_INTERVAL,
    "truncated JSON": POLL_INTERVAL,
    "100k-deep JSON": POLL_INTERVAL,
    "20 MiB body": POLL_INTERVAL + 1.0,
    '{"error": ...}': POLL_INTERVAL,
    '{"rules": null}': POLL_INTERVAL,
    "delay 2.5 s": 2.5 + POLL_INTERVAL,
    "hang": 10.0 + 4.4 + POLL_INTERVAL,
    "trickle 1 B / 2 s": 20.0 + POLL_INTERVAL,
    "429 Retry-After 30": 30.0 + POLL_INTERVAL,
    "429 Retry-After 10**9": 300.0 + POLL_INTERVAL,
}
TRICKLE_BODY = b"<trickle/>"  # ten bytes, one every 2 s: 20 s, then not JSON


def breached(generation: int, model: int) -> bool:
    return model < RULED and bool(BREACHED[generation % 6] >> model & 1)


def payload_for(generation: int) -> dict[str, Any]:
    from enforcement.testing import make_filter, make_rule

    rules = [
        make_rule(
            index + 1,
            f"cap-{index}-g{generation}",
            breached=breached(generation, index),
            threshold=100.0,
            current_value=120.0 if breached(generation, index) else 10.0,
            filters=[make_filter("MODEL", "IS", MODELS[index])],
            window_end=FAR_END,
        )
        for index in range(RULED)
    ]
    return {"rules": rules, "compiledAt": round(time.time(), 3)}


# --------------------------------------------------------------------------- worker side


class Recorder:
    """Per-thread record queues, flushed to one append-only file by a thread (or inline)."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self.queues: list[collections.deque[bytes]] = []
        self.exceptions: collections.Counter[str] = collections.Counter()
        self.examples: list[str] = []
        self.extra: dict[str, Any] = {}
        self.side_path = path[: -len(".bin")] + ".json"

    def queue(self) -> collections.deque[bytes]:
        q: collections.deque[bytes] = collections.deque()
        self.queues.append(q)
        return q

    def mark(self, outcome: int, flags: int) -> None:
        os.write(self.fd, REC.pack(time.monotonic_ns(), 0, 0, outcome, -1, flags))

    def flush(self) -> None:
        for q in self.queues:
            n = len(q)
            if n:
                os.write(self.fd, b"".join(q.popleft() for _ in range(n)))
        side = {
            "exceptions": dict(self.exceptions),
            "examples": self.examples,
            **self.extra,
        }
        tmp = f"{self.side_path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            json.dump(side, fh)
        os.replace(tmp, self.side_path)


def load_check(reference: bool) -> tuple[Callable[..., None], type[BaseException]]:
    if reference:
        import logging
        import warnings

        warnings.simplefilter("ignore")
        logging.getLogger("revenium_middleware").setLevel(logging.WARNING)
        from revenium_middleware._core import enforcement as ref
        from revenium_middleware._core.exceptions import BudgetExceededError as RefError

        return ref.check_enforcement, RefError
    import enforcement

    return enforcement.check_enforcement, enforcement.BudgetExceededError


def check_loop(
    check: Callable[..., None],
    error_type: type[BaseException],
    out: collections.deque[bytes],
    recorder: Recorder,
    stop: Callable[[], bool],
    pace: float,
    flags: int,
    start_model: int,
    inline_flush: Optional[Callable[[], None]] = None,
) -> None:
    """Check at ``pace`` per second (in batches of 10) until ``stop()``; record every verdict."""
    pack = REC.pack
    now = time.monotonic_ns
    metadata = {"organizationName": "acme"}
    model = start_model
    batch = 10
    pause = batch / pace
    first = FLAG_FIRST
    while not stop():
        began = time.monotonic()
        for _ in range(batch):
            name = MODELS[model]
            t0 = now()
            try:
                check(metadata, model=name, provider="openai")
                outcome, code = PASS, -1
            except error_type as err:
                t1 = now()
                match = NAME_RE.match(str(getattr(err, "rule_name", "") or ""))
                if match and str(err) == BLOCK_PREFIX + match.group(0):
                    outcome, code = BLOCK, int(match.group(2)) * 8 + int(match.group(1))
                else:
                    outcome, code = BAD_BLOCK, -1
                    if len(recorder.examples) < 5:
                        recorder.examples.append(f"unexpected block: {err!r}")
                out.append(pack(t0, t1 - t0, model, outcome, code, flags | first))
                first = 0
                model = (model + 1) % len(MODELS)
                continue
            except BaseException as err:  # anything else is a finding
                if isinstance(err, (KeyboardInterrupt, SystemExit)):
                    raise
                outcome, code = OTHER, -1
                recorder.exceptions[type(err).__name__] += 1
                if len(recorder.examples) < 5:
                    recorder.examples.append("".join(traceback.format_exception(err))[-2000:])
            t1 = now()
            out.append(pack(t0, t1 - t0, model, outcome, code, flags | first))
            first = 0
            model = (model + 1) % len(MODELS)
        if inline_flush is not None:
            inline_flush()
        rest = pause - (time.monotonic() - began)
        if rest > 0:
            time.sleep(rest)


def child_main(
    args: argparse.Namespace, check: Callable[..., None], error_type: type[BaseException]
) -> None:
    """In a forked child: check from this one thread for ``child_life`` s, then exit."""
    try:
        signal.alarm(int(args.child_life + 10))  # a deadlocked child dies of SIGALRM
        name = os.path.join(args.records, f"c-{os.getppid()}-{os.getpid()}")
        # A stuck child leaves its stack behind, most recent call first.
        stack = open(f"{name}.stack", "w")  # noqa: SIM115 - open until os._exit
        faulthandler.dump_traceback_later(args.child_life + 5, file=stack)
        recorder = Recorder(f"{name}.bin")
        recorder.extra = {"kind": "child", "pid": os.getpid()}
        recorder.mark(START, FLAG_CHILD)
        out = recorder.queue()
        end = min(time.monotonic() + args.child_life, args.deadline)
        last = [time.monotonic()]

        def inline_flush() -> None:
            if time.monotonic() - last[0] > 0.25:
                last[0] = time.monotonic()
                recorder.flush()

        check_loop(
            check,
            error_type,
            out,
            recorder,
            lambda: time.monotonic() >= end,
            args.pace,
            FLAG_CHILD,
            random.randrange(len(MODELS)),
            inline_flush,
        )
        recorder.flush()
        recorder.mark(END, FLAG_CHILD)
        faulthandler.cancel_dump_traceback_later()
        stack.close()
        os.unlink(stack.name)
    finally:
        os._exit(0)


def worker_main(args: argparse.Namespace) -> None:
    check, error_type = load_check(args.reference)
    recorder = Recorder(os.path.join(args.records, f"w{args.idx}-{os.getpid()}.bin"))
    children: collections.Counter[str] = collections.Counter()
    recorder.extra = {"kind": "worker", "idx": args.idx, "pid": os.getpid(), "children": children}
    recorder.mark(START, 0)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    deadline = args.deadline

    def stop() -> bool:
        return stopping.is_set() or time.monotonic() >= deadline

    threads = [
        threading.Thread(
            target=check_loop,
            args=(check, error_type, recorder.queue(), recorder, stop, args.pace, 0, i),
            daemon=True,
        )
        for i in range(args.threads)
    ]
    for thread in threads:
        thread.start()

    def forker() -> None:
        wait = random.uniform(0.0, 0.05)  # the first fork races the first calls
        while not stopping.wait(wait):
            if stop():
                return
            children["forked"] += 1
            pid = os.fork()
            if pid == 0:
                child_main(args, check, error_type)
            _, status = os.waitpid(pid, 0)
            if os.WIFSIGNALED(status):
                children[f"killed by {signal.Signals(os.WTERMSIG(status)).name}"] += 1
            else:
                children[f"exit {os.WEXITSTATUS(status)}"] += 1
            wait = max(0.0, args.fork_every * random.uniform(0.8, 1.2) - args.child_life)

    fork_thread = threading.Thread(target=forker, daemon=True)
    if args.fork_every > 0:
        fork_thread.start()
    while not stop():
        stopping.wait(0.25)
        recorder.flush()
    for thread in threads:
        thread.join(5)
    if fork_thread.is_alive():
        fork_thread.join(args.child_life + 12)
    recorder.flush()
    recorder.mark(END, 0)
    os._exit(0)


# --------------------------------------------------------------------------- the server


def make_server() -> Any:
    from enforcement.testing import RulesServer

    class SoakServer(RulesServer):
        """Records every healthy answer to a rules read (a serve) with its generation."""

        def __init__(self) -> None:
            super().__init__(team_id="soak-team", api_key="hak_soak")
            self.generation = 0
            self.serves: list[tuple[float, int]] = []

        def set_generation(self, generation: int) -> None:
            payload = payload_for(generation)
            with self._cond:
                self._payload = payload
                self._status = 200
                self.generation = generation

        def current_body(self) -> bytes:
            with self._cond:
                return json.dumps(self._payload).encode()

        def _answer(self, path: str, query: Any, headers: Any) -> Any:
            with self._cond:  # a reentrant lock: the payload and its generation agree
                generation = self.generation
                status, body, response_headers = super()._answer(path, query, headers)
                if status in (200, 304) and not query:
                    self.serves.append((time.monotonic(), generation))
            return status, body, response_headers

    return SoakServer()


def make_fault(kind: str, server: Any) -> Any:
    from enforcement.testing import Fault

    past = email.utils.formatdate(time.time() - 3600, usegmt=True)
    if kind == "500":
        return Fault.status(500)
    if kind.startswith("429"):
        value = {"0": "0", "past date": past, "30": "30", "10**9": str(10**9)}[
            kind.split("Retry-After ")[1]
        ]
        return Fault.status(429, headers={"Retry-After": value})
    if kind == "reset":
        return Fault.reset()
    if kind == "garbage (HTML)":
        return Fault.garbage()
    if kind == "truncated JSON":
        body = server.current_body()
        return Fault.body(body[: len(body) // 2])
    if kind == "100k-deep JSON":
        return Fault.body(b'{"rules":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    if kind == "20 MiB body":
        return Fault.huge(20 * 2**20)
    if kind == '{"error": ...}':
        return Fault.body(b'{"error": "upstream unavailable"}')
    if kind == '{"rules": null}':
        return Fault.body(b'{"rules": null}')
    if kind == "delay 2.5 s":
        return Fault.delay(2.5)
    if kind == "hang":
        return Fault.hang(15.0)
    if kind == "trickle 1 B / 2 s":
        return Fault.trickle(TRICKLE_BODY, every=2.0)
    raise ValueError(kind)


# --------------------------------------------------------------------------- the orchestrator


@dataclass
class Stretch:
    start: float
    end: float
    kind: str  # "healthy" or a FAULT_KINDS key


@dataclass
class Worker:
    idx: int
    proc: subprocess.Popen[bytes]
    started: float


@dataclass
class Run:
    t_start: float = 0.0
    stretches: list[Stretch] = field(default_factory=list)
    kills: int = 0
    unexpected_exits: list[str] = field(default_factory=list)
    rss_start_kib: Optional[int] = None
    rss_end_kib: Optional[int] = None
    rss_max_kib: int = 0
    long_lived_pid: int = 0


def snapshot_package(dest: str, origin: Optional[str]) -> str:
    """Copy ``enforcement/`` (from ``origin``, else this repo) to ``dest``; describe the code."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    package = os.path.join(origin or repo, "enforcement")
    shutil.copytree(
        package,
        os.path.join(dest, "enforcement"),
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(os.path.join(dest, "enforcement")):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(os.path.relpath(path, dest).encode() + b"\0")
            with open(path, "rb") as fh:
                digest.update(fh.read())

    def git(*argv: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", repo, *argv], capture_output=True, text=True, timeout=10
            )
            return done.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    if origin:
        return f"enforcement/ from {origin}; snapshot sha256 {digest.hexdigest()[:16]}"
    head = git("rev-parse", "--short", "HEAD") or "?"
    dirty = git("status", "--porcelain", "--", "enforcement")
    state = "with uncommitted changes in enforcement/" if dirty else "clean"
    return f"enforcement/ at {head}, {state}; snapshot sha256 {digest.hexdigest()[:16]}"


def rss_kib(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def plan(duration: float, warmup: float, healthy: Optional[float], fault: float) -> list[Stretch]:
    """Healthy and fault stretches (offsets from the start) cycling through every kind."""
    kinds = list(FAULT_KINDS)
    if healthy is None:
        slot = (duration - warmup) / len(kinds)
        healthy = max(2.5, min(8.0, slot - fault))
    out = [Stretch(0.0, warmup, "healthy")]
    t = warmup
    while t < duration:
        for kind in kinds:
            if t >= duration:
                break
            end = min(duration, t + fault)
            out.append(Stretch(t, end, kind))
            t = end
            if t >= duration:
                break
            end = min(duration, t + healthy)
            out.append(Stretch(t, end, "healthy"))
            t = end
    return out


def spawn(
    idx: int,
    args: argparse.Namespace,
    env: dict[str, str],
    records: str,
    deadline: float,
    logs: str,
) -> Worker:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--idx",
        str(idx),
        "--records",
        records,
        "--deadline",
        repr(deadline),
        "--threads",
        str(args.threads),
        "--pace",
        str(args.pace),
        "--fork-every",
        str(args.fork_every),
        "--child-life",
        str(args.child_life),
    ]
    if args.reference:
        cmd.append("--reference")
    with open(os.path.join(logs, f"w{idx}.log"), "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    return Worker(idx, proc, time.monotonic())


def orchestrate(args: argparse.Namespace) -> None:
    duration = args.minutes * 60.0
    work = tempfile.mkdtemp(prefix="enforcement-soak-")
    cache = os.path.join(work, "cache")
    records = os.path.join(work, "records")
    logs = os.path.join(work, "logs")
    for path in (cache, records, logs):
        os.makedirs(path, mode=0o700)
    # Every process of the run imports one frozen copy of the package, so an edit
    # to the working tree during the run cannot give workers different code.
    source = os.path.join(work, "src")
    code = snapshot_package(source, args.source)
    sys.path.insert(0, source)
    side = "reference SDK (revenium_middleware)" if args.reference else "ours (enforcement)"
    print(
        f"soak: {side}, {args.minutes:g} min, {args.processes} processes x "
        f"{args.threads} threads, work dir {work}",
        flush=True,
    )
    print(f"code: {code}", flush=True)

    server = make_server().start()
    generation = 1
    server.set_generation(generation)
    env = dict(os.environ)
    for name in list(env):
        if name.startswith("REVENIUM_"):
            del env[name]
    env.update(server.env())
    env.update(
        REVENIUM_CB_POLL_INTERVAL_SECONDS=str(int(POLL_INTERVAL)),
        REVENIUM_CACHE_DIR=cache,
        PYTHONWARNINGS="ignore",
        PYTHONPATH=os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")])),
    )
    run = Run()
    run.t_start = time.monotonic()
    deadline = run.t_start + duration
    schedule = plan(duration, args.warmup, args.healthy, args.fault)
    run.stretches = [Stretch(run.t_start + s.start, run.t_start + s.end, s.kind) for s in schedule]
    workers = {i: spawn(i, args, env, records, deadline, logs) for i in range(args.processes)}
    run.long_lived_pid = workers[0].proc.pid
    next_flip = run.t_start + args.flip
    next_kill = run.t_start + args.kill_every
    stretch_index = 0
    current_kind = "healthy"
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            while stretch_index < len(run.stretches) and run.stretches[stretch_index].start <= now:
                stretch = run.stretches[stretch_index]
                if stretch.kind != current_kind:
                    server.set_fault(
                        None if stretch.kind == "healthy" else make_fault(stretch.kind, server)
                    )
                    current_kind = stretch.kind
                stretch.start = now  # the moment it really began
                if stretch_index:
                    run.stretches[stretch_index - 1].end = now
                stretch_index += 1
            if now >= next_flip:
                generation += 1
                server.set_generation(generation)
                next_flip += args.flip
            if run.rss_start_kib is None and now - run.t_start >= args.warmup:
                run.rss_start_kib = rss_kib(run.long_lived_pid)
            rss = rss_kib(run.long_lived_pid)
            if rss:
                run.rss_max_kib = max(run.rss_max_kib, rss)
            if args.processes > 1 and args.kill_every > 0 and now >= next_kill:
                victim = workers[random.randrange(1, args.processes)]
                victim.proc.send_signal(signal.SIGKILL)
                victim.proc.wait()
                run.kills += 1
                workers[victim.idx] = spawn(victim.idx, args, env, records, deadline, logs)
                next_kill = now + args.kill_every * random.uniform(0.8, 1.2)
            for idx, worker in list(workers.items()):
                returned = worker.proc.poll()
                if returned is not None and time.monotonic() < deadline - 1:
                    run.unexpected_exits.append(
                        f"worker {idx} pid {worker.proc.pid} exit {returned}"
                    )
                    if idx == 0:
                        run.long_lived_pid = 0
                    workers[idx] = spawn(idx, args, env, records, deadline, logs)
            time.sleep(0.05)
        run.stretches[-1].end = time.monotonic()
        run.rss_end_kib = rss_kib(run.long_lived_pid) if run.long_lived_pid else None
        for worker in workers.values():
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        for worker in workers.values():
            try:
                worker.proc.wait(args.child_life + 15)
            except subprocess.TimeoutExpired:
                worker.proc.send_signal(signal.SIGKILL)
                worker.proc.wait()
                run.unexpected_exits.append(f"worker {worker.idx} did not stop on SIGTERM")
        time.sleep(1.0)  # orphaned children of killed workers finish their last flush
    finally:
        server.close()
    if args.keep:
        with open(os.path.join(work, "timeline.json"), "w") as fh:
            json.dump(
                {
                    "t_start": run.t_start,
                    "serves": server.serves,
                    "stretches": [[x.start, x.end, x.kind] for x in run.stretches],
                    "requests": [r.at for r in server.requests],
                },
                fh,
            )
    report(run, server, records, logs, args)
    if args.keep:
        print(f"work dir kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------- judging and the report


class Judge:
    """The rule of the module docstring, over the whole run's serves and stretches."""

    def __init__(self, serves: list[tuple[float, int]], stretches: list[Stretch], tolerance: float):
        faults = [s for s in stretches if s.kind != "healthy"]
        serves = sorted(serves)
        self.serve_times = [s for s, _ in serves]
        self.served_max: list[int] = []
        top = 0
        for _, g in serves:
            top = max(top, g)
            self.served_max.append(top)
        self.plain_due_times = [s + tolerance for s in self.serve_times]
        due: list[tuple[float, int]] = []
        for s, g in serves:
            when = s + tolerance
            for f in faults:  # sorted by start
                if f.start > when:
                    break
                shadow_end = f.end + FAULT_KINDS[f.kind]
                if shadow_end >= s and shadow_end + tolerance > when:
                    when = shadow_end + tolerance
            due.append((when, g))
        due.sort()
        self.due_times = [d for d, _ in due]
        self.due_max: list[int] = []
        top = 0
        for _, g in due:
            top = max(top, g)
            self.due_max.append(top)
        self._pass_ok: dict[tuple[int, int, int], bool] = {}

    def bounds(
        self, t0: float, t1: float, plain: bool = False
    ) -> tuple[Optional[int], Optional[int]]:
        """``(lo, hi)``; ``plain`` ignores the faults' allowed delays (every serve due at s + T)."""
        if plain:
            i = bisect.bisect_right(self.plain_due_times, t0) - 1
            lo = self.served_max[i] if i >= 0 else None
        else:
            i = bisect.bisect_right(self.due_times, t0) - 1
            lo = self.due_max[i] if i >= 0 else None
        j = bisect.bisect_right(self.serve_times, t1) - 1
        hi = self.served_max[j] if j >= 0 else None
        return lo, hi

    def widened(self, t0: float) -> bool:
        """Whether a fault's allowed delay lowered this check's oldest allowed generation."""
        i = bisect.bisect_right(self.plain_due_times, t0) - 1
        plain = self.served_max[i] if i >= 0 else None
        j = bisect.bisect_right(self.due_times, t0) - 1
        return plain != (self.due_max[j] if j >= 0 else None)

    def right(
        self, t0: float, t1: float, model: int, outcome: int, code: int, plain: bool = False
    ) -> bool:
        lo, hi = self.bounds(t0, t1, plain)
        if outcome == PASS:
            if lo is None:
                return True  # nothing due yet: "no rules yet" passes
            if hi is None or hi < lo:
                return False
            key = (lo, hi, model)
            ok = self._pass_ok.get(key)
            if ok is None:
                ok = any(not breached(h, model) for h in range(lo, min(hi, lo + 6) + 1))
                self._pass_ok[key] = ok
            return ok
        if outcome == BLOCK:
            h, rule_model = divmod(code, 8)
            if hi is None:
                return False
            return rule_model == model and breached(h, model) and (lo or 1) <= h <= hi
        return False  # BAD_BLOCK


def percentile(sorted_values: list[int], q: float) -> int:
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(q * (len(sorted_values) - 1) + 0.5))]


def kind_at(stretches: list[Stretch], t: float) -> str:
    for s in stretches:
        if s.start <= t < s.end:
            return s.kind
    return "after"


def fmt_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} us"
    return f"{ns:.0f} ns"


@dataclass
class FileWrongs:
    """The wrong verdicts of one process (one record file)."""

    name: str
    source: str
    started: Optional[float]
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    example: str = ""


def describe(judge: Judge, s0: float, s1: float, model: int, outcome: int, code: int) -> str:
    lo, hi = judge.bounds(s0, s1)
    verdict = (
        "pass"
        if outcome == PASS
        else f"refused by cap-{code % 8}-g{code // 8}"
        if outcome == BLOCK
        else "refused with an unexpected rule or message"
    )
    span = range(lo, (hi or lo) + 1) if lo is not None else range(0)
    in_all = [MODELS[m] for m in range(RULED) if span and all(breached(h, m) for h in span)]
    return (
        f"model {MODELS[model]}: {verdict}; allowed generations {lo}..{hi} "
        f"(breached in all of them: {', '.join(in_all) or 'none'})"
    )


def report(run: Run, server: Any, records: str, logs: str, args: argparse.Namespace) -> None:
    tolerance = 2 * POLL_INTERVAL + args.grace
    judge = Judge(server.serves, run.stretches, tolerance)
    t_base = run.t_start
    checks = wrong = other = bad_block = widened = plain_wrong = 0
    blocks = passes = 0
    latencies: list[int] = []
    warm_latencies: list[int] = []
    wrong_by_kind: collections.Counter[str] = collections.Counter()
    plain_by_kind: collections.Counter[str] = collections.Counter()
    wrong_files: list[FileWrongs] = []
    exceptions: collections.Counter[str] = collections.Counter()
    exception_examples: list[str] = []
    children_started = children_ended = 0
    worker_started: dict[str, float] = {}
    unfinished: list[tuple[str, float, int]] = []  # (file, started, checks)
    children_status: collections.Counter[str] = collections.Counter()
    processes = 0
    for name in sorted(os.listdir(records)):
        path = os.path.join(records, name)
        if name.endswith(".json"):
            try:
                with open(path) as fh:
                    side = json.load(fh)
            except (OSError, ValueError):
                continue
            exceptions.update(side.get("exceptions", {}))
            for example in side.get("examples", []):
                last = example.strip().splitlines()[-1] if example.strip() else example
                if len(exception_examples) < 4 and all(
                    last != seen.strip().splitlines()[-1] for seen in exception_examples
                ):
                    exception_examples.append(example)
            children_status.update(side.get("children", {}))
            continue
        if not name.endswith(".bin"):
            continue
        processes += 1
        is_child = name.startswith("c-")
        source = "forked child" if is_child else f"worker {name.split('-')[0][1:]}"
        with open(path, "rb") as fh:
            data = fh.read()
        usable = len(data) - len(data) % REC.size
        mine = FileWrongs(name, source, None)
        ended = False
        made = 0
        for t0, dur, model, outcome, code, flags in REC.iter_unpack(data[:usable]):
            if outcome == START:
                children_started += is_child
                mine.started = t0 / 1e9
                continue
            if outcome == END:
                children_ended += is_child
                ended = True
                continue
            checks += 1
            made += 1
            latencies.append(dur)
            if not flags & FLAG_FIRST:
                warm_latencies.append(dur)
            if outcome == OTHER:
                other += 1
                continue
            if outcome == BLOCK:
                blocks += 1
            elif outcome == PASS:
                passes += 1
            else:
                bad_block += 1
            s0, s1 = t0 / 1e9, (t0 + dur) / 1e9
            if judge.widened(s0):
                widened += 1
            if not judge.right(s0, s1, model, outcome, code, plain=True):
                plain_wrong += 1
                plain_by_kind[kind_at(run.stretches, s0)] += 1
            if judge.right(s0, s1, model, outcome, code):
                continue
            wrong += 1
            wrong_by_kind[kind_at(run.stretches, s0)] += 1
            if not mine.count:
                mine.first = s0
                mine.example = describe(judge, s0, s1, model, outcome, code)
            mine.count += 1
            mine.last = s0
        if mine.count:
            wrong_files.append(mine)
        if not is_child and mine.started is not None:
            worker_started[name.split("-")[1].split(".")[0]] = mine.started
        if is_child and not ended:
            unfinished.append((name, mine.started or 0.0, made))
    latencies.sort()
    warm_latencies.sort()
    elapsed = run.stretches[-1].end - run.t_start

    # Requests per stretch kind, for the whole host.
    seconds: dict[str, float] = collections.defaultdict(float)
    for stretch in run.stretches:
        seconds[stretch.kind] += max(0.0, stretch.end - stretch.start)
    starts = [stretch.start for stretch in run.stretches]
    counts: collections.Counter[str] = collections.Counter()
    for request in server.requests:
        i = bisect.bisect_right(starts, request.at) - 1
        if 0 <= i < len(run.stretches) and request.at < run.stretches[i].end:
            counts[run.stretches[i].kind] += 1
    healthy_rate = counts["healthy"] / seconds["healthy"] if seconds["healthy"] else 0.0

    print()
    print(f"== soak report: {'reference SDK' if args.reference else 'ours'}")
    print(
        f"run: {elapsed:.0f} s; {processes} processes recorded ({run.kills} workers SIGKILLed "
        f"and restarted); {len(server.serves)} serves of "
        f"{max((g for _, g in server.serves), default=0)} generations (a flip every "
        f"{args.flip:g} s); tolerance T = {tolerance:g} s"
    )
    print(f"checks made:            {checks:,} ({passes:,} passed, {blocks:,} refused)")
    print(
        f"wrong verdicts:         {wrong:,}"
        + (
            f" (of them refused by an unexpected rule or message: {bad_block:,})"
            if bad_block
            else ""
        )
    )
    print(f"other exceptions:       {other:,}" + (f"  {dict(exceptions)}" if exceptions else ""))
    print(
        f"  checks whose allowed range a fault's allowed delay widened: {widened:,}; "
        f"wrong had no fault delay been allowed (every serve due at s + T): {plain_wrong:,}"
    )
    if latencies:
        print(
            f"caller latency:         p50 {fmt_ns(percentile(latencies, 0.5))}, "
            f"p99 {fmt_ns(percentile(latencies, 0.99))}, "
            f"p99.9 {fmt_ns(percentile(latencies, 0.999))}, worst {fmt_ns(latencies[-1])}"
        )
        if warm_latencies:
            print(
                f"  without each thread's first call: p99.9 "
                f"{fmt_ns(percentile(warm_latencies, 0.999))}, worst {fmt_ns(warm_latencies[-1])}"
            )
    print(
        f"forked children:        {children_started} started, {children_ended} finished; "
        f"as reaped by their workers: {dict(children_status) if children_status else '-'}"
    )
    for name, started, made in unfinished:
        parent = name.split("-")[1]
        since = (
            f"{started - worker_started[parent]:.2f} s after its worker started"
            if parent in worker_started
            else f"at t={started - t_base:.2f}s"
        )
        print(
            f"  never finished: {name}, forked {since} (t={started - t_base:.2f}s); "
            f"{made:,} checks recorded (a child flushes every 0.25 s); its "
            f"{args.child_life + 10:g} s alarm() watchdog ended it"
        )
        try:
            with open(os.path.join(records, name[: -len(".bin")] + ".stack")) as fh:
                frames = [line.strip() for line in fh if line.strip().startswith("File")]
            for frame in frames[:4]:
                print(f"    stuck in: {frame}")
        except OSError:
            pass
    if run.unexpected_exits:
        print(f"unexpected worker exits: {run.unexpected_exits}")
    start_rss = f"{run.rss_start_kib / 1024:.1f} MiB" if run.rss_start_kib else "?"
    end_rss = f"{run.rss_end_kib / 1024:.1f} MiB" if run.rss_end_kib else "?"
    print(
        f"RSS of worker 0 (pid {run.long_lived_pid}, never killed): {start_rss} after warm-up, "
        f"{end_rss} at the end (max {run.rss_max_kib / 1024:.1f} MiB)"
    )
    print()
    print(
        f"requests the server received, whole host (healthy: {healthy_rate:.2f}/s), and the "
        f"wrong verdicts of checks that started in each stretch:"
    )
    print(
        f"  {'stretch':<27} {'seconds':>7} {'requests':>8} {'per s':>7} {'x healthy':>9} "
        f"{'wrong':>7} {'no-allow':>8}"
    )
    for kind in ["healthy", *FAULT_KINDS, "after"]:
        if not seconds[kind] and not wrong_by_kind[kind] and not plain_by_kind[kind]:
            continue
        rate = counts[kind] / seconds[kind] if seconds[kind] else 0.0
        ratio = f"{rate / healthy_rate:.2f}" if healthy_rate and seconds[kind] else "-"
        print(
            f"  {kind:<27} {seconds[kind]:7.1f} {counts[kind]:8d} {rate:7.2f} {ratio:>9} "
            f"{wrong_by_kind[kind]:7d} {plain_by_kind[kind]:8d}"
        )
    print(
        "  (no-allow: wrong had no fault delay been allowed; 'after': checks made after the "
        "run's end while workers stopped)"
    )
    if wrong_files:
        print()
        by_source: collections.Counter[str] = collections.Counter()
        procs: collections.Counter[str] = collections.Counter()
        for item in wrong_files:
            key = "forked children" if item.source == "forked child" else "workers"
            by_source[key] += item.count
            procs[key] += 1
        print(
            "wrong verdicts by source: "
            + ", ".join(f"{k}: {by_source[k]:,} in {procs[k]} processes" for k in sorted(by_source))
        )
        print(f"wrong verdicts by process (the 12 worst of {len(wrong_files)}; t from the start):")
        for item in sorted(wrong_files, key=lambda w: -w.count)[:12]:
            born = f", started t={item.started - t_base:.2f}s" if item.started else ""
            print(
                f"  {item.source} {item.name}{born}: {item.count:,} wrong from "
                f"t={item.first - t_base:.2f}s to {item.last - t_base:.2f}s; first: {item.example}"
            )
    if exception_examples:
        print()
        print("other exceptions, one of each kind (the tail of its traceback):")
        for example in exception_examples:
            print("  " + "\n  ".join(example.strip().splitlines()[-4:]))
    if server.errors:
        print(f"server handler errors: {len(server.errors)} (first: {server.errors[0]!r})")
    print(f"worker logs: {logs}")


# --------------------------------------------------------------------------- command line


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Soak: a flapping feed, steady checks, forks and kills.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--reference", action="store_true", help="run the reference SDK instead")
    parser.add_argument("--threads", type=int, default=4, help="checking threads per worker")
    parser.add_argument("--pace", type=float, default=1000.0, help="checks per second per thread")
    parser.add_argument("--flip", type=float, default=3.0, help="seconds between generations")
    parser.add_argument("--warmup", type=float, default=4.0, help="healthy seconds before faults")
    parser.add_argument(
        "--healthy",
        type=float,
        default=None,
        help="healthy seconds between fault stretches (default: fit one cycle)",
    )
    parser.add_argument("--fault", type=float, default=3.0, help="seconds per fault stretch")
    parser.add_argument(
        "--grace",
        type=float,
        default=0.5,
        help="seconds added to 2 poll intervals in the tolerance",
    )
    parser.add_argument("--fork-every", type=float, default=10.0)
    parser.add_argument("--child-life", type=float, default=8.0)
    parser.add_argument("--kill-every", type=float, default=15.0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--source",
        default=None,
        help="a directory holding the enforcement/ package to run (default: this checkout)",
    )
    # Worker-side options (internal).
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--idx", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--records", default="", help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
