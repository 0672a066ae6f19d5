"""LiteLLM, hooked, against a local fake OpenAI API: what conformance does not cover.

The checks every provider shares (blocked calls send nothing, ``usage_metadata=``
stripped, bypass, stacked layers, restore by identity) run from ``tables/litellm.py``
for the module functions and a Router's methods. Here: the model a call is checked
under, a Router refused once before its retries and fallbacks, every layer below
checked once, the Router's funnels reported, and the proxy guardrail.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any, Callable

import pytest

import enforcement
from enforcement import BudgetExceededError, Engine
from enforcement.hooks import litellm as hook
from enforcement.hooks._instrumentor import release

from .conformance import aconsume, consume
from .conftest import breached_rule
from .fake_openai import FakeOpenAI
from .litellm_clients import async_calls, litellm, quiet, settings, sync_calls

with quiet():
    from litellm import Router
    from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper
    from litellm.proxy._types import ProxyException, UserAPIKeyAuth
    from litellm.types.utils import (
        EmbeddingResponse,
        ImageResponse,
        ModelResponse,
        TextCompletionResponse,
    )

# LiteLLM's own models trip pydantic's ReadOnly warning, and older releases warn from inside
# about their own use of Python and pydantic: that is LiteLLM's business. A deprecation warning
# LiteLLM blames on its caller (a deprecated Router member used here) is still an error.
pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:pydantic._internal._generate_schema"),
    pytest.mark.filterwarnings(r"ignore::DeprecationWarning:litellm(\..*)?$"),
]

MESSAGES: Any = [{"role": "user", "content": "hello"}]  # litellm types each message
LITELLM_RELEASE = release(importlib.metadata.version("litellm"))
ACME = {"dimension": "ORGANIZATION", "operator": "IS", "value": "acme"}


@pytest.fixture(scope="module", autouse=True)
def litellm_settings() -> Iterator[None]:
    """Plain httpx clients (no aiohttp sessions left open) and no retries."""
    with settings():
        yield


# The Routers a test built: the SDK clients they cache are closed with LiteLLM's own.
_routers: list[Any] = []


@pytest.fixture(autouse=True)
def clean_clients(request: pytest.FixtureRequest) -> Iterator[None]:
    """LiteLLM and the Router cache the SDK clients they build: close them, leak no socket.

    A sync test gets an event loop of its own too (see ``sync_calls``).
    """
    if inspect.iscoroutinefunction(request.function):
        yield  # ``aclean`` closes them on the test's own loop
        return
    try:
        with sync_calls(_routers):
            yield
    finally:
        _routers.clear()


@pytest.fixture
async def aclean() -> AsyncIterator[None]:
    """Close the async clients made on this test's event loop, on that loop.

    Every call shares one ``aclient_session`` too (see ``async_calls``).
    """
    try:
        async with async_calls(_routers):
            yield
    finally:
        _routers.clear()


@pytest.fixture(autouse=True)
def no_guardrail_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """A guardrail built by one test must not hand another test's proxy calls to it."""
    monkeypatch.setattr(hook.INSTRUMENTOR, "proxy_guardrail_built", False)


@pytest.fixture
def api() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as running:
        yield running


@pytest.fixture
def routed(api: FakeOpenAI) -> dict[str, Any]:
    """Where every module-level call is sent: the fake, as an OpenAI-compatible base."""
    return {"api_base": api.base_url, "api_key": "sk-x"}


def _deployment(api: FakeOpenAI, group: str, model: str) -> dict[str, Any]:
    return {
        "model_name": group,
        "litellm_params": {"model": model, "api_base": api.base_url, "api_key": "sk-x"},
    }


@pytest.fixture
def router(api: FakeOpenAI) -> Router:
    """Model groups over the fake: ``chat`` and ``chat-2`` are one deployment each."""
    built: Router = Router(
        model_list=[
            _deployment(api, "chat", "openai/gpt-4o"),
            _deployment(api, "openai/gpt-4o", "openai/gpt-4o"),
            _deployment(api, "mixed", "openai/gpt-4o"),
            _deployment(api, "mixed", "openai/gpt-4o-mini"),
            _deployment(api, "embed", "openai/text-embedding-3-small"),
            _deployment(api, "draw", "openai/dall-e-3"),
        ],
        num_retries=0,
    )
    _routers.append(built)
    return built


