"""What a fal call costs: one request, no tokens, settled once per call the user made."""

from __future__ import annotations

from collections.abc import Iterator

import fal_client
import pytest

import enforcement
from enforcement._usage import Estimate, Usage
from enforcement.hooks.fal import estimate, usage_of

from .conftest import RecordingEngine
from .fake_fal import FakeFal
from .tables.fal import ARGUMENTS, aclient, client

APP = "fal-ai/flux/dev"
ONE_REQUEST = Usage(0, 0)


def test_a_call_is_one_request_and_no_tokens() -> None:
    assert estimate(None, (APP, ARGUMENTS), {}) == Estimate(0, 0)
    assert usage_of({"images": []}) == ONE_REQUEST


@pytest.fixture
def holding(recording: RecordingEngine) -> RecordingEngine:
    recording.holding = True
    enforcement.instrument("fal", engine=recording)
    return recording


@pytest.fixture
def api() -> Iterator[FakeFal]:
    with FakeFal() as running:
        yield running


@pytest.fixture
def sync(api: FakeFal, holding: RecordingEngine) -> Iterator[fal_client.SyncClient]:
    with client(api) as built:
        yield built


def test_run_and_subscribe_settle_once_each(
    holding: RecordingEngine, sync: fal_client.SyncClient
) -> None:
    sync.run(APP, arguments=dict(ARGUMENTS))
    sync.subscribe(APP, arguments=dict(ARGUMENTS))  # its own submit is not settled again
    assert holding.settled == [ONE_REQUEST, ONE_REQUEST]
    assert holding.estimates == [Estimate(0, 0), Estimate(0, 0)]


async def test_async_run_and_subscribe_settle_once_each(
    holding: RecordingEngine, api: FakeFal
) -> None:
    async with aclient(api) as asynchronous:
        await asynchronous.run(APP, arguments=dict(ARGUMENTS))
        await asynchronous.subscribe(APP, arguments=dict(ARGUMENTS))
    assert holding.settled == [ONE_REQUEST, ONE_REQUEST]


def test_a_stream_is_one_request_settled_once(
    holding: RecordingEngine, sync: fal_client.SyncClient
) -> None:
    stream = sync.stream(APP, arguments=dict(ARGUMENTS))
    assert holding.settled == [ONE_REQUEST]  # counted where it is checked: when asked for
    assert list(stream)
    assert holding.settled == [ONE_REQUEST]


async def test_an_async_stream_is_one_request_settled_once(
    holding: RecordingEngine, api: FakeFal
) -> None:
    async with aclient(api) as asynchronous:
        assert [event async for event in asynchronous.stream(APP, arguments=dict(ARGUMENTS))]
    assert holding.settled == [ONE_REQUEST]
