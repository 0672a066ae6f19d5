"""Settings from the environment (CONTRACT §5).

Two kinds of setting, read two ways:

* switches (``REVENIUM_BYPASS``, ``REVENIUM_CIRCUIT_BREAKER_ENABLED``,
  ``REVENIUM_CB_FAIL_MODE``) are read on every call, because an operator flips
  them on a live process. :class:`Switches` reads the raw value through the
  cheapest path the mapping allows and parses each distinct raw value once.
* everything else (where to fetch, which team, how often, where to mirror)
  is read into a frozen :class:`Settings` when an engine is built.

Nothing here raises: a bad value is warned about (once per engine: the
engine passes its reporter's warn-once) and replaced by the default.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

__all__ = ["ENV", "Settings", "Switches", "configuration_problem", "parse_flag"]

logger = logging.getLogger("enforcement.settings")


class ENV:
    """Names of the environment variables we read."""

    ENABLED = "REVENIUM_CIRCUIT_BREAKER_ENABLED"
    BYPASS = "REVENIUM_BYPASS"
    FAIL_MODE = "REVENIUM_CB_FAIL_MODE"
    POLL_INTERVAL = "REVENIUM_CB_POLL_INTERVAL_SECONDS"
    CACHE_DIR = "REVENIUM_CACHE_DIR"
    API_KEY = "REVENIUM_METERING_API_KEY"
    TEAM_ID = "REVENIUM_TEAM_ID"
    ENFORCEMENT_BASE_URL = "REVENIUM_ENFORCEMENT_BASE_URL"
    METERING_BASE_URL = "REVENIUM_METERING_BASE_URL"
    CREDENTIAL_ALIAS = "REVENIUM_CREDENTIAL_ALIAS"
    RULES_FILE = "REVENIUM_CB_RULES_FILE"
    LOCAL_ACCRUAL = "REVENIUM_CB_LOCAL_ACCRUAL"
    LEDGER_URL = "REVENIUM_CB_LEDGER_URL"
    DECISION_LOG = "REVENIUM_CB_DECISION_LOG"
    PRICES_FILE = "REVENIUM_CB_PRICES_FILE"
    GC_FREEZE = "REVENIUM_CB_GC_FREEZE"


DEFAULT_METERING_BASE_URL = "https://api.revenium.ai/meter/"
DEFAULT_POLL_INTERVAL = 60
# Longer is out of range, like a non-number: a day is far past any sane
# interval (a stale cache wakes the poller after two minutes anyway), and far
# inside what a float and ``threading.Event.wait`` accept (a 400-digit value
# overflows the one, 10**10 s the other, which killed the poller thread).
MAX_POLL_INTERVAL = 86_400
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})

#: ``warn(key, message, *args)``: how a bad value is reported. An engine passes
#: its reporter's warn-once (one line per key per engine); used alone, the
#: parsers log every time.
Warn = Callable[..., None]


def log_warning(key: str, message: str, *args: object) -> None:
    """The :data:`Warn` of a parser used outside an engine: log it, every time."""
    logger.warning(message, *args)


def parse_flag(name: str, raw: Optional[str], warn: Warn = log_warning) -> bool:
    """An on/off flag: on for 1/true/yes/on, off for the rest (odd values warned)."""
    value = (raw or "").strip().lower()
    if value in _TRUE:
        return True
    if value not in _FALSE:
        warn(f"flag:{name}", "%s=%r is not a recognised value; using false", name, raw)
    return False


def parse_fail_closed(raw: Optional[str], warn: Warn = log_warning) -> bool:
    """``REVENIUM_CB_FAIL_MODE``: closed or open (the default; odd values warned)."""
    value = (raw or "").strip().lower()
    if value == "closed":
        return True
    if value not in ("open", ""):
        warn(
            f"flag:{ENV.FAIL_MODE}",
            "%s=%r is not a recognised value; using open",
            ENV.FAIL_MODE,
            raw,
        )
    return False


def _raw_reader(environ: Mapping[str, str], name: str) -> Callable[[], object]:
    """The cheapest way to read ``name``'s raw value from ``environ`` on every call.

    ``os.environ.get`` encodes the key and decodes the value each time (about
    0.3 us). CPython's ``os._Environ`` keeps the encoded data in ``_data``, so
    for it we encode the key once and return the stored bytes, which is a
    plain dict lookup. Any other mapping is read through ``get``.
    """
    get, key = _raw_getter(environ, name)
    return lambda: get(key)


def _raw_getter(environ: Mapping[str, str], name: str) -> tuple[Callable[[Any], object], Any]:
    data = getattr(environ, "_data", None)
    encodekey = getattr(environ, "encodekey", None)
    if isinstance(environ, os._Environ) and isinstance(data, dict) and encodekey is not None:
        return data.get, encodekey(name)
    return environ.get, name


def _decode(raw: object) -> Optional[str]:
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, bytes):
        return os.fsdecode(raw)
    return str(raw)


def _live(
    environ: Mapping[str, str], name: str, parse: Callable[[Optional[str]], bool]
) -> Callable[[], bool]:
    """A function returning ``name`` parsed, re-parsing only when the raw value changes."""
    get, key = _raw_getter(environ, name)
    last: list[Any] = [object(), False]

    def current() -> bool:
        raw = get(key)
        if raw is not last[0] and raw != last[0]:
            last[1] = parse(_decode(raw))
            last[0] = raw
        return bool(last[1])

    return current


class Switches:
    """The three switches an operator flips on a live process, read per call.

    ``off()`` is true when enforcement is bypassed or not enabled, the one
    question every call asks first, answered with two dict lookups;
    ``bypass()``, ``enabled()`` and ``fail_closed()`` read one switch each.
    """

    __slots__ = ("bypass", "enabled", "fail_closed", "off")

    def __init__(self, environ: Mapping[str, str], warn: Warn = log_warning) -> None:
        self.bypass = _live(environ, ENV.BYPASS, lambda raw: parse_flag(ENV.BYPASS, raw, warn))
        self.enabled = _live(environ, ENV.ENABLED, lambda raw: parse_flag(ENV.ENABLED, raw, warn))
        self.fail_closed = _live(environ, ENV.FAIL_MODE, lambda raw: parse_fail_closed(raw, warn))
        self.off = _off_switch(environ, warn)


def _off_switch(environ: Mapping[str, str], warn: Warn) -> Callable[[], bool]:
    get_bypass, bypass_key = _raw_getter(environ, ENV.BYPASS)
    get_enabled, enabled_key = _raw_getter(environ, ENV.ENABLED)
    last_bypass: Any = object()
    last_enabled: Any = object()
    result = True

    def off() -> bool:
        nonlocal last_bypass, last_enabled, result
        bypass = get_bypass(bypass_key)
        enabled = get_enabled(enabled_key)
        if bypass is last_bypass and enabled is last_enabled:
            return result
        result = parse_flag(ENV.BYPASS, _decode(bypass), warn) or not parse_flag(
            ENV.ENABLED, _decode(enabled), warn
        )
        last_bypass, last_enabled = bypass, enabled
        return result

    return off


class Settings(BaseModel):
    """Where an engine fetches from and mirrors to, fixed when it is built.

    ``base_url`` is the enforcement origin (path kept, trailing ``/`` cut);
    ``cache_dir`` of ``None`` disables the disk snapshot.
    """

    model_config = ConfigDict(frozen=True)

    api_key: str = ""
    team_id: str = ""
    base_url: str = "https://api.revenium.ai"
    poll_interval: float = float(DEFAULT_POLL_INTERVAL)
    cache_dir: Optional[str] = None

    rules_file: Optional[str] = None
    local_accrual: bool = True
    ledger_url: Optional[str] = None
    decision_log: Optional[str] = None
    prices_file: Optional[str] = None
    # gc.freeze() after each install: process-wide, so only when the application asks.
    gc_freeze: bool = False

    @classmethod
    def from_env(
        cls, environ: Optional[Mapping[str, str]] = None, *, warn: Warn = log_warning
    ) -> Settings:
        """Read the environment (``os.environ`` by default) the way the reference SDK does."""
        env = os.environ if environ is None else environ
        accrual = env.get(ENV.LOCAL_ACCRUAL)
        return cls(
            api_key=(env.get(ENV.API_KEY) or "").strip(),
            team_id=env.get(ENV.TEAM_ID) or "",
            base_url=enforcement_base_url(env, warn),
            poll_interval=float(poll_interval(env.get(ENV.POLL_INTERVAL), warn)),
            cache_dir=cache_dir(env.get(ENV.CACHE_DIR)),
            rules_file=env.get(ENV.RULES_FILE) or None,
            local_accrual=not accrual or parse_flag(ENV.LOCAL_ACCRUAL, accrual, warn),
            ledger_url=(env.get(ENV.LEDGER_URL) or "").strip() or None,
            decision_log=env.get(ENV.DECISION_LOG) or None,
            prices_file=env.get(ENV.PRICES_FILE) or None,
            gc_freeze=parse_flag(ENV.GC_FREEZE, env.get(ENV.GC_FREEZE), warn),
        )


def enforcement_base_url(env: Mapping[str, str], warn: Warn = log_warning) -> str:
    """``REVENIUM_ENFORCEMENT_BASE_URL`` as given, else the metering URL's origin."""
    explicit = env.get(ENV.ENFORCEMENT_BASE_URL) or ""
    if explicit:
        return explicit.rstrip("/")
    metering = (env.get(ENV.METERING_BASE_URL) or "").strip()
    if not metering.startswith(("http://", "https://")):
        if metering:
            warn(
                f"url:{ENV.METERING_BASE_URL}",
                "%s is not an http(s) URL; using the default",
                ENV.METERING_BASE_URL,
            )
        metering = DEFAULT_METERING_BASE_URL
    try:
        parts = urlsplit(metering)
    except ValueError:  # "http://[", an unbalanced IPv6 bracket
        warn(
            f"url:{ENV.METERING_BASE_URL}",
            "%s is not a valid URL; using the default",
            ENV.METERING_BASE_URL,
        )
        parts = urlsplit(DEFAULT_METERING_BASE_URL)
    return f"{parts.scheme}://{parts.netloc}"


