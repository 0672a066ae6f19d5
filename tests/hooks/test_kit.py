"""The hook kit on its own: status as data, versions, required funnels, the relay, the guard."""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Iterator
from typing import Any, Optional

import pytest

import enforcement
from enforcement import BudgetExceededError, Engine
from enforcement.hooks._base import Call, read_call
from enforcement.hooks._instrumentor import Instrumentor, release
from enforcement.hooks._relay import carry, relayed_metadata

from .conftest import breached_rule

MODULE = "enforcement_test_sdk"


class Client:
    """A stand-in SDK client: ``send`` is its funnel, ``create`` a public method above it."""

    def __init__(self) -> None:
        self.sent: list[Optional[Any]] = []

    def send(self, model: str) -> str:
        self.sent.append(relayed_metadata())
        return "sent"

    async def asend(self, model: str) -> str:
        self.sent.append(relayed_metadata())
        return "sent"

    def create(self, model: str) -> str:
        return self.send(model)

    def stream(self, model: str) -> Manager:
        return Manager(self, model)


class Manager:
    """Sends its request on ``__enter__``, as a stream manager does."""

    def __init__(self, client: Client, model: str) -> None:
        self.client, self.model = client, model

    def __enter__(self) -> Manager:
        self.client.send(self.model)
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


