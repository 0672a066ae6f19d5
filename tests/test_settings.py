"""Unit tests of enforcement._settings: every variable of CONTRACT §5, read without raising.

The parsers report a bad value through the ``warn`` they are given; an engine
gives them its reporter's warn-once, so the last tests build real engines.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Optional

import pydantic
import pytest
from _support import CONTRACT_ENVIRONMENT
from hypothesis import given
from hypothesis import strategies as st

from enforcement import Engine
from enforcement._settings import (
    DEFAULT_POLL_INTERVAL,
    ENV,
    MAX_POLL_INTERVAL,
    Settings,
    Switches,
    cache_dir,
    enforcement_base_url,
    parse_fail_closed,
    parse_flag,
    poll_interval,
)


class Warnings:
    """A ``warn`` that keeps what it was told: (key, formatted message) pairs."""

    def __init__(self) -> None:
        self.said: list[tuple[str, str]] = []

    def __call__(self, key: str, message: str, *args: object) -> None:
        self.said.append((key, message % args))

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.said]


@pytest.fixture
def warnings() -> Warnings:
    return Warnings()


def test_the_names_are_the_contracts() -> None:
    assert {
        ENV.ENABLED,
        ENV.BYPASS,
        ENV.FAIL_MODE,
        ENV.POLL_INTERVAL,
        ENV.CACHE_DIR,
        ENV.API_KEY,
        ENV.TEAM_ID,
        ENV.ENFORCEMENT_BASE_URL,
        ENV.METERING_BASE_URL,
    } == set(CONTRACT_ENVIRONMENT)


# -- flags -------------------------------------------------------------------------

ON = ["1", "true", "TRUE", "True", "yes", "YES", "on", "On", " true ", "\tyes\n"]
OFF = ["0", "false", "FALSE", "no", "No", "off", "OFF", "", "   ", " 0 ", None]
ODD = ["enabled", "2", "y", "t", "truee", "on!", "nein", "-1"]


@pytest.mark.parametrize("name", [ENV.ENABLED, ENV.BYPASS])
@pytest.mark.parametrize("raw", ON)
def test_a_flag_is_on_for_its_on_spellings(name: str, raw: str, warnings: Warnings) -> None:
    assert parse_flag(name, raw, warnings) is True
    assert warnings.said == []


@pytest.mark.parametrize("name", [ENV.ENABLED, ENV.BYPASS])
@pytest.mark.parametrize("raw", OFF)
def test_a_flag_is_off_for_its_off_spellings(
    name: str, raw: Optional[str], warnings: Warnings
) -> None:
    assert parse_flag(name, raw, warnings) is False
    assert warnings.said == []


@pytest.mark.parametrize("name", [ENV.ENABLED, ENV.BYPASS])
@pytest.mark.parametrize("raw", ODD)
def test_any_other_flag_value_is_off_and_warned(name: str, raw: str, warnings: Warnings) -> None:
    assert parse_flag(name, raw, warnings) is False
    assert warnings.keys == [f"flag:{name}"]
    assert name in warnings.said[0][1] and repr(raw) in warnings.said[0][1]


@pytest.mark.parametrize("raw", ["closed", "CLOSED", " Closed\n"])
def test_fail_mode_closed(raw: str, warnings: Warnings) -> None:
    assert parse_fail_closed(raw, warnings) is True
    assert warnings.said == []


@pytest.mark.parametrize("raw", ["open", "OPEN", " open ", "", None])
def test_fail_mode_open_is_the_default(raw: Optional[str], warnings: Warnings) -> None:
    assert parse_fail_closed(raw, warnings) is False
    assert warnings.said == []


@pytest.mark.parametrize("raw", ["shut", "fail-closed", "true", "1", "   x"])
def test_any_other_fail_mode_is_open_and_warned(raw: str, warnings: Warnings) -> None:
    assert parse_fail_closed(raw, warnings) is False
    assert warnings.keys == [f"flag:{ENV.FAIL_MODE}"]


def test_a_parser_used_alone_logs_every_time(caplog: pytest.LogCaptureFixture) -> None:
    for _ in range(2):
        parse_flag(ENV.BYPASS, "maybe")
    lines = [r for r in caplog.records if r.name == "enforcement.settings"]
    assert [r.levelno for r in lines] == [logging.WARNING] * 2


# -- the poll interval -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("1", 1), ("30", 30), (" 45 ", 45), ("+7", 7), ("86400", MAX_POLL_INTERVAL)],
)
def test_a_poll_interval_in_range_is_used(raw: str, seconds: int, warnings: Warnings) -> None:
    assert poll_interval(raw, warnings) == seconds
    assert warnings.said == []


@pytest.mark.parametrize("raw", [None, ""])
def test_no_poll_interval_is_the_default_quietly(raw: Optional[str], warnings: Warnings) -> None:
    assert poll_interval(raw, warnings) == DEFAULT_POLL_INTERVAL == 60
    assert warnings.said == []


@pytest.mark.parametrize(
    "raw", ["0", "-5", "86401", "1.5", "60s", "abc", " ", "1e3", "9" * 400, "10000000000"]
)
def test_a_poll_interval_out_of_range_or_not_whole_is_the_default(
    raw: str, warnings: Warnings
) -> None:
    assert poll_interval(raw, warnings) == DEFAULT_POLL_INTERVAL
    assert warnings.keys == [f"int:{ENV.POLL_INTERVAL}"]
    assert len(warnings.said[0][1]) < 200  # a 400-digit value is cut in the log line


# -- the snapshot directory --------------------------------------------------------


@pytest.mark.parametrize("raw", ["off", "OFF", " Off "])
def test_cache_dir_off_disables_the_snapshot(raw: str) -> None:
    assert cache_dir(raw) is None


def test_cache_dir_as_given() -> None:
    assert cache_dir("/var/cache/app") == "/var/cache/app"
    assert cache_dir(" spaced ") == " spaced "


@pytest.mark.parametrize("raw", [None, ""])
def test_no_cache_dir_is_the_user_cache_directory(raw: Optional[str]) -> None:
    path = cache_dir(raw)
    assert path is not None and "revenium-enforcement" in path


# -- where to fetch ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "base"),
    [
        ({}, "https://api.revenium.ai"),
        ({ENV.METERING_BASE_URL: "https://api.example.com/meter/v2/"}, "https://api.example.com"),
        ({ENV.METERING_BASE_URL: " http://127.0.0.1:8080/x "}, "http://127.0.0.1:8080"),
        ({ENV.ENFORCEMENT_BASE_URL: "http://h:1/profitstream/"}, "http://h:1/profitstream"),
        ({ENV.ENFORCEMENT_BASE_URL: "https://e.example//"}, "https://e.example"),
        (
            {ENV.ENFORCEMENT_BASE_URL: "https://e.example", ENV.METERING_BASE_URL: "https://m"},
            "https://e.example",
        ),
        ({ENV.ENFORCEMENT_BASE_URL: "", ENV.METERING_BASE_URL: "https://m/x"}, "https://m"),
    ],
)
def test_the_enforcement_base_url(env: dict[str, str], base: str, warnings: Warnings) -> None:
    assert enforcement_base_url(env, warnings) == base
    assert warnings.said == []


@pytest.mark.parametrize(
    ("metering", "why"),
    [
        ("ftp://files.example", "not an http(s) URL"),
        ("api.example.com", "not an http(s) URL"),
        ("http://[", "not a valid URL"),
    ],
)
def test_a_metering_url_that_cannot_be_used_is_the_default_and_warned(
    metering: str, why: str, warnings: Warnings
) -> None:
    assert enforcement_base_url({ENV.METERING_BASE_URL: metering}, warnings) == (
        "https://api.revenium.ai"
    )
    assert warnings.keys == [f"url:{ENV.METERING_BASE_URL}"] and why in warnings.said[0][1]


# -- Settings ----------------------------------------------------------------------


def test_settings_from_the_environment(tmp_path: Any, warnings: Warnings) -> None:
    settings = Settings.from_env(
        {
            ENV.API_KEY: "  hak_secret \n",
            ENV.TEAM_ID: "team 1/ä",
            ENV.ENFORCEMENT_BASE_URL: "http://127.0.0.1:9/",
            ENV.POLL_INTERVAL: "15",
            ENV.CACHE_DIR: str(tmp_path),
        },
        warn=warnings,
    )
    assert (settings.api_key, settings.team_id, settings.base_url) == (
        "hak_secret",
        "team 1/ä",
        "http://127.0.0.1:9",
    )
    assert settings.poll_interval == 15.0 and isinstance(settings.poll_interval, float)
    assert settings.cache_dir == str(tmp_path)
    assert warnings.said == []


def test_settings_of_an_empty_environment_are_the_defaults(warnings: Warnings) -> None:
    settings = Settings.from_env({ENV.CACHE_DIR: "off"}, warn=warnings)
    assert (settings.api_key, settings.team_id, settings.base_url) == (
        "",
        "",
        "https://api.revenium.ai",
    )
    assert (settings.poll_interval, settings.cache_dir) == (60.0, None)
    assert warnings.said == []


def test_settings_read_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV.TEAM_ID, "from-os-environ")
    assert Settings.from_env().team_id == "from-os-environ"


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({ENV.CACHE_DIR: "off"})
    with pytest.raises(pydantic.ValidationError):
        settings.team_id = "other"


@pytest.mark.parametrize(
    ("raw", "on", "warned"),
    [
        (None, True, False),
        ("", True, False),
        ("on", True, False),
        ("off", False, False),
        ("0", False, False),
        ("perhaps", False, True),
    ],
)
def test_local_accrual_is_on_unless_switched_off(
    raw: Optional[str], on: bool, warned: bool, warnings: Warnings
) -> None:
    env = {ENV.CACHE_DIR: "off"} if raw is None else {ENV.CACHE_DIR: "off", ENV.LOCAL_ACCRUAL: raw}
    assert Settings.from_env(env, warn=warnings).local_accrual is on
    assert bool(warnings.said) is warned


SETTING_NAMES = st.sampled_from(
    [
        ENV.API_KEY,
        ENV.TEAM_ID,
        ENV.ENFORCEMENT_BASE_URL,
        ENV.METERING_BASE_URL,
        ENV.POLL_INTERVAL,
        ENV.CACHE_DIR,
        ENV.LOCAL_ACCRUAL,
    ]
)
RAW = st.text(max_size=20) | st.sampled_from(["http://[", "https://", "off", "0", "9" * 500])


@given(st.dictionaries(SETTING_NAMES, RAW))
def test_no_environment_makes_settings_raise(env: dict[str, str]) -> None:
    settings = Settings.from_env(env, warn=Warnings())
    assert 1 <= settings.poll_interval <= MAX_POLL_INTERVAL
    explicit = env.get(ENV.ENFORCEMENT_BASE_URL)
    if explicit:
        assert settings.base_url == explicit.rstrip("/")  # used as given
    else:
        assert settings.base_url.startswith(("http://", "https://"))


# -- Switches ----------------------------------------------------------------------


def test_switches_are_read_live(warnings: Warnings) -> None:
    env: dict[str, str] = {}
    switches = Switches(env, warnings)
    assert switches.off() and not switches.enabled() and not switches.bypass()
    env[ENV.ENABLED] = "true"
    assert not switches.off() and switches.enabled()
    env[ENV.BYPASS] = "yes"
    assert switches.off() and switches.bypass()
    del env[ENV.BYPASS]
    assert not switches.off()
    env[ENV.FAIL_MODE] = "closed"
    assert switches.fail_closed()
    env[ENV.FAIL_MODE] = "open"
    assert not switches.fail_closed()
    assert warnings.said == []


def test_switches_read_os_environ_live(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV.BYPASS, raising=False)
    monkeypatch.setenv(ENV.ENABLED, "1")
    switches = Switches(os.environ)
    assert not switches.off()
    monkeypatch.setenv(ENV.BYPASS, "on")
    assert switches.off() and switches.bypass()
    monkeypatch.setenv(ENV.ENABLED, "0")
    monkeypatch.setenv(ENV.BYPASS, "0")
    assert switches.off() and not switches.enabled()


@pytest.mark.parametrize(
    ("read", "value"),
    [(lambda s: s.enabled(), False), (lambda s: s.off(), True)],
    ids=["enabled", "off"],
)
def test_a_switch_parses_a_raw_value_once_until_it_changes(
    read: Callable[[Switches], bool], value: bool, warnings: Warnings
) -> None:
    env = {ENV.ENABLED: "enabled-please"}
    switches = Switches(env, warnings)
    for _ in range(5):
        assert read(switches) is value
    assert warnings.keys == [f"flag:{ENV.ENABLED}"]
    env[ENV.ENABLED] = "still-odd"
    read(switches)
    assert warnings.keys == [f"flag:{ENV.ENABLED}"] * 2


# -- warned once per engine --------------------------------------------------------

ODD_ENVIRONMENT = {
    ENV.ENABLED: "true",
    ENV.CACHE_DIR: "off",
    ENV.POLL_INTERVAL: "soon",
    ENV.METERING_BASE_URL: "api.example.com",
    ENV.FAIL_MODE: "sometimes",
}


def odd_value_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_each_odd_value_is_warned_once_per_engine(
    make_engine: Callable[..., Engine], caplog: pytest.LogCaptureFixture
) -> None:
    for engines in (1, 2):
        engine = make_engine(environ=dict(ODD_ENVIRONMENT))
        for _ in range(3):
            engine.check({}, model="gpt-4o", provider="openai")
        lines = odd_value_lines(caplog)
        for needle in (ENV.POLL_INTERVAL, ENV.METERING_BASE_URL, ENV.FAIL_MODE):
            assert sum(needle in line for line in lines) == engines, (needle, lines)


def test_gc_freeze_is_off_unless_asked(warnings: Warnings) -> None:
    assert Settings.from_env({}).gc_freeze is False
    assert Settings.from_env({ENV.GC_FREEZE: "on"}).gc_freeze is True
    assert Settings.from_env({ENV.GC_FREEZE: "sometimes"}, warn=warnings).gc_freeze is False
    assert warnings.keys == [f"flag:{ENV.GC_FREEZE}"]
