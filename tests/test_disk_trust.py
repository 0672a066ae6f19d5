"""What the snapshot directory may and may not make a process do (issue 10).

Real files, real processes, a real rules server: a planted sidecar cannot keep
a process off the feed, an untrusted or odd file is not read, a killed
writer's temporary file is swept, and a stopped neighbour does not silence
the host.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from _support import FAST, breached, clean_env, verdict, wait_until

from enforcement import Engine
from enforcement._mirror import Mirror
from enforcement._private_files import TEMP_PREFIX
from enforcement._sidecar import host_tag
from enforcement._wire import Payload
from enforcement.testing import Fault, RulesServer, make_rule

POSIX = pytest.mark.skipif(os.name != "posix", reason="POSIX file semantics")


@pytest.fixture
def mirror(server: RulesServer, cache_dir: Path) -> Mirror:
    """The team's files, sealed with the key the server's engines use."""
    key = server.env()["REVENIUM_METERING_API_KEY"]
    return Mirror(str(cache_dir), server.base_url, server.team_id, secret=key)


def engine_env(server: RulesServer, cache_dir: Path, **extra: str) -> dict[str, str]:
    return server.env(REVENIUM_CACHE_DIR=str(cache_dir), **extra)


def plant(mirror: Mirror, rules: list[dict[str, Any]]) -> None:
    """A snapshot of ``rules`` on disk, as the planter wants it."""
    assert mirror.save(Payload(rules), etag=None, fetched_at=time.time())


def plant_sidecar(mirror: Mirror, **fields: Any) -> None:
    """An unsealed sidecar claiming a fresh fetch of the rules file as it is now."""
    rules_file = mirror.rules_file()
    assert rules_file is not None
    body = {
        "fetched_at": time.time(),
        "etag": None,
        "rules_file": list(rules_file),
        "pid": 1,
        **fields,
    }
    Path(mirror.meta_path).write_text(json.dumps(body))
    os.chmod(mirror.meta_path, 0o600)


# --------------------------------------------------------------------------- #7


@pytest.mark.parametrize("seal", ["none", "forged"])
def test_a_planted_fresh_sidecar_does_not_keep_a_process_off_the_feed(
    server: RulesServer,
    cache_dir: Path,
    mirror: Mirror,
    make_engine: Callable[..., Engine],
    seal: str,
) -> None:
    plant(mirror, [breached(1, breached=False)])  # the planter lifts every breach
    extra = {"seal": "0" * 64} if seal == "forged" else {}
    plant_sidecar(mirror, **extra)
    stop = threading.Event()

    def keep_it_fresh() -> None:
        while not stop.wait(0.1):
            plant_sidecar(mirror, **extra)

    planter = threading.Thread(target=keep_it_fresh, daemon=True)
    planter.start()
    try:
        server.set_rules([breached(1)])
        engine = make_engine(environ=engine_env(server, cache_dir), retry_policy=FAST)
        assert verdict(engine) == "pass"  # the planted rules, read as a stale snapshot
        assert server.wait_for_requests(1, timeout=5.0)
        assert wait_until(lambda: verdict(engine) == "block")
    finally:
        stop.set()
        planter.join()


def test_a_sidecar_from_the_future_is_not_fresh(
    server: RulesServer, cache_dir: Path, mirror: Mirror, make_engine: Callable[..., Engine]
) -> None:
    plant(mirror, [breached(1, breached=False)])
    mirror.touch(etag=None, fetched_at=time.time() + 3600)
    os.chmod(mirror.meta_path, 0o600)
    # Sealed with the right key, but written by this pid: pretend another process wrote it.
    meta = json.loads(Path(mirror.meta_path).read_text())
    meta["pid"] = 1
    body = {k: v for k, v in meta.items() if k != "seal"}
    Path(mirror.meta_path).write_text(json.dumps({**body, "seal": mirror._seal(body)}))
    server.set_rules([breached(1)])
    engine = make_engine(environ=engine_env(server, cache_dir), retry_policy=FAST)
    verdict(engine)
    assert server.wait_for_requests(1, timeout=5.0)
    assert wait_until(lambda: verdict(engine) == "block")


def test_a_sealed_sidecar_kept_fresh_by_a_neighbour_defers_a_process_for_a_bounded_time(
    server: RulesServer, cache_dir: Path, mirror: Mirror, make_engine: Callable[..., Engine]
) -> None:
    """Even a writer holding the key delays this process's own fetch by a bounded time.

    The neighbour here re-seals a fresh fetch every 0.1 s; the process adopts
    it for SELF_FETCH_EVERY intervals (10 s at a 1 s interval), then asks the
    feed itself.
    """
    from enforcement._refresher import SELF_FETCH_EVERY

    plant(mirror, [breached(1, breached=False)])
    stop = threading.Event()

    def seal_a_fresh_fetch() -> None:
        meta = mirror.load_meta()
        rules_file = mirror.rules_file()
        body = {
            "fetched_at": time.time(),
            "etag": meta.etag if meta else None,
            "rules_file": list(rules_file) if rules_file else None,
            "pid": 1,
            "host": "",
            "lease": None,
        }
        Path(mirror.meta_path).write_text(json.dumps({**body, "seal": mirror._seal(body)}))

    def neighbour() -> None:
        while not stop.wait(0.1):
            seal_a_fresh_fetch()

    seal_a_fresh_fetch()
    thread = threading.Thread(target=neighbour, daemon=True)
    thread.start()
    try:
        server.set_rules([breached(1)])
        env = engine_env(server, cache_dir, REVENIUM_CB_POLL_INTERVAL_SECONDS="1")
        engine = make_engine(environ=env, retry_policy=FAST)
        started = time.monotonic()
        assert verdict(engine) == "pass"
        assert server.wait_for_requests(1, timeout=SELF_FETCH_EVERY * 1.1 + 3)
        assert time.monotonic() - started > 2  # it did adopt the neighbour's fetches first
        assert wait_until(lambda: verdict(engine) == "block")
    finally:
        stop.set()
        thread.join()


def test_processes_still_share_one_fetch_through_a_sealed_sidecar(
    server: RulesServer, cache_dir: Path, make_engine: Callable[..., Engine]
) -> None:
    server.set_rules([breached(1)])
    first = make_engine(environ=engine_env(server, cache_dir), retry_policy=FAST)
    assert first.refresh()
    script = textwrap.dedent(
        """
        import time
        from enforcement import BudgetExceededError, check_enforcement
        for _ in range(2):
            try:
                check_enforcement({})
            except BudgetExceededError:
                print("block")
            time.sleep(0.5)
        """
    )
    env = clean_env(engine_env(server, cache_dir))
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.stdout.split() == ["block", "block"], result.stderr
    assert server.request_count == 1


# --------------------------------------------------------------------------- #10

KILLED_WRITER = textwrap.dedent(
    """
    import os, sys, time
    from enforcement._mirror import Mirror
    from enforcement._wire import Payload
    from enforcement.testing import make_rule

    def stuck(*args):  # the process dies between writing and renaming
        print("writing", flush=True)
        time.sleep(3600)

    os.replace = stuck
    Mirror(sys.argv[1], "http://127.0.0.1:9", "t").save(
        Payload([make_rule(i) for i in range(200)]), etag=None, fetched_at=0.0
    )
    """
)


def temporary_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith((".tmp-", TEMP_PREFIX))]


@POSIX
def test_a_killed_writers_temporary_file_is_recognisable_and_swept(cache_dir: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(cache_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env({}),
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
    finally:
        writer.kill()
        writer.wait(10)
        if writer.stdout is not None:
            writer.stdout.close()
    left = temporary_files(cache_dir)
    assert len(left) == 1
    assert left[0].name.startswith(f"{TEMP_PREFIX}") and f".{writer.pid}." in left[0].name
    mirror = Mirror(str(cache_dir), "http://127.0.0.1:9", "t")
    assert mirror.save(Payload([make_rule(1)]), etag=None, fetched_at=0.0)
    assert temporary_files(cache_dir) == []
    assert mirror.load() is not None


def test_old_temporary_files_are_swept_and_a_live_writers_young_one_is_kept(
    cache_dir: Path,
) -> None:
    mirror = Mirror(str(cache_dir), "http://127.0.0.1:9", "t")
    cache_dir.mkdir(exist_ok=True)
    live = os.getppid()  # alive, and not this process
    young = cache_dir / f"{TEMP_PREFIX}{host_tag()}.{live}.abcdefgh.tmp"
    old = cache_dir / f"{TEMP_PREFIX}{host_tag()}.{live}.ijklmnop.tmp"
    elsewhere = cache_dir / f"{TEMP_PREFIX}00000000.999999.qrstuvwx.tmp"  # another host's
    legacy = cache_dir / ".tmp-k3j4h5.json"
    unrelated = cache_dir / "notes.tmp"
    for path in (young, old, elsewhere, legacy, unrelated):
        path.write_text("{")
    ten_minutes_ago = time.time() - 600
    for path in (old, legacy):
        os.utime(path, (ten_minutes_ago, ten_minutes_ago))
    assert mirror.save(Payload([make_rule(1)]), etag=None, fetched_at=0.0)
    names = {p.name for p in cache_dir.iterdir()}
    assert young.name in names and elsewhere.name in names and unrelated.name in names
    assert old.name not in names and legacy.name not in names


# --------------------------------------------------------------------------- #13: files


@POSIX
def test_a_world_writable_snapshot_is_not_trusted(
    server: RulesServer,
    cache_dir: Path,
    mirror: Mirror,
    make_engine: Callable[..., Engine],
    caplog: pytest.LogCaptureFixture,
) -> None:
    plant(mirror, [breached(1)])
    os.chmod(mirror.rules_path, 0o666)
    offline = engine_env(server, cache_dir, REVENIUM_METERING_API_KEY="")
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            engine = make_engine(environ=offline)
            assert verdict(engine) == "pass"
            assert verdict(engine) == "pass"
            assert not engine.status().loaded
    warnings = [r for r in caplog.records if "anyone may write it" in r.getMessage()]
    assert len(warnings) == 3  # once per engine, however many calls it judges
    os.chmod(mirror.rules_path, 0o600)
    assert verdict(make_engine(environ=offline)) == "block"


@POSIX
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs chown")
def test_a_snapshot_owned_by_another_user_is_not_trusted(
    server: RulesServer, cache_dir: Path, mirror: Mirror, make_engine: Callable[..., Engine]
) -> None:
    plant(mirror, [breached(1)])
    os.chown(mirror.rules_path, 65534, 65534)
    os.chmod(cache_dir, 0o777)
    offline = engine_env(server, cache_dir, REVENIUM_METERING_API_KEY="")
    engine = make_engine(environ=offline)
    assert verdict(engine) == "pass"
    assert not engine.status().loaded


@POSIX
def test_a_sidecar_owned_by_another_user_or_writable_by_all_is_not_read(
    server: RulesServer, cache_dir: Path, mirror: Mirror
) -> None:
    plant(mirror, [breached(1)])
    assert mirror.load_meta() is not None
    os.chmod(mirror.meta_path, 0o646)
    assert mirror.load_meta() is None


@POSIX
@pytest.mark.parametrize("which", ["rules", "maps", "meta"])
def test_a_fifo_in_place_of_a_snapshot_file_does_not_hang_the_first_call(
    server: RulesServer, cache_dir: Path, mirror: Mirror, which: str
) -> None:
    plant(mirror, [breached(1)])
    path = {"rules": mirror.rules_path, "maps": mirror.maps_path, "meta": mirror.meta_path}[which]
    if os.path.exists(path):
        os.unlink(path)
    os.mkfifo(path, 0o600)
    script = textwrap.dedent(
        """
        from enforcement import BudgetExceededError, check_enforcement
        try:
            check_enforcement({})
            print("pass")
        except BudgetExceededError:
            print("block")
        """
    )
    env = clean_env(engine_env(server, cache_dir, REVENIUM_METERING_API_KEY=""))
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("pass" if which == "rules" else "block")


@POSIX
def test_a_symlinked_snapshot_is_not_followed(
    server: RulesServer, cache_dir: Path, mirror: Mirror, make_engine: Callable[..., Engine]
) -> None:
    plant(mirror, [breached(1)])
    elsewhere = cache_dir.parent / "elsewhere.json"
    os.replace(mirror.rules_path, elsewhere)
    os.symlink(elsewhere, mirror.rules_path)
    engine = make_engine(environ=engine_env(server, cache_dir, REVENIUM_METERING_API_KEY=""))
    assert verdict(engine) == "pass"


# --------------------------------------------------------------------------- #6

STUCK_FETCHER = textwrap.dedent(
    """
    import time
    from enforcement import check_enforcement
    check_enforcement({})  # starts the poller, which takes the lease and fetches
    time.sleep(3600)
    """
)

LOCK_HOLDER = textwrap.dedent(
    """
    import sys, time, filelock
    lock = filelock.FileLock(sys.argv[1])
    lock.acquire()
    print("held", flush=True)
    time.sleep(3600)
    """
)


@POSIX
def test_a_neighbour_stopped_mid_fetch_does_not_silence_the_host(
    server: RulesServer, cache_dir: Path, make_engine: Callable[..., Engine]
) -> None:
    server.set_rules([breached(1)])
    server.add_fault(Fault.hang(60))  # the neighbour's fetch never completes
    env = engine_env(server, cache_dir, REVENIUM_CB_POLL_INTERVAL_SECONDS="1")
    neighbour = subprocess.Popen([sys.executable, "-c", STUCK_FETCHER], env=clean_env(env))
    try:
        assert server.wait_for_requests(1, timeout=20.0)
        os.kill(neighbour.pid, signal.SIGSTOP)
        engine = make_engine(environ=env, retry_policy=FAST)
        started = time.monotonic()
        verdict(engine)
        assert wait_until(lambda: verdict(engine) == "block", timeout=5.0)
        assert time.monotonic() - started < 4.0  # within about one interval
        assert server.request_count == 2
    finally:
        neighbour.kill()
        neighbour.wait(10)


@POSIX
def test_a_neighbour_stopped_holding_the_lock_does_not_silence_the_host(
    server: RulesServer, cache_dir: Path, mirror: Mirror, make_engine: Callable[..., Engine]
) -> None:
    server.set_rules([breached(1)])
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, mirror.lock_path],
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env({}),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        os.kill(holder.pid, signal.SIGSTOP)
        env = engine_env(server, cache_dir, REVENIUM_CB_POLL_INTERVAL_SECONDS="1")
        engine = make_engine(environ=env, retry_policy=FAST)
        verdict(engine)
        assert wait_until(lambda: verdict(engine) == "block", timeout=6.0)
    finally:
        holder.kill()
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()


@POSIX
def test_a_dead_lease_holder_does_not_delay_the_host(
    server: RulesServer, cache_dir: Path, mirror: Mirror, make_engine: Callable[..., Engine]
) -> None:
    plant(mirror, [breached(1, breached=False)])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10)
    body = {
        "fetched_at": None,
        "etag": None,
        "rules_file": None,
        "pid": 0,
        "host": "",
        "lease": {"pid": dead.pid, "host": host_tag(), "at": time.time()},
    }
    Path(mirror.meta_path).write_text(json.dumps({**body, "seal": mirror._seal(body)}))
    server.set_rules([breached(1)])
    env = engine_env(server, cache_dir, REVENIUM_CB_POLL_INTERVAL_SECONDS="30")
    engine = make_engine(environ=env, retry_policy=FAST)
    verdict(engine)
    assert wait_until(lambda: verdict(engine) == "block", timeout=3.0)


def test_a_cache_directory_that_cannot_be_created_does_not_stop_fetching(
    server: RulesServer, tmp_path: Path, make_engine: Callable[..., Engine]
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    server.set_rules([breached(1)])
    engine = make_engine(environ=engine_env(server, blocker / "cache"), retry_policy=FAST)
    verdict(engine)
    assert wait_until(lambda: verdict(engine) == "block", timeout=5.0)
