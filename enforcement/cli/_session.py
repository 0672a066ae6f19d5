"""One engine for one command: built from the environment, loaded, closed.

A tool must see the rules whatever the switches say, and offline it must
send nothing. An engine that has ``load_snapshot()`` and an ``offline`` mode
gives exactly that. Without them the CLI makes do: the engine reads an
:class:`Environment` whose switches are pinned on while a dry-run
``explain`` loads the snapshot (and the poller it starts is stopped at
once), and offline it is built without the key, so the ETag the key seals
is not shown.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional

from . import UsageError

if TYPE_CHECKING:
    from .. import Engine

__all__ = ["Environment", "Session", "caller_metadata", "open_session"]

API_KEY = "REVENIUM_METERING_API_KEY"
_LOADING_SWITCHES = {"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true", "REVENIUM_BYPASS": "off"}


class Environment(Mapping[str, str]):
    """The process environment, some names hidden or pinned for a while."""

    def __init__(self, base: Mapping[str, str], hidden: frozenset[str] = frozenset()) -> None:
        self.base = base
        self._hidden = hidden
        self._pinned: dict[str, str] = {}

    def __getitem__(self, name: str) -> str:
        if name in self._pinned:
            return self._pinned[name]
        if name in self._hidden:
            raise KeyError(name)
        return self.base[name]

    def __iter__(self) -> Iterator[str]:
        names = {name for name in self.base if name not in self._hidden} | set(self._pinned)
        return iter(sorted(names))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    @contextlib.contextmanager
    def pinned(self, values: Mapping[str, str]) -> Iterator[None]:
        self._pinned = dict(values)
        try:
            yield
        finally:
            self._pinned = {}


class Session:
    """An engine for one command, and how its rules were obtained."""

    def __init__(self, engine: Engine, environ: Environment, *, offline: bool) -> None:
        self.engine = engine
        self.environ = environ
        self.offline = offline
        self.fetched: Optional[bool] = None  # None: not attempted
        # Offline, the engine is built without the key; whether one is set is still news.
        self.key_set = bool((environ.base.get(API_KEY) or "").strip())

    def load(self) -> None:
        """Fetch once (unless offline); without a fresh answer, read the disk snapshot."""
        if not self.offline:
            self.fetched = self.engine.refresh() if self.engine.status().configured else None
            if self.fetched:
                return
        self.load_snapshot()

    def load_snapshot(self) -> None:
        """Read the disk snapshot (or the rules file), judging nothing and fetching nothing."""
        load: Optional[Callable[[], object]] = getattr(self.engine, "load_snapshot", None)
        if load is not None:
            load()
            return
        # The engine reads its snapshot on the first enabled call; explain is one that
        # judges nothing. It also starts the poller, which this one-shot engine does not want.
        with self.environ.pinned(_LOADING_SWITCHES):
            self.engine.explain({})
        self.engine.stop_polling()

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_session(
    *, offline: bool, timeout: float, environ: Optional[Mapping[str, str]] = None
) -> Session:
    """An engine on the process environment; offline, it is built without the key.

    Without the key the engine cannot fetch, which is what offline means; the
    snapshot it reads is the same file.
    """
    from .. import Engine, RetryPolicy

    native_offline = offline and _has_offline_mode(Engine)
    hidden = frozenset({API_KEY}) if offline and not native_offline else frozenset()
    env = Environment(os.environ if environ is None else environ, hidden)
    # Two attempts, not five: a person is waiting for the answer.
    policy = RetryPolicy(attempts=2, deadline=2 * timeout + 1.0)
    options: dict[str, Any] = {"offline": True} if native_offline else {}
    engine = Engine(environ=env, timeout=timeout, retry_policy=policy, **options)
    return Session(engine, env, offline=offline)


def _has_offline_mode(engine_class: type) -> bool:
    """Whether ``Engine(offline=True)`` exists: it keeps the key (and the ETag it seals)."""
    import inspect

    return "offline" in inspect.signature(engine_class).parameters


_FLAT_FIELDS = (
    ("org", "organization_name"),
    ("product", "product_name"),
    ("agent", "agent"),
    ("task_type", "task_type"),
)


def caller_metadata(args: Any) -> dict[str, Any]:
    """``usage_metadata`` for the caller the options describe; options win over ``--metadata``.

    Each option sets the key the library reads first for its dimension, so a
    value from ``--metadata`` under another spelling cannot shadow it.
    """
    metadata = _metadata_json(getattr(args, "metadata", None))
    for option, key in _FLAT_FIELDS:
        value = getattr(args, option, None)
        if value is not None:
            metadata[key] = value
    subscriber = {
        "id": getattr(args, "subscriber_id", None),
        "email": getattr(args, "subscriber_email", None),
    }
    credential = getattr(args, "credential", None)
    nested = metadata.get("subscriber")
    if isinstance(nested, dict):  # a nested subscriber hides the flat keys: extend it instead
        nested.update({key: value for key, value in subscriber.items() if value is not None})
        if credential is not None:
            nested["credential"] = {"name": credential, "value": credential}
    else:
        for key, value in subscriber.items():
            if value is not None:
                metadata[f"subscriber_{key}"] = value
        if credential is not None:
            metadata["subscriber_credential_name"] = credential
    if credential is not None:  # what a rule's legacy ``credential`` field is compared to
        metadata["subscriber_credential"] = credential
    return metadata


def _metadata_json(text: Optional[str]) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as problem:
        raise UsageError(f"--metadata is not JSON: {problem}") from None
    if not isinstance(value, dict):
        raise UsageError(f"--metadata must be a JSON object, not a {type(value).__name__}")
    return value


def has_caller(args: Any) -> bool:
    return getattr(args, "model", None) is not None or getattr(args, "provider", None) is not None
