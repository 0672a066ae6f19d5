"""fal-client, hooked, against a local fake fal.ai: what conformance does not cover.

The model names the checks use (the reference's ``fal_ai/...`` spelling),
the net under the public methods for module functions bound before
``instrument()``, the free calls, and realtime connections.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any, Optional

import fal_client
import pytest

import enforcement
from enforcement import BudgetExceededError
from enforcement._providers import FAL
from enforcement.hooks.fal import describe_request, model_name

from .conftest import RecordingEngine, breached_rule
from .fake_fal import FakeFal
from .tables.fal import ARGUMENTS, aclient, client

APP = "fal-ai/flux/dev"
SENDS_THROUGH_A_FUNCTION = hasattr(
    importlib.import_module("fal_client.client"), "_maybe_retry_request"
)
HAS_REALTIME = hasattr(fal_client.SyncClient, "realtime")
HAS_CLIENT_TIMEOUT = (
    "client_timeout" in inspect.signature(fal_client.SyncClient.subscribe).parameters
)
MODEL = "fal_ai/fal-ai/flux/dev"


@pytest.fixture
def recording(recording: RecordingEngine) -> RecordingEngine:
    """The shared recording engine, with fal instrumented on it."""
    enforcement.instrument("fal", engine=recording)
    return recording


@pytest.fixture
def api() -> Iterator[FakeFal]:
    with FakeFal() as running:
        yield running


@pytest.fixture
def sync(api: FakeFal) -> Iterator[fal_client.SyncClient]:
    with client(api) as built:
        yield built


@pytest.fixture
async def asynchronous(api: FakeFal) -> AsyncIterator[fal_client.AsyncClient]:
    async with aclient(api) as built:
        yield built


@pytest.mark.parametrize(
    ("application", "model"),
    [
        ("fal-ai/flux/dev", "fal_ai/fal-ai/flux/dev"),
        ("fal-ai/fast-sdxl/v2", "fal_ai/fal-ai/fast-sdxl/v2"),
        ("fal-ai/flux-pro/v1.1-ultra", "fal_ai/fal-ai/flux-pro/v1.1-ultra"),
        ("flux/dev", "fal_ai/fal-ai/flux/dev"),
        ("fal_ai/flux/dev", "fal_ai/fal-ai/flux/dev"),
        ("fal_ai/fal-ai/flux/dev", "fal_ai/fal-ai/flux/dev"),
        # Another owner's app gets the fal-ai/ segment too, as the reference spells it.
        ("bria/text-to-image/3.2", "fal_ai/fal-ai/bria/text-to-image/3.2"),
        ("workflows/me/my-flow", "fal_ai/fal-ai/workflows/me/my-flow"),
        ("", ""),
        (None, None),
        (42, None),
    ],
)
def test_model_names_match_the_reference(application: Any, model: Optional[str]) -> None:
    # Not compared with the reference's own function: importing revenium_middleware.fal
    # patches fal_client itself, under these tests.
    assert model_name(application) == model


@pytest.mark.parametrize(
    ("method", "url", "model"),
    [
        ("POST", "https://fal.run/fal-ai/flux/dev", MODEL),
        ("GET", "https://fal.run/fal-ai/flux/dev", MODEL),  # run(method="GET") runs the app too
        ("POST", "https://fal.run/fal-ai/flux/dev/stream", MODEL),
        ("POST", "https://fal.run/fal-ai/flux/dev/extra", MODEL + "/extra"),
        ("POST", "https://queue.fal.run/fal-ai/flux/dev", MODEL),
        ("POST", "https://queue.fal.run/fal-ai/flux/dev?fal_webhook=https%3A%2F%2Fx", MODEL),
    ],
)
def test_the_net_reads_the_application_from_the_url(method: str, url: str, model: str) -> None:
    module = importlib.import_module("fal_client.client")
    call = describe_request(module)(None, (None, method, url), {})
    assert call is not None and call.provider == FAL and call.model == model


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "https://queue.fal.run/fal-ai/flux/requests/1/status"),
        ("GET", "https://queue.fal.run/fal-ai/flux/requests/1"),
        ("PUT", "https://queue.fal.run/fal-ai/flux/requests/1/cancel"),
        ("POST", "https://rest.fal.ai/tokens/"),
        ("POST", "https://rest.fal.ai/storage/upload/initiate?storage_type=gcs"),
        ("POST", "https://v3.fal.media/files/upload"),
    ],
)
def test_polls_uploads_and_tokens_are_free(method: str, url: str) -> None:
    module = importlib.import_module("fal_client.client")
    assert describe_request(module)(None, (None, method, url), {}) is None


def test_each_call_is_checked_once_under_the_references_model(
    recording: RecordingEngine, sync: fal_client.SyncClient, api: FakeFal
) -> None:
    sync.run(APP, ARGUMENTS, path="extra")  # the model is the application, not the URL
    timeout: dict[str, Any] = {"client_timeout": 30} if HAS_CLIENT_TIMEOUT else {}
    sync.subscribe("flux/dev", ARGUMENTS, **timeout)
    fal_client.submit(APP, ARGUMENTS)
    list(sync.stream(APP, ARGUMENTS))
    assert recording.seen == [(MODEL, FAL)] * 4
    assert api.count == 1 + 3 + 1 + 1


async def test_async_calls_are_checked_under_the_references_model(
    recording: RecordingEngine, asynchronous: fal_client.AsyncClient
) -> None:
    await asynchronous.run("fal_ai/flux/dev", ARGUMENTS)
    await fal_client.subscribe_async(APP, ARGUMENTS)
    assert [event async for event in asynchronous.stream(APP, ARGUMENTS)]
    assert recording.seen == [(MODEL, FAL)] * 3


@pytest.mark.skipif(not SENDS_THROUGH_A_FUNCTION, reason="fal-client<0.7 sends from its methods")
def test_a_function_bound_before_instrumenting_is_still_checked(
    hook_env: dict[str, str], sync: fal_client.SyncClient, api: FakeFal
) -> None:
    bound = {name: getattr(fal_client, name) for name in ("run", "submit", "stream")}
    engine = RecordingEngine(environ=hook_env)
    engine.load_payload([breached_rule(model=APP)])
    enforcement.instrument("fal", engine=engine)
    try:
        for call in (
            lambda: bound["run"](APP, ARGUMENTS),
            lambda: bound["submit"](APP, ARGUMENTS),
            lambda: list(bound["stream"](APP, ARGUMENTS)),
        ):
            with pytest.raises(BudgetExceededError):
                call()
        assert api.count == 0
        assert engine.seen == [(MODEL, FAL)] * 3
        engine.load_payload([breached_rule(model="fal-ai/other")])
        assert bound["run"](APP, ARGUMENTS)
        assert api.count == 1
    finally:
        enforcement.uninstrument()
        engine.close()


def test_results_polls_and_cancels_are_free_and_take_tags(
    recording: RecordingEngine, sync: fal_client.SyncClient, api: FakeFal
) -> None:
    handle = sync.submit(APP, ARGUMENTS)
    recording.load_payload([breached_rule()])
    tags: dict[str, Any] = {"usage_metadata": {"organizationName": "acme"}}
    assert sync.result(APP, handle.request_id, **tags)
    assert fal_client.result(APP, handle.request_id, **tags)
    assert handle.get(**tags)
    assert isinstance(sync.status(APP, handle.request_id), fal_client.Completed)
    with pytest.raises(Exception) as failed:  # not refused: the fake answers no PUT
        sync.cancel(APP, handle.request_id)
    assert not isinstance(failed.value, BudgetExceededError)
    assert recording.seen == [(MODEL, FAL)]
    assert all(b"organizationName" not in request["raw"] for request in api.requests)


async def test_async_results_are_free_and_take_tags(
    recording: RecordingEngine, asynchronous: fal_client.AsyncClient
) -> None:
    handle = await asynchronous.submit(APP, ARGUMENTS)
    recording.load_payload([breached_rule()])
    tags: dict[str, Any] = {"usage_metadata": {"organizationName": "acme"}}
    assert await asynchronous.result(APP, handle.request_id, **tags)
    assert await fal_client.result_async(APP, handle.request_id, **tags)
    assert await handle.get(**tags)


@pytest.mark.skipif(not HAS_REALTIME, reason="fal-client<0.10 has no realtime")
def test_a_realtime_connection_is_checked_when_asked_for(
    recording: RecordingEngine, sync: fal_client.SyncClient, api: FakeFal
) -> None:
    recording.load_payload([breached_rule(model=APP)])
    with pytest.raises(BudgetExceededError):
        sync.realtime(APP)
    with pytest.raises(BudgetExceededError):
        sync.ws_connect(APP, use_jwt=False)
    assert api.count == 0

    recording.load_payload([])
    connection = sync.realtime(APP)
    with pytest.raises(Exception) as refused, connection:  # the fake speaks no websocket
        pass
    assert not isinstance(refused.value, BudgetExceededError)
    assert api.paths[0] == "/rest/tokens/"
    assert api.paths[1].startswith("/realtime/fal-ai/flux/dev/realtime?")
    assert recording.seen == [(MODEL, FAL)] * 3  # the connection below passes unchecked


@pytest.mark.skipif(not HAS_REALTIME, reason="fal-client<0.10 has no realtime")
async def test_an_async_realtime_connection_is_checked_when_asked_for(
    recording: RecordingEngine, asynchronous: fal_client.AsyncClient, api: FakeFal
) -> None:
    recording.load_payload([breached_rule(model=APP)])
    with pytest.raises(BudgetExceededError):
        asynchronous.realtime(APP)
    assert api.count == 0

    recording.load_payload([])
    with pytest.raises(Exception) as refused:
        async with asynchronous.ws_connect(APP, use_jwt=False):
            pass
    assert not isinstance(refused.value, BudgetExceededError)
    assert recording.seen == [(MODEL, FAL)] * 2


def test_the_hooks_report_patched(recording: RecordingEngine) -> None:
    status = enforcement.hook_status("fal")["fal"]
    assert status.state == "patched", status
    assert status.missing == ()
