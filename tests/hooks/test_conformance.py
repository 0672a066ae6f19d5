"""The conformance suite: every case of every provider table through the same checks."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import enforcement
from enforcement import BudgetExceededError
from enforcement.hooks import PROVIDERS
from enforcement.hooks._base import achecked, checked
from enforcement.hooks._instrumentor import _INHERITED

from ._fake_server import FakeServer
from .conformance import TABLES, Case, Table, load_table
from .conftest import RecordingEngine, breached_rule


def _tables() -> list[Any]:
    params = []
    for name in TABLES:
        try:
            table = load_table(name)
        except ModuleNotFoundError as missing:
            if (missing.name or "").partition(".")[0] in ("tests", "hooks", "enforcement"):
                raise  # a broken table, not a missing SDK: never skip it quietly
            params.append(pytest.param(None, id=name, marks=pytest.mark.skip(str(missing))))
            continue
        params.extend(pytest.param((table, case), id=f"{name}:{case.name}") for case in table.cases)
    return params


CASES = _tables()
ACME = {
    **breached_rule(),
    "filters": [{"dimension": "ORGANIZATION", "operator": "IS", "value": "acme"}],
}


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Iterator[tuple[Table, Case, FakeServer]]:
    table, case = request.param
    with table.fake() as server:
        yield table, case, server


class Caller:
    """Makes a table's call on the right client, sync or async, and counts what reached the fake."""

    def __init__(self, table: Table, case: Case, server: FakeServer, client: Any) -> None:
        self.table, self.case, self.server, self.client = table, case, server, client

    async def __call__(self, **kwargs: Any) -> Any:
        if self.case.is_async:
            return await self.case.call(self.client, self.table.model, **kwargs)
        return self.case.call(self.client, self.table.model, **kwargs)

    async def allowed(self, **kwargs: Any) -> None:
        before = self.server.count
        result = await self(**kwargs)
        assert self.case.returns(result), f"{self.case.name} returned {result!r}"
        assert self.server.count - before == self.case.requests

    async def refused(self, **kwargs: Any) -> BudgetExceededError:
        before = self.server.count
        with pytest.raises(BudgetExceededError) as refusal:
            await self(**kwargs)
        assert self.server.count == before, "a refused call reached the provider"
        return refusal.value


@pytest.fixture
async def caller(fake: tuple[Table, Case, FakeServer]) -> AsyncIterator[Caller]:
    table, case, server = fake
    async with contextlib.AsyncExitStack() as stack:
        if case.is_async:
            assert table.aclient is not None, f"{table.provider} has async cases, no aclient"
            client = await stack.enter_async_context(table.aclient(server))
        else:
            client = stack.enter_context(table.client(server))
        yield Caller(table, case, server, client)


def _metadata_leaks(server: FakeServer, table: Table) -> list[str]:
    leaks = []
    for request in server.requests:
        raw = request["raw"]
        for name in (*table.leaks, "organizationName", "acme-corp-org"):
            if name.encode() in raw:
                leaks.append(f"{request['path']}: {name}")
        for header in request["headers"]:
            if header.startswith("x-enforcement"):
                leaks.append(f"{request['path']}: header {header}")
    return leaks


pytestmark = pytest.mark.parametrize("fake", CASES, indirect=True)


async def test_checked_before_it_is_sent(
    caller: Caller, recording: RecordingEngine, hook_env: dict[str, str]
) -> None:
    table = caller.table
    assert enforcement.instrument(table.provider, engine=recording) == [table.provider]
    await caller.allowed()

    recording.load_payload([breached_rule(model="some-other-model")])
    await caller.allowed()
    recording.load_payload([breached_rule(provider="some-other-provider")])
    await caller.allowed()

    for rule in (
        breached_rule(),
        breached_rule(model=table.model),
        breached_rule(provider=table.label),
        breached_rule(provider=table.label.lower()),
    ):
        recording.load_payload([rule])
        await caller.refused()

    hook_env["REVENIUM_BYPASS"] = "true"
    await caller.allowed()


async def test_usage_metadata_is_used_and_stripped(
    caller: Caller, recording: RecordingEngine
) -> None:
    enforcement.instrument(caller.table.provider, engine=recording)
    recording.load_payload([ACME])
    await caller.allowed(usage_metadata={"organizationName": "beta"})
    refusal = await caller.refused(usage_metadata={"organizationName": "acme"})
    assert refusal.rule_name == "cap-1"
    with enforcement.usage_metadata(organizationName="acme"):
        await caller.refused()
        await caller.allowed(usage_metadata={"organizationName": "beta"})
    recording.load_payload([])
    await caller.allowed(usage_metadata={"organizationName": "acme-corp-org"})
    assert _metadata_leaks(caller.server, caller.table) == []


async def test_a_call_through_stacked_layers_is_checked_once(
    caller: Caller, recording: RecordingEngine
) -> None:
    enforcement.instrument(caller.table.provider, engine=recording)
    enforcement.instrument(caller.table.provider)  # idempotent, and keeps the engine
    await caller.allowed()
    assert len(recording.seen) == 1

    # An outer layer (LangChain, a Router) checked already: the hook passes straight through,
    # so a rule on this provider, which the outer check does not match, is not applied again.
    recording.seen.clear()
    recording.load_payload([breached_rule(provider=caller.table.label)])
    table, client = caller.table, caller.client
    if caller.case.is_async:
        result = await achecked(
            "an-outer-layer", None, None, lambda: caller.case.call(client, table.model)
        )
    else:
        result = checked(
            "an-outer-layer", None, None, lambda: caller.case.call(client, table.model)
        )
    assert caller.case.returns(result)
    assert len(recording.seen) == 1


async def test_uninstrument_restores_every_original(
    caller: Caller, recording: RecordingEngine
) -> None:
    provider = caller.table.provider
    module = __import__(PROVIDERS[provider], fromlist=["INSTRUMENTOR"])
    instrumentor = module.INSTRUMENTOR
    enforcement.instrument(provider, engine=recording)
    enforcement.instrument(provider, engine=recording)  # patches nothing more
    saved = list(instrumentor._saved)
    assert saved, f"{provider}: instrument() patched nothing"
    assert len({(id(owner), attribute) for owner, attribute, _ in saved}) == len(saved)
    for owner, attribute, original in saved:
        if original is not _INHERITED:
            wrapper = owner.__dict__[attribute]
            assert wrapper.__wrapped__ is original, f"{owner}.{attribute} wrapped twice"
    assert enforcement.hook_status(provider)[provider].state == "patched"
    enforcement.uninstrument(provider)
    for owner, attribute, original in saved:
        own = getattr(owner, "__dict__", {})
        if original is _INHERITED:
            assert attribute not in own, f"{owner}.{attribute} was inherited, now defined"
        else:
            assert own.get(attribute, getattr(owner, attribute)) is original
    recording.load_payload([breached_rule()])
    await caller.allowed()
