"""LiteLLM's post-call path: one user call settled once, by the outermost hook that began it.

LiteLLM (and its Router) call the openai SDK underneath, against the local
fake OpenAI API; with both hooked, only LiteLLM's hook holds and settles.
"""

from __future__ import annotations

from typing import Any

import pytest

import enforcement
from enforcement import BudgetExceededError
from enforcement._usage import Usage

from .conftest import RecordingEngine, breached_rule
from .fake_openai import FAILING_MODEL, FakeOpenAI
from .litellm_clients import litellm, quiet
from .test_litellm import _routers, aclean, api, clean_clients, litellm_settings, routed

__all__ = ["aclean", "api", "clean_clients", "litellm_settings", "routed"]  # fixtures, shared

with quiet():
    from litellm import Router
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:pydantic._internal._generate_schema"),
    pytest.mark.filterwarnings(r"ignore::DeprecationWarning:litellm(\..*)?$"),
]

MESSAGES = [{"role": "user", "content": "hello"}]
CHAT = Usage(12, 5, cache_read_tokens=4, model="gpt-4o")


@pytest.fixture
def held(recording: RecordingEngine) -> RecordingEngine:
    recording.holding = True
    enforcement.instrument("litellm", "openai", engine=recording)
    return recording


@pytest.fixture
def router(api: FakeOpenAI) -> Router:
    params = {"model": "openai/gpt-4o", "api_base": api.base_url, "api_key": "sk-x"}
    built: Router = Router(model_list=[{"model_name": "chat", "litellm_params": params}])
    _routers.append(built)
    return built


def test_a_completion_settles_once_with_its_usage(
    held: RecordingEngine, api: FakeOpenAI, routed: dict[str, Any]
) -> None:
    litellm.completion(model="openai/gpt-4o", messages=MESSAGES, max_tokens=20, **routed)
    assert held.begun == [("openai/gpt-4o", "LITELLM")]  # the openai SDK below passed through
    assert held.settled == [CHAT]
    assert held.estimates[0].max_output_tokens == 20
    assert api.count == 1


def test_a_router_completion_settles_once(
    held: RecordingEngine, api: FakeOpenAI, router: Router
) -> None:
    router.completion(model="chat", messages=MESSAGES)
    assert len(held.begun) == len(held.settled) == 1
    assert held.settled[0] is not None and held.settled[0].output_tokens == 5


def test_a_stream_settles_from_its_usage_chunk(
    held: RecordingEngine, api: FakeOpenAI, routed: dict[str, Any]
) -> None:
    stream = litellm.completion(
        model="openai/gpt-4o",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        **routed,
    )
    assert isinstance(stream, CustomStreamWrapper)
    list(stream)
    assert len(held.settled) == 1
    assert held.settled[0] is not None and held.settled[0].output_tokens == 5


def test_a_stream_left_early_settles_none(
    held: RecordingEngine, api: FakeOpenAI, routed: dict[str, Any]
) -> None:
    stream = litellm.completion(model="openai/gpt-4o", messages=MESSAGES, stream=True, **routed)
    next(iter(stream))
    stream.close()
    assert held.settled == [None]


async def test_async_calls_and_streams_settle_once(
    held: RecordingEngine, api: FakeOpenAI, routed: dict[str, Any], aclean: None
) -> None:
    await litellm.acompletion(model="openai/gpt-4o", messages=MESSAGES, **routed)
    stream = await litellm.acompletion(
        model="openai/gpt-4o",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        **routed,
    )
    [chunk async for chunk in stream]
    assert len(held.begun) == len(held.settled) == 2
    assert all(usage is not None and usage.output_tokens == 5 for usage in held.settled)


def test_an_error_settles_none_and_raises_litellms_own(
    held: RecordingEngine, api: FakeOpenAI, routed: dict[str, Any]
) -> None:
    with pytest.raises(litellm.BadRequestError):
        litellm.completion(model=f"openai/{FAILING_MODEL}", messages=MESSAGES, **routed)
    assert held.settled == [None]


def test_a_blocked_call_sends_nothing_and_settles_nothing(
    held: RecordingEngine, api: FakeOpenAI, routed: dict[str, Any]
) -> None:
    held.load_payload([breached_rule()])
    with pytest.raises(BudgetExceededError):
        litellm.completion(model="openai/gpt-4o", messages=MESSAGES, stream=True, **routed)
    assert (api.count, held.settled) == (0, [])


def test_nothing_held_nothing_wrapped(
    held: RecordingEngine, api: FakeOpenAI, routed: dict[str, Any]
) -> None:
    held.holding = False
    stream = litellm.completion(model="openai/gpt-4o", messages=MESSAGES, stream=True, **routed)
    assert type(stream) is CustomStreamWrapper
    list(stream)
    assert held.settled == []
