"""What a call says about itself, read lazily from its ``usage_metadata``.

A check against rules that carry no filters and no per-person breakdown reads
none of this, so the common allow path never touches the metadata. Every
reader mirrors how the reference SDK builds its metering record, because the
server counts spend against what that record carries.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any, Optional

from ._wire import normalize_email

__all__ = [
    "PLAIN_DIMENSION_KEYS",
    "CallFacts",
    "SubscriberEmail",
    "as_metadata",
    "caller_email",
    "first_set",
    "holds_any_key",
    "normalize_email",
    "raw_caller_email",
    "stored_email",
]

_SUBSCRIBER_STORED_LENGTH = 255
_UNSET: Any = object()
_CREDENTIAL_ALIAS_ENV = "REVENIUM_CREDENTIAL_ALIAS"
_EMPTY: Mapping[str, Any] = {}


class SubscriberEmail(str):
    """A SUBSCRIBER filter value that the server compares as an email."""

    __slots__ = ()


def _stored(value: Any) -> Any:
    """A subscriber id or email as the server stores it: text cut to 255 characters."""
    if isinstance(value, str) and len(value) > _SUBSCRIBER_STORED_LENGTH:
        return value[:_SUBSCRIBER_STORED_LENGTH]
    return value


def extract_subscriber(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The subscriber the metering record would carry: nested first, else the flat keys."""
    subscriber: dict[str, Any] = {}
    nested = metadata.get("subscriber")
    if isinstance(nested, dict):
        if nested.get("id"):
            subscriber["id"] = nested["id"]
        if nested.get("email"):
            subscriber["email"] = nested["email"]
        credential = nested.get("credential")
        if credential and isinstance(credential, dict):
            subscriber["credential"] = {
                "name": credential.get("name"),
                "value": credential.get("value"),
            }
    if not subscriber:
        if metadata.get("subscriber_id"):
            subscriber["id"] = metadata["subscriber_id"]
        if metadata.get("subscriber_email"):
            subscriber["email"] = metadata["subscriber_email"]
        if metadata.get("subscriber_credential_name") or metadata.get("subscriber_credential"):
            subscriber["credential"] = {
                "name": metadata.get("subscriber_credential_name"),
                "value": metadata.get("subscriber_credential"),
            }
    return subscriber


def _identity(metadata: Mapping[str, Any]) -> tuple[Any, Any]:
    """:func:`extract_subscriber`'s choice of id and email, falsy values read as unset."""
    nested = metadata.get("subscriber")
    if isinstance(nested, dict):
        subscriber_id, email = nested.get("id") or None, nested.get("email") or None
        if subscriber_id is not None or email is not None:
            return subscriber_id, email
        credential = nested.get("credential")
        if credential and isinstance(credential, dict):
            return None, None  # the nested subscriber is used, and it names nobody
    return metadata.get("subscriber_id") or None, metadata.get("subscriber_email") or None


# The metadata keys a filter dimension reads, first set wins (SUBSCRIBER and
# CREDENTIAL read the subscriber the metering record would carry instead).
PLAIN_DIMENSION_KEYS: Mapping[str, tuple[str, ...]] = {
    "AGENT": ("agent",),
    "TASK_TYPE": ("task_type", "taskType"),
    "PRODUCT": ("product_name", "productName", "product_id", "productId"),
    "ORGANIZATION": ("organization_name", "organizationName", "organization_id", "organizationId"),
}


