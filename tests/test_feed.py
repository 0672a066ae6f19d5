"""The engine against a real rules server on 127.0.0.1, with every fault injected."""

from __future__ import annotations

import email.utils
import logging
import os
import ssl
import threading
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest
from _support import FAST, FUTURE, blocks, breached, wait_until

from enforcement import BudgetExceededError, Engine, RetryPolicy
from enforcement._feed import verified_context
from enforcement.testing import Fault, RulesServer, make_rule


@pytest.fixture
def feed_env(server: RulesServer, tmp_path: Path) -> dict[str, str]:
    return server.env(REVENIUM_CACHE_DIR=str(tmp_path / "cache"))


@pytest.fixture
def engine(feed_env: dict[str, str], make_engine: Callable[..., Engine]) -> Engine:
    return make_engine(environ=feed_env, retry_policy=FAST, timeout=1.0)


@pytest.fixture
def loaded(engine: Engine, server: RulesServer) -> Engine:
    """An engine whose last good verdict is a breached rule."""
    server.set_rules([breached()])
    assert engine.refresh()
    assert blocks(engine)
    server.reset_requests()
    return engine


def test_first_call_starts_the_poller_and_rules_arrive(engine: Engine, server: RulesServer) -> None:
    server.set_rules([breached()])
    assert not blocks(engine)  # nothing loaded yet: fail open, without waiting
    assert wait_until(lambda: engine.status().loaded)
    assert blocks(engine)
    request = server.requests[0]
    assert request.headers["x-api-key"] == "hak_test"
    assert request.query == {}
    assert request.path.endswith("/v2/api/ai/enforcement-rules/team-1")


def test_breach_flips_on_the_server(loaded: Engine, server: RulesServer) -> None:
    server.update_rule(1, breached=False)
    assert loaded.refresh()
    assert not blocks(loaded)


def test_team_id_is_percent_encoded(make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    with RulesServer(team_id="a/b?c", api_key="hak_test") as odd:
        engine = make_engine(environ=odd.env(REVENIUM_CACHE_DIR="off"), retry_policy=FAST)
        odd.set_rules([breached()])
        assert engine.refresh()
        assert odd.requests[0].path.endswith("/enforcement-rules/a%2Fb%3Fc")


def test_enforcement_base_url_path_is_kept(make_engine: Callable[..., Engine]) -> None:
    with RulesServer(base_path="/profitstream") as proxied:
        proxied.set_rules([breached()])
        env = proxied.env(REVENIUM_CACHE_DIR="off")
        env["REVENIUM_ENFORCEMENT_BASE_URL"] = proxied.base_url + "/"
        engine = make_engine(environ=env, retry_policy=FAST)
        assert engine.refresh()
        assert blocks(engine)


def test_204_is_a_successful_empty_rule_set(loaded: Engine, server: RulesServer) -> None:
    server.set_status(204)
    assert loaded.refresh()
    assert not blocks(loaded)
    assert loaded.status().loaded


def test_etag_304_keeps_the_generation(loaded: Engine, server: RulesServer) -> None:
    generation = loaded.status().generation
    assert loaded.refresh()
    assert server.requests[-1].headers.get("if-none-match")
    assert loaded.status().generation == generation
    assert blocks(loaded)


@pytest.mark.parametrize(
    "fault",
    [
        Fault.status(401),
        Fault.status(403),
        Fault.status(404),
        Fault.status(500),
        Fault.status(503),
        Fault.reset(),
        Fault.garbage(),
        Fault.body(b'"just a string"'),
        Fault.body(b"42"),
        Fault.body(b'{"rules": null}'),
        Fault.body(b'{"error": "bad gateway"}'),
        Fault.body(b'{"rules": {"not": "a list"}}'),
        Fault.huge(20 * 1024 * 1024),
        Fault.huge(20 * 1024 * 1024, chunked=True),
    ],
    ids=lambda fault: f"{fault.kind}-{fault.code}-{fault.content[:12]!r}-{fault.chunked}",
)
def test_a_failed_read_keeps_the_last_good_verdict(
    loaded: Engine, server: RulesServer, fault: Fault
) -> None:
    server.set_fault(fault)
    assert not loaded.refresh()
    assert blocks(loaded)
    status = loaded.status()
    assert status.last_error and status.consecutive_failures == 1
    server.set_fault(None)
    server.update_rule(1, breached=False)
    assert loaded.refresh()
    assert not blocks(loaded)


def test_transient_errors_are_retried_within_one_refresh(
    loaded: Engine, server: RulesServer
) -> None:
    server.update_rule(1, breached=False)
    server.fail_next(2, status=503)
    server.add_fault(Fault.reset())
    assert loaded.refresh()
    assert server.request_count == 4
    assert not blocks(loaded)


def test_non_retryable_status_is_not_retried(loaded: Engine, server: RulesServer) -> None:
    server.set_fault(Fault.status(401))
    assert not loaded.refresh()
    assert server.request_count == 1


def test_five_attempts_then_give_up(loaded: Engine, server: RulesServer) -> None:
    server.set_fault(Fault.status(500))
    assert not loaded.refresh()
    assert server.request_count == 5


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_within_budget_is_honoured(
    loaded: Engine, server: RulesServer, form: str
) -> None:
    value = "1" if form == "seconds" else email.utils.formatdate(time.time() + 1.2, usegmt=True)
    server.add_fault(Fault.status(429, headers={"Retry-After": value}))
    server.update_rule(1, breached=False)
    started = time.monotonic()
    assert loaded.refresh()
    assert time.monotonic() - started >= 0.2
    assert server.request_count == 2


def test_retry_after_past_the_budget_starts_a_cooldown(loaded: Engine, server: RulesServer) -> None:
    server.set_fault(Fault.status(429, headers={"Retry-After": "120"}))
    started = time.monotonic()
    assert not loaded.refresh()
    assert time.monotonic() - started < 1.0  # gave up at once instead of waiting
    assert server.request_count == 1
    assert blocks(loaded)
    # Callers finding the cache stale do not wake the poller into the cooldown.
    loaded.stop_polling()
    for _ in range(50):
        blocks(loaded)
    time.sleep(0.3)
    assert server.request_count == 1


def test_callers_never_wait_on_a_hanging_feed(
    make_engine: Callable[..., Engine], server: RulesServer, feed_env: dict[str, str]
) -> None:
    server.set_fault(Fault.hang(30))
    engine = make_engine(environ=feed_env, retry_policy=FAST, timeout=5.0)
    durations = []
    for _ in range(20):
        started = time.perf_counter()
        engine.check({}, model="gpt-4o")
        durations.append(time.perf_counter() - started)
    assert server.wait_for_requests(1)
    assert max(durations) < 0.05, durations


def test_64_threads_on_a_stale_cache_make_one_request(
    make_engine: Callable[..., Engine], server: RulesServer, feed_env: dict[str, str]
) -> None:
    server.set_rules([breached()])
    server.set_fault(Fault.delay(0.3))
    engine = make_engine(environ=feed_env, retry_policy=FAST)
    barrier = threading.Barrier(64)
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            barrier.wait()
            for _ in range(20):
                engine.check({})
        except BudgetExceededError:
            pass
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=caller) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert wait_until(lambda: engine.status().loaded)
    time.sleep(0.2)
    assert server.request_count == 1


