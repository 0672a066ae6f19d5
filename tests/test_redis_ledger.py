"""The Redis ledger against a real ``redis-server`` on 127.0.0.1, started per test.

Skipped only when ``redis-server`` is not installed and ``CI`` is not set;
under CI a missing server fails (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from test_ledger import eventually, held, live_bucket, run_race

from enforcement._ledger import LedgerUnavailable
from enforcement._redis_ledger import EXPIRY_MARGIN_SECONDS, RedisLedger, redacted

redis = pytest.importorskip("redis")
REDIS_ARGS = ["redis-server", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A private redis-server: no persistence, its own port and directory."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*REDIS_ARGS, "--port", str(self.port), "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url, socket_timeout=1.0)
        assert eventually(lambda: _answers(client), 30.0), "redis-server did not start"
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(30)
            self.process = None


def _answers(client: Any) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed (.ci/run installs the Debian package)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    running = RedisServer(tmp_path)
    running.start()
    yield running
    running.stop()


def test_spend_reaches_redis_and_keys_expire_with_the_window(server: RedisServer) -> None:
    first = RedisLedger(server.url, prefix="t:", idle_seconds=0.0)
    second = RedisLedger(server.url, prefix="t:")
    try:
        b = live_bucket(1.0)
        first.commit(held(first.reserve([b], [0.5], time.time())), [0.5], time.time())
        assert first.flush()
        assert second.reserve([b], [0.6], time.time()) == b
        held(second.reserve([b], [0.4], time.time()))
        client = redis.Redis.from_url(server.url)
        expiry_ms = client.pexpiretime("t:" + b.key)
        assert expiry_ms == int((b.expires_at + EXPIRY_MARGIN_SECONDS) * 1000)
        client.close()
        assert first.describe()["where"] == server.url and first.healthy
    finally:
        first.close()
        second.close()


def test_two_processes_racing_for_the_last_dollar_admit_exactly_what_fits(
    server: RedisServer,
) -> None:
    b = live_bucket(10.0)
    ledger = RedisLedger(server.url)
    ledger.commit(held(ledger.reserve([b], [9.0], time.time())), [9.0], time.time())
    ledger.close()  # $9 of $10 spent: one dollar left
    spec: tuple[Any, ...] = ("redis", server.url, {})
    assert run_race(spec, b, 0.125, workers=2, commit=True) == 8


def test_an_outage_raises_only_ledger_unavailable_and_recovers(server: RedisServer) -> None:
    ledger = RedisLedger(server.url, flush_seconds=0.05)
    try:
        b = live_bucket(1.0)
        ledger.commit(held(ledger.reserve([b], [0.1], time.time())), [0.1], time.time())
        server.stop()
        with pytest.raises(LedgerUnavailable) as caught:
            ledger.reserve([live_bucket(1.0, key="new")], [0.1], time.time())
        assert caught.value.scope == "redis"
        assert not ledger.healthy
        assert ledger.describe()["last_error"]
        assert not ledger.flush()
        with pytest.raises(LedgerUnavailable):  # at once, without waiting on the network
            ledger.reserve([live_bucket(1.0, key="other")], [0.1], time.time())
        server.start()
        assert eventually(lambda: ledger.healthy)
        held(ledger.reserve([live_bucket(1.0, key="after")], [0.1], time.time()))
    finally:
        ledger.close()


def test_a_password_never_shows_in_describe() -> None:
    assert redacted("redis://user:secret@h:6379/0") == "redis://user:***@h:6379/0"
    assert redacted("redis://h:6379/0") == "redis://h:6379/0"


def test_an_engine_falls_back_to_the_hosts_ledger_when_redis_fails_and_says_so(
    server: RedisServer, tmp_path: Path
) -> None:
    from enforcement import BudgetExceededError, Engine
    from enforcement._prices import PriceTable
    from enforcement._usage import Estimate, Usage
    from enforcement.testing import RulesServer, make_rule

    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    with RulesServer() as rules:
        rules.set_rules([make_rule(1, "fleet cap", threshold=1.0)])
        environ = {
            **rules.env(),
            "REVENIUM_CIRCUIT_BREAKER_ENABLED": "true",
            "REVENIUM_CACHE_DIR": str(cache),
            "REVENIUM_CB_LEDGER_URL": server.url,
        }
        prices = PriceTable(overrides={"m": {"input": 1.0, "output": 1.0}}, use_table=False)
        with Engine(environ=environ, prices=prices) as engine:
            assert engine.refresh()

            def call() -> None:
                spend = engine.begin(model="m", provider="openai", estimate=lambda: Estimate(0, 0))
                assert spend is not None
                spend.settle(Usage(100_000, 0))  # $0.10

            call()
            status = engine.status().local_spend
            assert status is not None and status["ledger"] == "redis"
            server.stop()
            call()  # the outage costs no call: this one is held on the allowance leased already

            def redis_unhealthy() -> bool:
                spend = engine.status().local_spend
                return spend is not None and spend["ledgers"][0]["healthy"] is False

            assert eventually(redis_unhealthy, 10.0)  # the background flush found it down
            call()
            status = engine.status().local_spend
            assert status is not None and status["ledger"] == "host"
            redis_row = status["ledgers"][0]
            assert redis_row["error"]  # why it is not used, e.g. "Connection refused"
            for _ in range(20):
                try:
                    call()
                except BudgetExceededError as refused:
                    assert refused.source == "local"
                    break
            else:
                raise AssertionError("the host's ledger never refused")