def describe(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Optional[Call]:
    model = args[0] if args else kwargs["model"]
    return None if model == "free" else Call("TESTSDK", model)


class TestInstrumentor(Instrumentor):
    __test__ = False
    name = "testsdk"
    module = MODULE
    distribution = "enforcement-test-sdk"
    minimum = (1, 2)
    below = (3,)
    provider = "TESTSDK"
    installed: Optional[str] = "2.0.1"
    funnels: tuple[str, ...] = ("send", "asend")

    def version(self) -> Optional[str]:
        return self.installed

    def patch(self, module: types.ModuleType) -> None:
        for funnel in self.funnels:
            self.hook(module.Client, funnel, describe, required=True)
        self.relay(module.Client, "create")
        self.relay(module.Client, "stream")


@pytest.fixture
def sdk() -> Iterator[types.ModuleType]:
    module = types.ModuleType(MODULE)
    module.Client = type("Client", (Client,), {"__module__": MODULE})  # type: ignore[attr-defined]
    sys.modules[MODULE] = module
    yield module
    del sys.modules[MODULE]


@pytest.fixture
def kit(engine: Engine) -> Iterator[TestInstrumentor]:
    instrumentor = TestInstrumentor()
    enforcement.hooks._base.set_hooked_engine(engine)
    yield instrumentor
    instrumentor.uninstrument()


def test_status_says_what_instrument_did(sdk: types.ModuleType, kit: TestInstrumentor) -> None:
    assert kit.status().state == "off"
    assert kit.instrumentation_dependencies() == ("enforcement-test-sdk >=1.2,<3",)
    kit.instrument()
    status = kit.status()
    assert (status.state, status.version, status.supported) == ("patched", "2.0.1", ">=1.2,<3")
    assert status.reason is None and status.missing == ()
    kit.uninstrument()
    assert kit.status().state == "off"
    assert "send" not in sdk.Client.__dict__  # inherited before, inherited again


def test_an_sdk_not_imported_yet_is_waiting(kit: TestInstrumentor) -> None:
    kit.instrument()
    assert kit.status().state == "waiting"


def test_a_missing_sdk_is_skipped(kit: TestInstrumentor) -> None:
    kit.installed = None
    assert kit.status().state == "skipped"
    assert kit.status().reason == "not installed"


def test_an_older_sdk_is_skipped_with_one_warning(
    sdk: types.ModuleType, kit: TestInstrumentor, caplog: pytest.LogCaptureFixture
) -> None:
    kit.installed = "1.1.9"
    kit.instrument()
    assert not kit.patched
    status = kit.status()
    assert status.state == "skipped"
    assert status.reason == "version 1.1.9 is older than the supported >=1.2,<3"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "testsdk" in warnings[0].getMessage()


def test_a_newer_sdk_is_patched_and_said_to_be_untested(
    sdk: types.ModuleType, kit: TestInstrumentor, caplog: pytest.LogCaptureFixture
) -> None:
    kit.installed = "3.0.0"
    kit.instrument()
    status = kit.status()
    assert status.state == "patched"
    assert status.reason == "version 3.0.0 is newer than the tested >=1.2,<3"
    assert any("newer than the tested" in r.getMessage() for r in caplog.records)


def test_a_missing_funnel_fails_loudly_once(
    sdk: types.ModuleType,
    kit: TestInstrumentor,
    engine: Engine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kit.funnels = ("send", "asend", "gone")
    kit.instrument()
    status = kit.status()
    assert status.state == "failed"
    assert status.missing == (f"{MODULE}.Client.gone",)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        f"enforcement-test-sdk 2.0.1 has no {MODULE}.Client.gone; calls through it are not checked"
    ]
    engine.load_payload([breached_rule()])
    with pytest.raises(BudgetExceededError):  # what was found is still checked
        sdk.Client().send("m")


def test_a_patch_that_raises_leaves_the_sdk_untouched(
    sdk: types.ModuleType, kit: TestInstrumentor
) -> None:
    def explode(module: types.ModuleType) -> None:
        kit.hook(module.Client, "send", describe)
        raise RuntimeError("boom")

    kit.patch = explode  # type: ignore[method-assign]
    kit.instrument()
    assert kit.status().state == "failed"
    assert kit.status().reason == "patching raised RuntimeError: boom"
    assert "send" not in sdk.Client.__dict__


async def test_the_guard_checks_costly_calls_and_skips_free_ones(
    sdk: types.ModuleType, kit: TestInstrumentor, engine: Engine
) -> None:
    kit.instrument()
    client = sdk.Client()
    engine.load_payload([breached_rule(model="m")])
    assert client.send("free") == "sent"
    assert client.send("other") == "sent"
    with pytest.raises(BudgetExceededError):
        client.send("m")
    with pytest.raises(BudgetExceededError):
        await client.asend("m")
    assert await client.asend("other") == "sent"
    assert len(client.sent) == 3


def test_the_relay_carries_metadata_down_and_into_deferred_sends(
    sdk: types.ModuleType, kit: TestInstrumentor, engine: Engine
) -> None:
    kit.instrument()
    engine.load_payload(
        [
            {
                **breached_rule(),
                "filters": [{"dimension": "ORGANIZATION", "operator": "IS", "value": "acme"}],
            }
        ]
    )
    client = sdk.Client()
    assert client.create("m", usage_metadata={"organizationName": "beta"}) == "sent"
    with pytest.raises(BudgetExceededError):
        client.create("m", usage_metadata={"organizationName": "acme"})
    manager = client.stream("m", usage_metadata={"organizationName": "acme"})
    assert isinstance(manager, Manager)
    with pytest.raises(BudgetExceededError), manager:
        pass
    with client.stream("m", usage_metadata={"organizationName": "beta"}) as entered:
        assert isinstance(entered, Manager)
    assert client.stream("m").__class__ is Manager  # no metadata: the SDK's own object
    assert relayed_metadata() is None  # nothing leaks past the call
    assert client.sent == [{"organizationName": "beta"}, {"organizationName": "beta"}]


def test_carry_leaves_plain_results_alone() -> None:
    assert carry("text", {"a": 1}) == "text"
    assert type(carry(iter([1]), None)) is not None


@pytest.mark.parametrize(
    ("version", "expected"),
    [("1.110.2", (1, 110, 2)), ("2.0.0rc1", (2, 0, 0)), ("v0.4", (0, 4)), ("dev", ())],
)
def test_release_reads_the_numeric_part(version: str, expected: tuple[int, ...]) -> None:
    assert release(version) == expected


def test_a_describer_that_raises_is_read_as_costly_with_no_model() -> None:
    def broken(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Optional[Call]:
        raise KeyError("model")

    assert read_call(broken, "TESTSDK", None, (), {}) == Call("TESTSDK", None)
