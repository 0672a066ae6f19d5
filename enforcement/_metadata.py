"""Call metadata from the surrounding code: ``with usage_metadata(...)``.

A hooked SDK call is judged on the merge of every enclosing
``usage_metadata`` scope (outer first) and the call's own
``usage_metadata=`` keyword, the call winning. ``organizationName`` and
``organization_name`` are one field: whichever layer set it last wins and the
other spelling is dropped, so the check never sees two values for one field.
The nested ``subscriber`` object merges field by field.

One ``usage_metadata`` object may be entered by many threads and tasks at
once (a module-level ``scope = usage_metadata(...)`` used in every request
handler): what it must undo on exit is kept per context, beside the scope
itself, never on the object.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Callable, Optional, TypeVar

__all__ = ["current_metadata", "merge_metadata", "usage_metadata"]

_F = TypeVar("_F", bound=Callable[..., Any])
_scope: contextvars.ContextVar[Optional[dict[str, Any]]] = contextvars.ContextVar(
    "enforcement_usage_metadata", default=None
)
# What each open ``with usage_metadata(...)`` of this context must undo, innermost last.
_Entered = tuple[tuple["usage_metadata", "contextvars.Token[Optional[dict[str, Any]]]"], ...]
_entered: contextvars.ContextVar[_Entered] = contextvars.ContextVar(
    "enforcement_usage_metadata_entered", default=()
)
_NESTED = frozenset({"subscriber"})


def _field(key: str) -> str:
    """One name per field, whatever its spelling: ``organization_name`` ~ ``organizationName``."""
    return key.replace("_", "").lower()


def _overlay(base: dict[str, Any], layer: Mapping[str, Any]) -> None:
    for key, value in layer.items():
        if not isinstance(key, str):
            continue
        name = _field(key)
        spelled = [k for k in base if _field(k) == name]
        previous = base.get(spelled[0]) if spelled else None
        for k in spelled:
            del base[k]
        if name in _NESTED and isinstance(value, Mapping) and isinstance(previous, Mapping):
            merged = dict(previous)
            _overlay(merged, value)
            value = merged
        elif isinstance(value, Mapping):
            value = dict(value)
        base[key] = value


def merge_metadata(*layers: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """Merge metadata layers, later ones winning field by field.

    >>> merge_metadata({"organization_name": "a", "subscriber": {"id": "1"}},
    ...                {"organizationName": "b", "subscriber": {"email": "x@y.z"}})
    {'organizationName': 'b', 'subscriber': {'id': '1', 'email': 'x@y.z'}}
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        if isinstance(layer, Mapping):
            _overlay(merged, layer)
    return merged


def current_metadata(call: Optional[Mapping[str, Any]] = None) -> Optional[Mapping[str, Any]]:
    """The metadata a call made here is judged on: enclosing scopes, then ``call``."""
    scope = _scope.get()
    if scope is None:
        return call if isinstance(call, Mapping) else None
    if not isinstance(call, Mapping) or not call:
        return scope
    return merge_metadata(scope, call)


class usage_metadata:  # used like a function: ``with usage_metadata(...)``
    """Attach metadata to every hooked call inside; a context manager and a decorator.

    >>> from enforcement._metadata import current_metadata
    >>> with usage_metadata(organizationName="acme", subscriber={"id": "u-42"}):
    ...     current_metadata({"organization_name": "beta"})
    {'subscriber': {'id': 'u-42'}, 'organization_name': 'beta'}

    As a decorator it works on plain and ``async`` functions alike, opening the
    scope for each call.
    """

    def __init__(self, fields: Optional[Mapping[str, Any]] = None, /, **kwargs: Any) -> None:
        self._fields = merge_metadata(fields, kwargs)

    def __enter__(self) -> dict[str, Any]:
        merged = merge_metadata(_scope.get(), self._fields)
        _entered.set((*_entered.get(), (self, _scope.set(merged))))
        return merged

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        entered = _entered.get()
        if not entered or entered[-1][0] is not self:
            raise RuntimeError("usage_metadata exited in a context that did not enter it last")
        _entered.set(entered[:-1])
        _scope.reset(entered[-1][1])

    def __call__(self, function: _F) -> _F:
        fields = self._fields
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_scoped(*args: Any, **kwargs: Any) -> Any:
                with usage_metadata(fields):
                    return await function(*args, **kwargs)

            return async_scoped  # type: ignore[return-value]

        @functools.wraps(function)
        def scoped(*args: Any, **kwargs: Any) -> Any:
            with usage_metadata(fields):
                return function(*args, **kwargs)

        return scoped  # type: ignore[return-value]