def test_stop_polling_joins_and_the_next_call_restarts(engine: Engine, server: RulesServer) -> None:
    server.set_rules([breached()])
    blocks(engine)
    assert engine.status().poller_alive
    assert wait_until(lambda: blocks(engine))
    started = time.monotonic()
    engine.stop_polling()
    assert time.monotonic() - started < 5.0
    assert not engine.status().poller_alive
    assert blocks(engine)  # the last verdict holds
    assert engine.status().poller_alive


def test_fail_closed_lets_traffic_through_soon_after_the_feed_returns(
    make_engine: Callable[..., Engine], server: RulesServer, feed_env: dict[str, str]
) -> None:
    feed_env["REVENIUM_CB_FAIL_MODE"] = "closed"
    server.set_fault(Fault.status(503))
    engine = make_engine(environ=feed_env, retry_policy=FAST)
    assert blocks(engine)  # uninitialized: refused
    assert server.wait_for_requests(1)
    server.set_fault(None)
    server.set_rules([make_rule(1, "quiet", window_end=FUTURE)])
    assert wait_until(lambda: not blocks(engine), timeout=10.0)


def test_inspection_reads(engine: Engine, server: RulesServer) -> None:
    server.set_rules([breached(1), make_rule(2, "other", window_end=FUTURE)])
    server.set_advisory([{"ruleId": 90, "source": "ANOMALY", "action": "NOTIFY"}])
    server.set_roster({"rows": [{"key": "u-1"}], "blockedCount": 1})
    rule = engine.fetch_enforcement_rule("2")
    assert rule is not None and rule["name"] == "other"
    assert server.requests[-1].query == {"ruleId": "2"}
    assert engine.fetch_advisory_budgets() == [
        {"ruleId": 90, "source": "ANOMALY", "action": "NOTIFY"}
    ]
    assert server.requests[-1].query == {"include": "advisory"}
    roster = engine.fetch_enforcement_rule_roster("1", page=2, size=10, band="BLOCKED")
    assert roster is not None and roster["blockedCount"] == 1
    assert server.requests[-1].path.endswith("/team-1/roster")
    assert server.requests[-1].query == {
        "ruleId": "1",
        "page": "2",
        "size": "10",
        "band": "BLOCKED",
    }
    with pytest.raises(ValueError):
        engine.fetch_enforcement_rule("")
    assert not engine.status().loaded  # inspection never touches the cache