def first_set(metadata: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    """The value under the first of ``keys`` that is not ``None``."""
    for key in keys:
        value = metadata.get(key)
        if value is not None:
            return value
    return None


def _has_identity(subscriber: Mapping[str, Any]) -> bool:
    for key in ("id", "email"):
        value = subscriber.get(key)
        if (value.strip() != "") if isinstance(value, str) else value is not None:
            return True
    return False


def _with_credential_alias(subscriber: dict[str, Any], alias: Any) -> dict[str, Any]:
    """The subscriber with the credential alias as its credential name, where the record would."""
    if not isinstance(alias, str) or not alias.strip() or _has_identity(subscriber):
        return subscriber
    credential = subscriber.get("credential")
    if credential is None:
        credential = {}
    if not isinstance(credential, dict):
        return subscriber
    value = credential.get("value")
    if credential.get("name") or (isinstance(value, str) and value != ""):
        return subscriber
    return {**subscriber, "credential": {**credential, "name": alias.strip()}}


def _id_key(value: Any) -> Optional[str]:
    """The ``groupValue`` text the server stores for a subscriber id, if any."""
    if isinstance(value, str):
        return value[:_SUBSCRIBER_STORED_LENGTH] or None
    if type(value) is int and value != 0:
        return str(value)
    return None


def _email_in(raw: Any, keys: AbstractSet[str], emails_among_them: bool) -> bool:
    """Whether an address, as given or normalized, is one of ``keys``."""
    if not isinstance(raw, str) or not raw:
        return False
    email = raw[:_SUBSCRIBER_STORED_LENGTH]
    if not emails_among_them and "@" in email:
        return False
    if email in keys:
        return True
    normalized = email.strip().lower()
    return bool(normalized) and normalized in keys


def as_metadata(usage_metadata: Any) -> Mapping[str, Any]:
    """The call's metadata, or none: a string, list or number is read as no metadata."""
    if type(usage_metadata) is dict or isinstance(usage_metadata, Mapping):
        return usage_metadata
    return _EMPTY


def holds_any_key(
    metadata: Mapping[str, Any], keys: AbstractSet[str], emails_among_them: bool
) -> bool:
    """Whether one of the caller's ``groupValue`` keys is in ``keys``: one set probe per key.

    ``emails_among_them`` is whether any of ``keys`` holds an ``@``; when
    none does, an address with one cannot match and is not normalized.
    Written out flat and read straight from the metadata: it runs on every
    call while anyone is over a grouped cap, and each helper call would cost
    as much as a probe.
    """
    nested = metadata.get("subscriber")
    if type(nested) is dict:  # _identity, inline for the usual caller
        subscriber_id, email = nested.get("id") or None, nested.get("email") or None
        if subscriber_id is None and email is None:
            subscriber_id, email = _identity(metadata)
    else:
        subscriber_id, email = _identity(metadata)
    if type(subscriber_id) is str:  # the usual id: the key is itself, as stored
        if subscriber_id[:_SUBSCRIBER_STORED_LENGTH] in keys:
            return True
    else:
        key = _id_key(subscriber_id)
        if key is None:
            key = _id_key(metadata.get("subscriber_id"))
        if key is not None and key in keys:
            return True
    flat = metadata.get("subscriber_email")
    if not emails_among_them:  # only an address stored without an "@" can be among the keys
        if type(email) is str and "@" in email[:_SUBSCRIBER_STORED_LENGTH]:
            email = None
        if type(flat) is str and "@" in flat[:_SUBSCRIBER_STORED_LENGTH]:
            flat = None
    if email is not None and _email_in(email, keys, emails_among_them):
        return True
    return flat is not None and _email_in(flat, keys, emails_among_them)


def caller_email(metadata: Mapping[str, Any]) -> Optional[str]:
    """:meth:`CallFacts.caller_email`, read straight from the metadata."""
    raw = raw_caller_email(metadata)
    return None if raw is None else stored_email(raw)


def stored_email(raw: str) -> Optional[str]:
    """An address as department maps key it: cut as the server stores it, then normalized."""
    return normalize_email(raw[:_SUBSCRIBER_STORED_LENGTH]) or None


def raw_caller_email(metadata: Mapping[str, Any]) -> Optional[str]:
    """The address :func:`caller_email` normalizes, as the caller sent it.

    A key a rule set can remember its department verdict by: the same text
    always normalizes to the same address, so a caller seen before costs one
    dict lookup instead of a normalization.
    """
    # _identity's address, then the flat one, the first that is text: a nested
    # address that is text always wins, and otherwise the flat one is next.
    nested = metadata.get("subscriber")
    if isinstance(nested, dict):
        email = nested.get("email")
        if isinstance(email, str) and email:
            return email
    flat = metadata.get("subscriber_email")
    return flat if isinstance(flat, str) and flat else None


class CallFacts:
    """One call's model, provider and metadata, each derived value computed once."""

    __slots__ = (
        "_credential",
        "_dimension_values",
        "_environ",
        "_group_keys",
        "_identity",
        "_subscriber",
        "metadata",
        "model",
        "provider",
    )

    def __init__(
        self,
        metadata: Optional[Mapping[str, Any]],
        model: Any,
        provider: Any,
        environ: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.metadata: Mapping[str, Any] = as_metadata(metadata)
        self.model = model
        self.provider = provider
        self._environ = environ
        self._subscriber: Optional[dict[str, Any]] = None
        self._identity: Optional[tuple[Any, Any]] = None
        self._credential: Any = _UNSET
        self._dimension_values: Optional[dict[str, Any]] = None
        self._group_keys: Optional[tuple[str, ...]] = None

    @property
    def subscriber(self) -> dict[str, Any]:
        if self._subscriber is None:
            self._subscriber = extract_subscriber(self.metadata)
        return self._subscriber

    def identity(self) -> tuple[Any, Any]:
        """The subscriber's id and email as :func:`extract_subscriber` picks them (``None``: unset).

        Read without building the subscriber dict: grouped rules and
        department maps ask only this, on every call a tripped rule covers.
        """
        identity = self._identity
        if identity is None:
            identity = self._identity = _identity(self.metadata)
        return identity

    def group_keys(self) -> tuple[str, ...]:
        """The caller's ``groupValue`` keys in lookup order: one id, then emails.

        Worked out once per call, however many grouped rules ask.
        """
        keys = self._group_keys
        if keys is None:
            keys = self._group_keys = tuple(self._read_group_keys())
        return keys

    def _id_key(self) -> Optional[str]:
        key = _id_key(self.identity()[0])
        return key if key is not None else _id_key(self.metadata.get("subscriber_id"))

    def _emails(self) -> tuple[Any, Any]:
        return self.identity()[1], self.metadata.get("subscriber_email")

    def _read_group_keys(self) -> list[str]:
        key = self._id_key()
        keys: list[str] = [] if key is None else [key]
        for raw in self._emails():
            email = _stored(raw)
            if isinstance(email, str) and email:
                normalized = normalize_email(email)
                if normalized:
                    keys.append(normalized)
                keys.append(email)
        return keys

    def holds_any_key(self, keys: AbstractSet[str], emails_among_them: bool) -> bool:
        """Whether one of the caller's :meth:`group_keys` is in ``keys`` (:func:`holds_any_key`)."""
        known = self._group_keys
        if known is not None:
            return not keys.isdisjoint(known)
        return holds_any_key(self.metadata, keys, emails_among_them)

    def caller_email(self) -> Optional[str]:
        """The normalized address department maps are keyed by: nested wins over flat."""
        return caller_email(self.metadata)

    def credential(self) -> dict[str, Any]:
        if self._credential is _UNSET:
            alias = _first_set_truthy(self.metadata, "credentialAlias", "credential_alias")
            if not alias and self._environ is not None:
                alias = self._environ.get(_CREDENTIAL_ALIAS_ENV)
            subscriber = _with_credential_alias(self.subscriber, alias)
            self._credential = subscriber.get("credential") or {}
        credential: dict[str, Any] = self._credential
        return credential

    def names_credential_only_by_value(self) -> bool:
        credential = self.credential()
        return credential.get("name") is None and credential.get("value") is not None

    def value(self, dimension: str) -> Any:
        """The call's value under a filter dimension, as its metering record carries it."""
        if dimension == "MODEL":
            return self.model
        if dimension == "PROVIDER":
            return self.provider
        values = self._dimension_values
        if values is None:
            values = self._dimension_values = {}
        elif dimension in values:
            return values[dimension]
        value = values[dimension] = self._read(dimension)
        return value

    def _read(self, dimension: str) -> Any:
        keys = PLAIN_DIMENSION_KEYS.get(dimension)
        if keys is not None:
            return first_set(self.metadata, keys)
        if dimension == "SUBSCRIBER":
            email = _stored(self.subscriber.get("email"))
            if isinstance(email, str) and email.strip():
                return SubscriberEmail(email)
            if email is not None and not isinstance(email, str):
                return email
            return _stored(self.subscriber.get("id"))
        if dimension == "CREDENTIAL":
            credential = self.credential()
            name = credential.get("name")
            return name if name is not None else credential.get("value")
        raise KeyError(dimension)


def _first_set_truthy(metadata: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = metadata.get(key)
        if value:
            return value
    return None