@pytest.fixture
def retrying_router(api: FakeOpenAI) -> Router:
    """A Router that retries twice and falls back: a refusal must reach neither."""
    groups = {
        "chat": "openai/gpt-4o",
        "chat-2": "openai/gpt-4o-mini",
        "embed": "openai/text-embedding-3-small",
        "embed-2": "openai/text-embedding-3-large",
        "draw": "openai/dall-e-3",
        "draw-2": "openai/dall-e-2",
        "speak": "openai/tts-1",
        "speak-2": "openai/tts-1-hd",
        "listen": "openai/whisper-1",
        "listen-2": "openai/gpt-4o-transcribe",
        "rank": "cohere/rerank-english-v3.0",
        "rank-2": "cohere/rerank-multilingual-v3.0",
    }
    built: Router = Router(
        model_list=[_deployment(api, group, model) for group, model in groups.items()],
        num_retries=2,
        retry_after=5,
        fallbacks=[{group: [group + "-2"]} for group in groups if not group.endswith("-2")],
    )
    _routers.append(built)
    return built


@pytest.fixture
def checks(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    """Every check the hooks ask of ``engine`` (``acheck`` too): (model, error raised or None)."""
    seen: list[tuple[Any, Any]] = []
    check = engine.check

    def spy(*args: Any, **kwargs: Any) -> None:
        try:
            check(*args, **kwargs)
        except BaseException as error:
            seen.append((kwargs.get("model"), error))
            raise
        seen.append((kwargs.get("model"), None))

    monkeypatch.setattr(engine, "check", spy)
    return seen


# A module call, however it names its model, is checked under the model as LiteLLM routes it
# (a MODEL rule naming it without its route covers it too), and returns the SDK's own result.
# A Router group's model: see ROUTER_REFUSALS.
MODEL_CASES: dict[str, tuple[Callable[..., Any], str, type]] = {
    "completion(positional model)": (
        lambda **kw: litellm.completion("openai/gpt-4o", MESSAGES, **kw),
        "openai/gpt-4o",
        ModelResponse,
    ),
    "completion(custom_llm_provider)": (
        lambda **kw: litellm.completion(
            model="gpt-4o", messages=MESSAGES, custom_llm_provider="openai", **kw
        ),
        "openai/gpt-4o",
        ModelResponse,
    ),
    "acompletion(positional model)": (
        lambda **kw: litellm.acompletion("openai/gpt-4o", MESSAGES, **kw),
        "openai/gpt-4o",
        ModelResponse,
    ),
    "text_completion(instruct model)": (
        lambda **kw: litellm.text_completion(
            model="openai/gpt-3.5-turbo-instruct", prompt="hi", **kw
        ),
        "openai/gpt-3.5-turbo-instruct",
        TextCompletionResponse,
    ),
    "atext_completion(positional prompt, model)": (
        lambda **kw: litellm.atext_completion("hi", "openai/gpt-3.5-turbo-instruct", **kw),
        "openai/gpt-3.5-turbo-instruct",
        TextCompletionResponse,
    ),
    "embedding": (
        lambda **kw: litellm.embedding(model="openai/text-embedding-3-small", input="hi", **kw),
        "openai/text-embedding-3-small",
        EmbeddingResponse,
    ),
    "aembedding(positional model)": (
        lambda **kw: litellm.aembedding("openai/text-embedding-3-small", "hi", **kw),
        "openai/text-embedding-3-small",
        EmbeddingResponse,
    ),
    "image_generation(positional model)": (
        lambda **kw: litellm.image_generation("a cat", "openai/dall-e-3", **kw),
        "openai/dall-e-3",
        ImageResponse,
    ),
}


@pytest.mark.parametrize("case", list(MODEL_CASES))
async def test_a_call_is_checked_under_its_model_as_litellm_routes_it(
    case: str,
    engine: Engine,
    api: FakeOpenAI,
    routed: dict[str, Any],
    checks: list[tuple[Any, Any]],
    aclean: None,
) -> None:
    call, model, kind = MODEL_CASES[case]
    enforcement.instrument("litellm", engine=engine)

    async def made() -> Any:
        result = call(**routed)
        return await result if inspect.isawaitable(result) else result

    assert isinstance(await made(), kind)
    assert checks == [(model, None)]
    assert api.count == 1
    engine.load_payload([breached_rule(model=model.split("/", 1)[1])])
    with pytest.raises(BudgetExceededError):
        await made()
    assert api.count == 1


def test_a_stream_is_the_sdks_own_object(
    engine: Engine, api: FakeOpenAI, routed: dict[str, Any]
) -> None:
    enforcement.instrument("litellm", engine=engine)
    engine.load_payload([breached_rule(model="other")])
    stream = litellm.completion(model="openai/gpt-4o", messages=MESSAGES, stream=True, **routed)
    assert type(stream) is CustomStreamWrapper
    assert [chunk.choices[0].delta.content for chunk in stream][:2] == ["h", "i"]


def test_a_router_group_of_several_models_is_checked_under_its_name(
    engine: Engine, api: FakeOpenAI, router: Router
) -> None:
    enforcement.instrument("litellm", engine=engine)
    engine.load_payload([breached_rule(model="gpt-4o")])
    router.completion(model="mixed", messages=MESSAGES)  # which deployment serves it is unknown
    engine.load_payload([breached_rule(model="mixed")])
    with pytest.raises(BudgetExceededError):
        router.completion(model="mixed", messages=MESSAGES)
    assert api.count == 1


def test_a_router_call_through_every_layer_is_checked_once(
    engine: Engine, api: FakeOpenAI, router: Router
) -> None:
    """Router -> litellm.completion -> the openai SDK: one block, one shadow report."""
    enforcement.instrument("litellm", "openai", engine=engine)
    engine.load_payload([breached_rule()])
    with pytest.raises(BudgetExceededError):
        router.completion(model="chat", messages=MESSAGES)
    assert engine.status().counters["blocked"] == 1
    assert api.count == 0

    decisions: list[Any] = []
    engine.add_listener(decisions.append)
    engine.load_payload([breached_rule(shadowMode=True)])
    router.completion(model="chat", messages=MESSAGES)
    consume(router.completion(model="chat", messages=MESSAGES, stream=True))
    router.embedding(model="embed", input="hi")
    assert api.count == 3
    assert engine.flush_listeners()
    assert [d.kind for d in decisions] == ["shadow"] * 3


async def test_an_async_router_call_through_every_layer_is_checked_once(
    engine: Engine, api: FakeOpenAI, router: Router, routed: dict[str, Any], aclean: None
) -> None:
    enforcement.instrument("litellm", "openai", engine=engine)
    engine.load_payload([breached_rule()])
    with pytest.raises(BudgetExceededError):
        await router.acompletion(model="chat", messages=MESSAGES)
    assert engine.status().counters["blocked"] == 1
    assert api.count == 0

    decisions: list[Any] = []
    engine.add_listener(decisions.append)
    engine.load_payload([breached_rule(shadowMode=True)])
    await router.acompletion(model="chat", messages=MESSAGES)
    await aconsume(await router.acompletion(model="chat", messages=MESSAGES, stream=True))
    await router.aembedding(model="embed", input="hi")
    await litellm.acompletion(model="openai/gpt-4o", messages=MESSAGES, **routed)
    await litellm.aembedding(model="openai/text-embedding-3-small", input="hi", **routed)
    assert api.count == 5
    assert engine.flush_listeners()
    assert [d.kind for d in decisions] == ["shadow"] * 5


def test_module_calls_through_the_openai_sdk_are_checked_once(
    engine: Engine, api: FakeOpenAI, routed: dict[str, Any]
) -> None:
    enforcement.instrument("openai", "litellm", engine=engine)
    decisions: list[Any] = []
    engine.add_listener(decisions.append)
    engine.load_payload([breached_rule(shadowMode=True)])
    litellm.completion(model="openai/gpt-4o", messages=MESSAGES, **routed)
    consume(litellm.completion(model="openai/gpt-4o", messages=MESSAGES, stream=True, **routed))
    litellm.text_completion(model="openai/gpt-3.5-turbo-instruct", prompt="hi", **routed)
    litellm.embedding(model="openai/text-embedding-3-small", input="hi", **routed)
    assert api.count == 4
    assert engine.flush_listeners()
    assert [d.kind for d in decisions] == ["shadow"] * 4


def _namespaces(router: Router) -> dict[type, dict[str, Any]]:
    """The namespaces a Router call can be served from: the Router's classes and, from 1.110,
    its Rust core's (the class its methods are bound to)."""
    acompletion: Any = router.acompletion  # an overloaded method, bound
    bound_to = type(acompletion.__self__)
    return {klass: dict(vars(klass)) for klass in (*Router.__mro__, *bound_to.__mro__)}


def test_uninstrument_restores_the_original_functions(engine: Engine, router: Router) -> None:
    present = [name for name, _ in hook.ENTRY_POINTS if name in vars(litellm)]
    module_originals = {name: vars(litellm)[name] for name in present}
    router_originals = {name: getattr(Router, name) for name in hook.ROUTER_METHODS}
    namespaces = _namespaces(router)
    enforcement.instrument("litellm", engine=engine)
    enforcement.instrument("litellm", engine=engine)
    assert litellm.completion is not module_originals["completion"]
    assert not hasattr(litellm.completion.__wrapped__, "__wrapped__") or (
        litellm.completion.__wrapped__ is module_originals["completion"]
    )
    for name, original in router_originals.items():
        assert getattr(Router, name) is not original, name
        assert getattr(router, name).__wrapped__.__func__ is original, name  # wrapped once
    enforcement.uninstrument()
    for name, original in module_originals.items():
        assert vars(litellm)[name] is original, name
    for name, original in router_originals.items():
        assert getattr(Router, name) is original, name
        assert getattr(router, name).__func__ is original, name
    restored = _namespaces(router)
    assert restored.keys() == namespaces.keys()
    for klass, members in namespaces.items():
        assert restored[klass].keys() == members.keys(), klass
        for name, member in members.items():
            assert restored[klass][name] is member, (klass, name)


def test_every_router_funnel_is_hooked(engine: Engine) -> None:
    enforcement.instrument("litellm", engine=engine)
    status = hook.INSTRUMENTOR.status()
    assert (status.state, status.missing) == ("patched", ()), status


def test_a_missing_router_funnel_is_reported(
    engine: Engine,
    api: FakeOpenAI,
    router: Router,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(hook, "ROUTER_METHODS", (*hook.ROUTER_METHODS, "acomplete_the_future"))
    with caplog.at_level(logging.WARNING, logger="enforcement.hooks"):
        enforcement.instrument("litellm", engine=engine)
    status = hook.INSTRUMENTOR.status()
    assert status.state == "failed"
    assert status.missing == ("litellm.router.Router.acomplete_the_future",)
    assert [r.getMessage() for r in caplog.records if "acomplete_the_future" in r.getMessage()]
    engine.load_payload([breached_rule(model="gpt-4o")])  # what is there is still checked
    with pytest.raises(BudgetExceededError):
        router.completion(model="chat", messages=MESSAGES)
    assert api.count == 0


def test_sdk_errors_pass_through_unchanged(engine: Engine) -> None:
    enforcement.instrument("litellm", engine=engine)
    # Releases before 1.55 report a refused connection as an APIError.
    with pytest.raises((litellm.APIConnectionError, litellm.InternalServerError, litellm.APIError)):
        litellm.completion(
            model="openai/gpt-4o",
            messages=MESSAGES,
            api_base="http://127.0.0.1:9/v1",
            api_key="sk-x",
            max_retries=0,
        )


# Every Router method, as a refused call makes it, and the model it is checked under: its group's
# deployment (a MODEL rule names it without the ``openai/`` route).
ROUTER_REFUSALS: dict[str, tuple[Callable[[Router], Any], str]] = {
    "completion": (lambda r: r.completion(model="chat", messages=MESSAGES), "openai/gpt-4o"),
    "acompletion": (lambda r: r.acompletion("chat", MESSAGES), "openai/gpt-4o"),
    "text_completion": (lambda r: r.text_completion(model="chat", prompt="hi"), "openai/gpt-4o"),
    "atext_completion": (lambda r: r.atext_completion("chat", "hi"), "openai/gpt-4o"),
    "embedding": (
        lambda r: r.embedding(model="embed", input="hi"),
        "openai/text-embedding-3-small",
    ),
    "aembedding": (lambda r: r.aembedding("embed", "hi"), "openai/text-embedding-3-small"),
    "image_generation": (lambda r: r.image_generation("a cat", "draw"), "openai/dall-e-3"),
    "aimage_generation": (
        lambda r: r.aimage_generation(prompt="a cat", model="draw"),
        "openai/dall-e-3",
    ),
    "aspeech": (lambda r: r.aspeech(model="speak", input="hi", voice="alloy"), "openai/tts-1"),
    "atranscription": (
        lambda r: r.atranscription(model="listen", file=("a.wav", b"RIFF")),
        "openai/whisper-1",
    ),
    "arerank": (
        lambda r: r.arerank(model="rank", query="q", documents=["a", "b"]),
        "cohere/rerank-english-v3.0",
    ),
}


def test_every_router_method_has_a_refusal_case() -> None:
    assert set(ROUTER_REFUSALS) == set(hook.ROUTER_METHODS)


async def _refused(call: Callable[[], Any]) -> BudgetExceededError:
    with pytest.raises(BudgetExceededError) as raised:
        result = call()
        if inspect.isawaitable(result):
            await result
    return raised.value


@pytest.mark.parametrize("method", list(ROUTER_REFUSALS))
async def test_a_refused_router_call_is_refused_once_before_retries_and_fallbacks(
    method: str,
    engine: Engine,
    api: FakeOpenAI,
    retrying_router: Router,
    checks: list[tuple[Any, Any]],
    aclean: None,
) -> None:
    """num_retries=2 and a fallback for every group: one check, the error itself, no request."""
    call, model = ROUTER_REFUSALS[method]
    enforcement.instrument("litellm", "openai", engine=engine)
    engine.load_payload([breached_rule(model=model.split("/")[1], name="monthly-cap")])
    error = await _refused(lambda: call(retrying_router))
    assert [(checked, raised is not None) for checked, raised in checks] == [(model, True)]
    assert error is checks[0][1]  # the engine's error, unchanged: not wrapped, no text added
    assert type(error) is BudgetExceededError
    assert str(error) == "Request blocked by Revenium enforcement rule: monthly-cap"
    assert error.rule_name == "monthly-cap"
    assert engine.status().counters["blocked"] == 1
    assert api.count == 0


def test_a_refused_sync_router_call_is_refused_once(
    engine: Engine, api: FakeOpenAI, retrying_router: Router, checks: list[tuple[Any, Any]]
) -> None:
    """The same, in a plain sync caller, through every layer (Router, litellm, openai SDK)."""
    enforcement.instrument("litellm", "openai", engine=engine)
    engine.load_payload([breached_rule(provider="LITELLM")])
    for method in ("completion", "text_completion", "embedding", "image_generation"):
        call, _ = ROUTER_REFUSALS[method]
        checks.clear()
        with pytest.raises(BudgetExceededError) as raised:
            call(retrying_router)
        assert len(checks) == 1, method
        assert raised.value is checks[0][1], method
        assert str(raised.value) == "Request blocked by Revenium enforcement rule: cap-1"
    assert engine.status().counters["blocked"] == 4
    assert api.count == 0


def test_an_allowed_router_call_is_checked_once_through_retries(
    engine: Engine, api: FakeOpenAI, retrying_router: Router, checks: list[tuple[Any, Any]]
) -> None:
    enforcement.instrument("litellm", "openai", engine=engine)
    engine.load_payload([breached_rule(model="some-other-model")])
    assert isinstance(retrying_router.completion("chat", MESSAGES), ModelResponse)
    assert checks == [("openai/gpt-4o", None)]
    assert api.count == 1


# -- the proxy guardrail ----------------------------------------------------------


def _key(**fields: Any) -> UserAPIKeyAuth:
    return UserAPIKeyAuth(api_key="sk-1234", **fields)


def _request(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o", "messages": MESSAGES, **fields}


async def test_guardrail_allows_a_request_no_rule_covers(engine: Engine) -> None:
    guardrail = hook.EnforcementGuardrail(engine=engine)
    data = _request(metadata={"user_api_key_team_alias": "beta"})
    assert await guardrail.async_pre_call_hook(_key(), None, data, "acompletion") is data
    assert data == _request(metadata={"user_api_key_team_alias": "beta"})
    engine.load_payload([breached_rule(model="claude-3-5-sonnet")])
    assert await guardrail.async_pre_call_hook(_key(), None, data, "acompletion") is data


async def test_guardrail_answers_a_refused_request_with_429(engine: Engine) -> None:
    guardrail = hook.EnforcementGuardrail(engine=engine)
    engine.load_payload(
        [
            breached_rule(
                model="gpt-4o",
                rule_id=7,
                name="monthly-cap",
                threshold=500.0,
                currentValue=512.4,
                windowEnd="2099-01-01T00:00:00Z",
            )
        ]
    )
    with pytest.raises(ProxyException) as raised:
        await guardrail.async_pre_call_hook(_key(), None, _request(), "acompletion")
    error = raised.value
    assert error.code == "429"
    assert error.headers["x-should-retry"] == "false"
    assert isinstance(error.__cause__, BudgetExceededError)
    assert "monthly-cap" in error.message
    assert getattr(error, "status_code", None) == 429  # what older proxies send as the status
    body = json.loads(json.dumps(error.to_dict()))
    if "provider_specific_fields" in inspect.signature(ProxyException).parameters:
        detail = body["provider_specific_fields"]["error"]
    else:  # a proxy whose ProxyException has no details: they are on the exception
        assert error.provider_specific_fields is not None
        detail = error.provider_specific_fields["error"]
    assert detail["type"] == "budget_exceeded"
    assert detail["model"] == "gpt-4o"
    assert detail["message"] == error.message
    assert detail["budgets"] == [
        {
            "name": "monthly-cap",
            "ruleId": 7,
            "threshold": 500.0,
            "currentValue": 512.4,
            "resetsAt": "2099-01-01T00:00:00Z",
        }
    ]


async def test_guardrail_judges_the_caller_from_key_headers_and_body(engine: Engine) -> None:
    guardrail = hook.EnforcementGuardrail(engine=engine)
    engine.load_payload([breached_rule(filters=[ACME])])

    async def refused(key: UserAPIKeyAuth, data: dict[str, Any]) -> bool:
        try:
            await guardrail.async_pre_call_hook(key, None, data, "acompletion")
        except ProxyException:
            return True
        return False

    assert await refused(_key(team_alias="acme"), _request())
    assert not await refused(_key(team_alias="beta"), _request())
    headers = {"x-revenium-organization-name": "acme"}
    assert await refused(
        _key(team_alias="beta"), _request(proxy_server_request={"headers": headers})
    )
    data = _request(usage_metadata={"organizationName": "acme"})
    assert await refused(_key(), data)
    data = _request(usage_metadata={"organizationName": "beta"})
    assert not await refused(_key(team_alias="acme"), data)
    assert "usage_metadata" not in data  # never forwarded to the provider

    engine.load_payload(
        [
            breached_rule(
                filters=[{"dimension": "SUBSCRIBER", "operator": "IS", "value": "dev@x.io"}]
            )
        ]
    )
    headers = {"x-revenium-subscriber-email": "Dev@x.io"}
    assert await refused(_key(), _request(proxy_server_request={"headers": headers}))
    headers = {"x-revenium-subscriber-email": "ops@x.io"}
    assert not await refused(_key(), _request(proxy_server_request={"headers": headers}))
    if "user_email" in UserAPIKeyAuth.model_fields:  # older releases: no owner email on a key
        assert await refused(_key(user_email="Dev@x.io"), _request())
        assert not await refused(_key(user_email="ops@x.io"), _request())


async def test_guardrail_honours_bypass(engine: Engine, hook_env: dict[str, str]) -> None:
    guardrail = hook.EnforcementGuardrail(engine=engine)
    engine.load_payload([breached_rule()])
    hook_env["REVENIUM_BYPASS"] = "true"
    data = _request()
    assert await guardrail.async_pre_call_hook(_key(), None, data, "acompletion") is data


def test_guardrail_is_configurable_from_the_proxy_config() -> None:
    guardrail = hook.proxy_guardrail
    assert guardrail is hook.proxy_guardrail
    assert guardrail.default_on is True
    assert guardrail.guardrail_name == "revenium-enforcement"
    assert isinstance(guardrail, hook.EnforcementGuardrail)
    configured = hook.EnforcementGuardrail(
        guardrail_name="budget", event_hook="pre_call", default_on=False
    )
    assert (configured.guardrail_name, configured.default_on) == ("budget", False)


def test_with_a_guardrail_the_hooks_leave_proxy_calls_to_it(
    engine: Engine, api: FakeOpenAI, router: Router, routed: dict[str, Any]
) -> None:
    enforcement.instrument("litellm", "openai", engine=engine)
    engine.load_payload([breached_rule()])
    proxied = {"proxy_server_request": {"url": "/chat/completions", "headers": {}}}
    hook.EnforcementGuardrail(engine=engine)
    router.completion(model="chat", messages=MESSAGES, **proxied)
    assert api.count == 1
    with pytest.raises(BudgetExceededError):
        router.completion(model="chat", messages=MESSAGES)
    assert engine.status().counters["blocked"] == 1
