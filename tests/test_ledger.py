"""The spend ledger: the fit rule, the process ledger, and the host ledger across real processes.

Processes are real (multiprocessing's spawn context) and share a real
directory; the host ledger's file is read back as JSON. Nothing is timed:
where a lease must expire, the test waits for it with a generous deadline.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import signal
import stat
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable, Union

import pytest

from enforcement._host_ledger import HostLedger
from enforcement._leased_ledger import LeasedLedger
from enforcement._ledger import (
    MAX_SLOTS,
    SLOT_SECONDS,
    Bucket,
    Hold,
    ProcessLedger,
    Slots,
    bucket_key,
    ceiling_of,
    fits,
)

SPAWN = multiprocessing.get_context("spawn")
DEADLINE = 60.0
T0 = 1_800_000_000.0  # a fixed "now" for tests of one process


def bucket(
    limit: float = 1.0,
    *,
    inclusive: bool = False,
    since: float = 0.0,
    expires_at: float = T0 + 86_400,
    key: str = "",
) -> Bucket:
    return Bucket(key or bucket_key("team", 1, expires_at), limit, inclusive, since, expires_at)


def eventually(predicate: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def held(outcome: Union[Hold, Bucket]) -> Hold:
    assert isinstance(outcome, Hold), f"refused on {outcome}"
    return outcome


# --------------------------------------------------------------------------- the fit rule


@pytest.mark.parametrize(
    ("total", "inclusive", "expected"),
    [
        (0.99, True, True),
        (1.0, True, False),  # >= : reaching the threshold breaches
        (1.0, False, True),  # >  : reaching it does not
        (1.01, False, False),
        (sum([0.01] * 100), False, True),  # 1.0000000000000007 is 1.0, not a breach
        (sum([0.01] * 100), True, False),
        (0.0, True, False),  # no headroom left: even nothing breaches under >=
    ],
)
def test_fit_rule_for_both_operators_and_the_edge(
    total: float, inclusive: bool, expected: bool
) -> None:
    limit = 0.0 if total == 0.0 else 1.0
    assert fits(total, limit, inclusive) is expected


def test_a_negative_headroom_admits_nothing() -> None:
    assert not fits(0.0, -5.0, False)
    assert not fits(0.0, -5.0, True)


@pytest.mark.parametrize("limit", [0.0, 1.0, 0.3, 1e-12, 1e9, -5.0, math.inf])
@pytest.mark.parametrize("inclusive", [True, False])
def test_the_ceiling_worked_out_once_is_the_fit_rule(limit: float, inclusive: bool) -> None:
    slack = 1e-9 * max(1.0, abs(limit))
    edges = [limit, limit - slack, limit + slack] if math.isfinite(limit) else [1e308]
    totals = [0.0, -1.0, 2 * abs(limit) + 1, math.inf]
    for edge in edges:
        below, above = math.nextafter(edge, -math.inf), math.nextafter(edge, math.inf)
        totals += [edge, below, above, math.nextafter(below, -math.inf)]
    ceiling = ceiling_of(limit, inclusive)
    for total in totals:
        assert fits(total, limit, inclusive) is (total <= ceiling), total


# --------------------------------------------------------------------------- slots


def test_slots_merge_the_oldest_beyond_the_cap_and_keep_the_total() -> None:
    slots = Slots()
    for i in range(MAX_SLOTS * 3):
        slots.add(i + 1, 1.0)
    assert len(slots.entries) == MAX_SLOTS
    assert slots.total == MAX_SLOTS * 3
    slots.drop_before(1e12)
    assert slots.entries == [] and slots.total == 0.0


def test_put_back_restores_what_take_took_in_order() -> None:
    slots = Slots()
    slots.add(5, 1.0)
    taken = slots.take()
    slots.add(7, 2.0)
    slots.put_back(taken)
    assert slots.entries == [[5, 1.0], [7, 2.0]] and slots.total == 3.0


# --------------------------------------------------------------------------- process


def test_commit_replaces_the_hold_by_the_actual_spend() -> None:
    ledger, b = ProcessLedger(), bucket(1.0)
    hold = held(ledger.reserve([b], [0.5], T0))
    assert ledger.spent(b, T0) == (0.0, 0.5)
    ledger.commit(hold, [0.2], T0)
    assert ledger.spent(b, T0) == (0.2, 0.0)
    ledger.release(hold)  # settled already: nothing happens
    assert ledger.spent(b, T0) == (0.2, 0.0)


def test_release_gives_the_hold_back() -> None:
    ledger, b = ProcessLedger(), bucket(1.0)
    hold = held(ledger.reserve([b], [0.9], T0))
    assert ledger.reserve([b], [0.2], T0) == b
    ledger.release(hold)
    held(ledger.reserve([b], [0.2], T0))


def test_held_is_exactly_zero_once_the_last_hold_settles() -> None:
    ledger, b = ProcessLedger(), bucket(10.0)
    first, second = held(ledger.reserve([b], [0.1], T0)), held(ledger.reserve([b], [0.2], T0))
    ledger.release(first)
    ledger.commit(second, [0.2], T0)
    ledger.commit(second, [5.0], T0)  # settled already: nothing happens
    assert ledger.spent(b, T0) == (0.2, 0.0)  # not 0.1 + 0.2 - 0.1 - 0.2 == 2.8e-17
    assert ledger.describe()["held"] == 0.0


def test_a_bucket_with_new_figures_counts_from_the_next_reserve() -> None:
    ledger, roomy = ProcessLedger(), bucket(1.0)
    ledger.commit(held(ledger.reserve([roomy], [0.5], T0)), [0.5], T0)
    tight = roomy._replace(limit=0.6)  # same key, a newer server figure
    assert ledger.reserve([tight], [0.2], T0) == tight
    held(ledger.reserve([roomy], [0.2], T0))


def test_a_nan_amount_is_refused_like_the_fit_rule_refuses_it() -> None:
    ledger, b = ProcessLedger(), bucket(1.0)
    assert not fits(math.nan, 1.0, False)
    assert ledger.reserve([b], [math.nan], T0) == b
    held(ledger.reserve([b], [0.5], T0))


def test_spend_lands_in_the_slot_of_its_commit_and_a_late_one_errs_towards_counting() -> None:
    ledger, b = ProcessLedger(), bucket(10.0, since=T0 - 100)
    for moment in (T0, T0 + SLOT_SECONDS / 2, T0 + 1.0, T0 + 2.0):
        ledger.commit(held(ledger.reserve([b], [0.25], moment)), [0.25], moment)
    late = T0 + 0.5  # a commit whose clock reads earlier than the last one
    ledger.commit(held(ledger.reserve([b], [0.25], late)), [0.25], late)
    assert ledger.spent(b._replace(since=T0 + 0.9), T0 + 3) == (0.75, 0.0)
    assert ledger.spent(b._replace(since=T0 + 1.5), T0 + 3) == (0.5, 0.0)


def test_a_refusal_names_the_first_bucket_short_and_holds_nothing() -> None:
    ledger = ProcessLedger()
    roomy, tight = bucket(10.0, key="roomy"), bucket(1.0, key="tight")
    assert ledger.reserve([roomy, tight], [2.0, 2.0], T0) == tight
    assert ledger.spent(roomy, T0) == (0.0, 0.0)


def test_holds_fill_to_exactly_the_limit_under_each_operator() -> None:
    for inclusive, admitted in ((False, 100), (True, 99)):
        ledger, b = ProcessLedger(), bucket(1.0, inclusive=inclusive)
        count = 0
        while isinstance(ledger.reserve([b], [0.01], T0), Hold):
            count += 1
        assert count == admitted


def test_spend_before_since_stops_counting() -> None:
    ledger = ProcessLedger()
    old = bucket(1.0, since=T0 - 100)
    ledger.commit(held(ledger.reserve([old], [0.6], T0)), [0.6], T0)
    assert ledger.reserve([old], [0.6], T0 + 1) == old
    newer = old._replace(since=T0 + 5 * SLOT_SECONDS, limit=0.7)  # the server counts the 0.6 now
    assert ledger.spent(newer, T0 + 10) == (0.0, 0.0)
    held(ledger.reserve([newer], [0.6], T0 + 10))


def test_expired_buckets_are_forgotten() -> None:
    ledger = ProcessLedger()
    b = bucket(1.0, expires_at=T0 + 10)
    ledger.commit(held(ledger.reserve([b], [0.5], T0)), [0.5], T0)
    other = bucket(1.0, key="other")
    ledger.reserve([other], [0.1], T0 + 20)  # a later call sweeps
    assert ledger.describe()["buckets"] == 1
    assert ledger.spent(b, T0 + 20) == (0.0, 0.0)


def test_hostile_keys_cannot_grow_the_ledger_past_its_capacity() -> None:
    ledger = ProcessLedger(capacity=50)
    for i in range(1000):
        ledger.reserve([bucket(1.0, key=f"k{i}", expires_at=T0 + 100 + i)], [0.01], T0)
    assert ledger.describe()["buckets"] == 50


def test_a_forked_child_starts_with_an_empty_process_ledger() -> None:
    if not hasattr(os, "fork"):
        pytest.skip("needs fork")
    ledger, b = ProcessLedger(), bucket(1.0)
    held(ledger.reserve([b], [0.9], T0))
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child
        ok = isinstance(ledger.reserve([b], [0.9], T0), Hold)
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    assert ledger.reserve([b], [0.9], T0) == b  # the parent's hold stays the parent's


# --------------------------------------------------------------------------- host, one process


@pytest.fixture
def directory(tmp_path: Path) -> str:
    return str(tmp_path / "cache")


@contextlib.contextmanager
def host_ledgers(directory: str, count: int, **options: Any) -> Iterator[list[HostLedger]]:
    ledgers = [HostLedger(directory, "team-1", **options) for _ in range(count)]
    try:
        yield ledgers
    finally:
        for ledger in ledgers:
            ledger.close()


def live_bucket(limit: float, **fields: Any) -> Bucket:
    now = time.time()
    return bucket(limit, since=now - 60, expires_at=now + 3600, **fields)


def test_host_ledgers_share_spend_through_the_file(directory: str) -> None:
    with host_ledgers(directory, 2, idle_seconds=0.0) as (first, second):  # flush returns leases
        b = live_bucket(1.0)
        first.commit(held(first.reserve([b], [0.5], time.time())), [0.5], time.time())
        assert first.flush()
        assert second.reserve([b], [0.6], time.time()) == b
        held(second.reserve([b], [0.4], time.time()))
    path = Path(directory) / "revenium_enforcement_ledger.team-1.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    entry = json.loads(path.read_text())["buckets"][b.key]
    assert sum(entry["spend"].values()) == pytest.approx(0.5)
    assert entry["leases"] == {}  # closing handed every allowance back


def test_leases_never_add_up_past_the_limit(directory: str) -> None:
    with host_ledgers(directory, 3) as ledgers:
        b = live_bucket(1.0)
        admitted = 0
        for _ in range(200):
            for ledger in ledgers:
                admitted += isinstance(ledger.reserve([b], [0.01], time.time()), Hold)
        assert admitted == 100


def test_a_new_payload_drops_the_spend_it_counts(directory: str) -> None:
    with host_ledgers(directory, 2) as (first, second):
        b = live_bucket(1.0)
        first.commit(held(first.reserve([b], [0.9], time.time())), [0.9], time.time())
        first.flush()
        newer = b._replace(since=time.time() + 1.0, limit=0.1)
        assert eventually(lambda: isinstance(second.reserve([newer], [0.05], time.time()), Hold))


@pytest.mark.parametrize(
    "content",
    [
        b"\x00garbage{",
        b'{"version": 1, "buckets": []}',
        b'{"version": 99}',
        json.dumps(
            {"version": 1, "buckets": {"k": {"spend": {"1": "x"}, "leases": {"h": [1e308]}}}}
        ).encode(),
        b'{"version": 1, "buckets": {"k": {"spend": {"\xc2\xb2": 1.0}, "since": NaN}}}',
    ],
)
def test_a_corrupt_or_hostile_file_starts_empty_and_says_why(
    directory: str, content: bytes
) -> None:
    os.makedirs(directory)
    path = Path(directory) / "revenium_enforcement_ledger.team-1.json"
    path.write_bytes(content)
    with host_ledgers(directory, 1) as (ledger,):
        held(ledger.reserve([live_bucket(1.0, key="k")], [0.5], time.time()))
        problem = ledger.describe()["file_problem"]
        assert problem is None or "started empty" in problem
    assert json.loads(path.read_text())["version"] == 1


def test_an_unwritable_directory_raises_only_the_documented_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    from enforcement._ledger import LedgerUnavailable

    with host_ledgers(str(blocker / "cache"), 1) as (ledger,):
        with pytest.raises(LedgerUnavailable):
            ledger.reserve([live_bucket(1.0)], [0.1], time.time())
        assert ledger.describe()["healthy"] is False


# --------------------------------------------------------------------------- real processes


def open_ledger(spec: Sequence[Any]) -> LeasedLedger:
    """A ledger from a picklable spec: ("host", directory) or ("redis", url)."""
    if spec[0] == "redis":
        from enforcement._redis_ledger import RedisLedger

        return RedisLedger(spec[1], **spec[2])
    return HostLedger(spec[1], "team-1", **spec[2])


def race(
    spec: Sequence[Any], b: Bucket, amount: float, commit: bool, start: Any, done: Any, out: Any
) -> None:
    """Reserve (and commit) until refused, report the count, and keep the holds until told."""
    ledger = open_ledger(spec)
    start.wait()
    admitted = 0
    while isinstance(hold := ledger.reserve([b], [amount], time.time()), Hold):
        admitted += 1
        if commit:
            ledger.commit(hold, [amount], time.time())
    out.put(admitted)
    done.wait()
    ledger.close()


def run_race(spec: Sequence[Any], b: Bucket, amount: float, workers: int, commit: bool) -> int:
    start, done, out = SPAWN.Event(), SPAWN.Event(), SPAWN.Queue()
    processes = [
        SPAWN.Process(target=race, args=(spec, b, amount, commit, start, done, out))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    start.set()
    try:
        return sum(out.get(timeout=DEADLINE) for _ in processes)
    finally:
        done.set()
        for process in processes:
            process.join(DEADLINE)
            if process.is_alive():
                process.kill()


def test_four_processes_racing_hold_at_most_the_limit(directory: str) -> None:
    b = live_bucket(1.0)
    assert run_race(("host", directory, {}), b, 0.01, workers=4, commit=False) == 100


def test_four_processes_racing_with_commits_spend_exactly_the_limit(directory: str) -> None:
    b = live_bucket(1.0, inclusive=True)
    assert run_race(("host", directory, {}), b, 0.25, workers=4, commit=True) == 3


def lease_and_wait(directory: str, b: Bucket, ready: Any) -> None:
    ledger = HostLedger(directory, "team-1", lease_seconds=1.0)
    held(ledger.reserve([b], [0.01], time.time()))
    ready.set()
    time.sleep(DEADLINE)


def test_a_killed_process_allowance_comes_back_after_its_lease(directory: str) -> None:
    b = live_bucket(1.0)
    ready = SPAWN.Event()
    child = SPAWN.Process(target=lease_and_wait, args=(directory, b, ready))
    child.start()
    try:
        assert ready.wait(DEADLINE)
        os.kill(child.pid or 0, signal.SIGKILL)
        child.join(DEADLINE)
        with host_ledgers(directory, 1) as (ledger,):
            assert ledger.reserve([b], [0.9], time.time()) == b  # the dead one's lease stands
            assert eventually(lambda: isinstance(ledger.reserve([b], [0.9], time.time()), Hold))
    finally:
        if child.is_alive():
            child.kill()