def poll_interval(raw: Optional[str], warn: Warn = log_warning) -> int:
    """A whole number of seconds from 1 to a day, else the default (odd values warned once).

    Out of range is as bad as not a number: the default, not the nearest
    bound, because a cap that polls once a day is a worse guess at what a
    400-digit value meant than the interval everyone else runs with.
    """
    if not raw:
        return DEFAULT_POLL_INTERVAL
    try:
        value = int(raw)
    except ValueError:  # not a number, or more digits than int() converts
        value = 0
    if 0 < value <= MAX_POLL_INTERVAL:
        return value
    warn(
        f"int:{ENV.POLL_INTERVAL}",
        "%s=%.40r is not a whole number of seconds from 1 to %d; using %d",
        ENV.POLL_INTERVAL,
        raw,
        MAX_POLL_INTERVAL,
        DEFAULT_POLL_INTERVAL,
    )
    return DEFAULT_POLL_INTERVAL


def cache_dir(raw: Optional[str]) -> Optional[str]:
    """The snapshot directory: as given, ``off`` for none, unset for the user cache dir."""
    if raw is not None and raw.strip().lower() == "off":
        return None
    if raw:
        return raw
    try:
        import platformdirs

        return platformdirs.user_cache_dir("revenium-enforcement", appauthor=False)
    except Exception:  # pragma: no cover - platformdirs never fails in practice
        return None


def configuration_problem(settings: Settings) -> Optional[tuple[Any, ...]]:
    """``(key, message, *args)`` for the first piece missing to fetch rules, else ``None``."""
    if not settings.api_key:
        return (
            "api_key",
            "Spending caps are not fetched: REVENIUM_METERING_API_KEY is not set.",
        )
    if not settings.team_id:
        return ("team_id", "Spending caps are not fetched: REVENIUM_TEAM_ID is not set.")
    if set(settings.team_id) <= {"."}:
        return (
            "team_dots",
            "REVENIUM_TEAM_ID=%r is not a team id; nothing is fetched.",
            settings.team_id,
        )
    return None