def test_missing_key_fetches_nothing(
    make_engine: Callable[..., Engine], server: RulesServer, feed_env: dict[str, str]
) -> None:
    del feed_env["REVENIUM_METERING_API_KEY"]
    engine = make_engine(environ=feed_env)
    engine.check({})
    time.sleep(0.2)
    assert server.request_count == 0
    assert not engine.status().configured


@pytest.mark.parametrize("team", [".", ".."])
def test_dot_team_ids_are_refused(
    make_engine: Callable[..., Engine], server: RulesServer, feed_env: dict[str, str], team: str
) -> None:
    feed_env["REVENIUM_TEAM_ID"] = team
    engine = make_engine(environ=feed_env)
    engine.check({})
    assert not engine.refresh()
    assert server.request_count == 0


def test_odd_key_prefix_is_used_anyway(make_engine: Callable[..., Engine], tmp_path: Path) -> None:
    with RulesServer(api_key="sk-odd") as odd:
        odd.set_rules([breached()])
        engine = make_engine(environ=odd.env(REVENIUM_CACHE_DIR="off"), retry_policy=FAST)
        assert engine.refresh()
        assert blocks(engine)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_warm_stale_cache_on_a_hanging_feed_keeps_the_verdict_without_waiting(
    make_engine: Callable[..., Engine], server: RulesServer, feed_env: dict[str, str]
) -> None:
    clock = FakeClock()
    engine = make_engine(environ=feed_env, retry_policy=FAST, timeout=5.0, clock=clock)
    server.set_rules([breached()])
    assert engine.refresh()
    server.reset_requests()
    server.set_fault(Fault.hang(30))
    clock.now += 3600  # long past the TTL
    durations = []
    for _ in range(20):
        started = time.perf_counter()
        assert blocks(engine)
        durations.append(time.perf_counter() - started)
    assert server.wait_for_requests(1)
    assert max(durations) < 0.05, durations
    assert engine.status().stale


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_polls_for_itself(loaded: Engine, server: RulesServer) -> None:
    blocks(loaded)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            loaded.stop_polling()  # the child's own poller: start it again by calling
            ok = blocks(loaded) and wait_until(lambda: loaded.status().poller_alive)
            os.write(write, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_trickling_body_is_cut_off_by_the_read_deadline(
    make_engine: Callable[..., Engine], server: RulesServer, feed_env: dict[str, str]
) -> None:
    policy = RetryPolicy(first_backoff=0.01, jitter=0.0, retry_after_budget=2.0, deadline=1.5)
    engine = make_engine(environ=feed_env, retry_policy=policy, timeout=5.0)
    server.set_rules([breached()])
    assert engine.refresh()
    # Every byte arrives well inside the read timeout; the body would take 100 s.
    server.set_fault(Fault.trickle(b'{"rules": []}' + b" " * 187, every=0.5))
    outcome: list[bool] = []
    reader = threading.Thread(target=lambda: outcome.append(engine.refresh()), daemon=True)
    started = time.monotonic()
    reader.start()
    reader.join(15.0)
    assert outcome == [False]
    assert time.monotonic() - started < 5.0
    status = engine.status()
    assert status.last_error is not None and "deadline" in status.last_error
    assert status.consecutive_failures == 1
    assert blocks(engine)


def test_the_read_deadline_is_part_of_the_printed_policy() -> None:
    assert str(RetryPolicy()).endswith("Retry-After honoured up to 60 s; 120 s in all")


def test_the_roster_search_email_stays_out_of_httpx_request_logs(
    engine: Engine, server: RulesServer, caplog: pytest.LogCaptureFixture
) -> None:
    # at_level on "httpx" itself: another library (LiteLLM) may have set it to WARNING.
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="httpx"):
        roster = engine.fetch_enforcement_rule_roster("1", search="Ann.Lee@example.com")
    assert roster is not None
    assert server.requests[-1].query["search"] == "Ann.Lee@example.com"  # sent as asked
    request_lines = [r.getMessage() for r in caplog.records if r.name.startswith("httpx")]
    assert any("/roster?" in line for line in request_lines)
    assert "search=[redacted]" in caplog.text
    for spelling in ("Ann.Lee@example.com", "Ann.Lee%40example.com", "example.com"):
        assert spelling not in caplog.text


def test_one_tls_context_per_process_trusts_what_httpx_trusts() -> None:
    shared = verified_context()
    assert verified_context() is shared  # built once: every client and forked child reuse it
    assert shared.verify_mode == ssl.CERT_REQUIRED and shared.check_hostname
    httpx_default = getattr(httpx, "create_ssl_context", None)  # public since httpx 0.28
    if httpx_default is not None:
        assert shared.cert_store_stats() == httpx_default().cert_store_stats()
