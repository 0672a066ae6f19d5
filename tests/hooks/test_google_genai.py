"""The google-genai SDK, hooked, against a local fake Gemini API (Developer and Vertex AI)."""

from __future__ import annotations

import ssl
import types as pytypes
from collections.abc import AsyncIterator, Iterator
from typing import Any, Callable

import pytest
from google import genai
from google.auth import credentials as google_credentials
from google.genai import _api_client, errors, models
from google.genai import types as gtypes

import enforcement
from enforcement import BudgetExceededError, Engine

from .conftest import breached_rule
from .fake_google_genai import FakeGemini

pytestmark = [
    # The SDK's own warnings, not ours: its aiohttp session subclass, and Imagen's deprecation.
    pytest.mark.filterwarnings("ignore:Inheritance class:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::google.genai._common.ExperimentalWarning"),
]

GEMINI = "gemini-2.5-flash"
ACME = [breached_rule(filters=[{"dimension": "ORGANIZATION", "operator": "IS", "value": "acme"}])]
HEADER = "x-enforcement-checked"


class FakeCredentials(google_credentials.Credentials):
    """Google credentials that never leave the machine: Vertex with a project needs some."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def refresh(self, request: Any) -> None:
        self.token = "fake-token"


@pytest.fixture
def api() -> Iterator[FakeGemini]:
    with FakeGemini() as running:
        yield running


# The fake speaks plain HTTP; one shared TLS context spares each client loading the CA bundle.
_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def _options(api: FakeGemini, under: str = "", **options: Any) -> gtypes.HttpOptions:
    return gtypes.HttpOptions(
        base_url=api.base_url + under,
        client_args={"verify": _TLS},
        async_client_args={"ssl": _TLS, "verify": _TLS},
        **options,
    )


@pytest.fixture
def client(api: FakeGemini) -> Iterator[genai.Client]:
    with genai.Client(api_key="k", http_options=_options(api)) as built:
        yield built


@pytest.fixture
def vertex(api: FakeGemini) -> Iterator[genai.Client]:
    """Vertex AI in express mode: an API key, no project."""
    with genai.Client(vertexai=True, api_key="k", http_options=_options(api)) as built:
        yield built


@pytest.fixture
def vertex_project(api: FakeGemini) -> Iterator[genai.Client]:
    """Vertex AI with a project, a location and (fake) Google credentials."""
    with genai.Client(
        vertexai=True,
        project="p",
        location="us-central1",
        credentials=FakeCredentials(),
        http_options=_options(api),
    ) as built:
        yield built


def streamed(stream: Any) -> list[Any]:
    assert isinstance(stream, pytypes.GeneratorType)
    chunks = list(stream)
    assert [type(chunk) for chunk in chunks] == [gtypes.GenerateContentResponse] * 2
    return chunks


async def astreamed(stream: Any) -> list[Any]:
    assert isinstance(stream, pytypes.AsyncGeneratorType)
    chunks = [chunk async for chunk in stream]
    assert [type(chunk) for chunk in chunks] == [gtypes.GenerateContentResponse] * 2
    return chunks


VIDEO = gtypes.GenerateVideosSource(prompt="a cat")

# case -> (call(client, model, **kw), the model it uses, the type it returns, Vertex only)
SYNC_CASES: dict[str, tuple[Callable[..., Any], str, Any, bool]] = {
    "generate_content": (
        lambda c, m, **kw: c.models.generate_content(model=m, contents="hi", **kw),
        GEMINI,
        gtypes.GenerateContentResponse,
        False,
    ),
    "generate_content_stream": (
        lambda c, m, **kw: streamed(c.models.generate_content_stream(model=m, contents="hi", **kw)),
        GEMINI,
        list,
        False,
    ),
    "embed_content": (
        lambda c, m, **kw: c.models.embed_content(model=m, contents="hi", **kw),
        "gemini-embedding-001",
        gtypes.EmbedContentResponse,
        False,
    ),
    "generate_images": (
        lambda c, m, **kw: c.models.generate_images(model=m, prompt="a cat", **kw),
        "imagen-4.0-generate-001",
        gtypes.GenerateImagesResponse,
        True,
    ),
    "generate_videos": (
        lambda c, m, **kw: c.models.generate_videos(model=m, source=VIDEO, **kw),
        "veo-3.0-generate-001",
        gtypes.GenerateVideosOperation,
        True,
    ),
}


async def agenerate(c: genai.Client, m: str, **kw: Any) -> Any:
    return await c.aio.models.generate_content(model=m, contents="hi", **kw)


async def astream(c: genai.Client, m: str, **kw: Any) -> Any:
    return await astreamed(await c.aio.models.generate_content_stream(model=m, contents="hi", **kw))


async def aembed(c: genai.Client, m: str, **kw: Any) -> Any:
    return await c.aio.models.embed_content(model=m, contents="hi", **kw)


async def aimages(c: genai.Client, m: str, **kw: Any) -> Any:
    return await c.aio.models.generate_images(model=m, prompt="a cat", **kw)


async def avideos(c: genai.Client, m: str, **kw: Any) -> Any:
    return await c.aio.models.generate_videos(model=m, source=VIDEO, **kw)


ASYNC_CASES: dict[str, Callable[..., Any]] = {
    "generate_content": agenerate,
    "generate_content_stream": astream,
    "embed_content": aembed,
    "generate_images": aimages,
    "generate_videos": avideos,
}


def client_for(case: str, request: pytest.FixtureRequest) -> genai.Client:
    vertex_only = SYNC_CASES[case][3]
    built: genai.Client = request.getfixturevalue("vertex" if vertex_only else "client")
    return built


@pytest.mark.parametrize("case", list(SYNC_CASES))
def test_sync_call_is_checked_before_it_is_sent(
    case: str,
    engine: Engine,
    api: FakeGemini,
    hook_env: dict[str, str],
    request: pytest.FixtureRequest,
) -> None:
    call, model, returns, _ = SYNC_CASES[case]
    c = client_for(case, request)
    enforcement.instrument("google-genai", engine=engine)
    assert type(call(c, model)) is returns
    assert api.count == 1

    engine.load_payload([breached_rule(model="some-other-model")])
    call(c, model)
    engine.load_payload([breached_rule(provider="vertex")])  # no label of the reference's
    call(c, model)
    assert api.count == 3

    for blocking in (
        breached_rule(),
        breached_rule(model=model),
        breached_rule(provider="Google"),
        breached_rule(provider="GOOGLE"),
        breached_rule(model=model, provider="Google"),
    ):
        engine.load_payload([blocking])
        with pytest.raises(BudgetExceededError):
            call(c, model)
        assert api.count == 3

    hook_env["REVENIUM_BYPASS"] = "true"
    call(c, model)
    assert api.count == 4


@pytest.mark.parametrize("case", list(ASYNC_CASES))
async def test_async_call_is_checked_before_it_is_sent(
    case: str,
    engine: Engine,
    api: FakeGemini,
    hook_env: dict[str, str],
    request: pytest.FixtureRequest,
) -> None:
    call, (_, model, returns, _) = ASYNC_CASES[case], SYNC_CASES[case]
    c = client_for(case, request)
    enforcement.instrument("google-genai", engine=engine)
    async with c.aio:
        assert type(await call(c, model)) is returns
        engine.load_payload([breached_rule(model="some-other-model")])
        await call(c, model)
        assert api.count == 2

        for blocking in (
            breached_rule(),
            breached_rule(model=model),
            breached_rule(provider="Google"),
        ):
            engine.load_payload([blocking])
            with pytest.raises(BudgetExceededError):
                await call(c, model)
            assert api.count == 2

        hook_env["REVENIUM_BYPASS"] = "true"
        await call(c, model)
        assert api.count == 3


def test_a_stream_is_checked_when_it_is_made_not_when_it_is_read(
    engine: Engine, client: genai.Client, api: FakeGemini
) -> None:
    enforcement.instrument("google-genai", engine=engine)
    engine.load_payload([breached_rule(model=GEMINI)])
    with pytest.raises(BudgetExceededError):
        client.models.generate_content_stream(model=GEMINI, contents="hi")  # never iterated

    engine.load_payload(ACME)
    with enforcement.usage_metadata(organizationName="acme"), pytest.raises(BudgetExceededError):
        stream = client.models.generate_content_stream(model=GEMINI, contents="hi")
    stream = client.models.generate_content_stream(model=GEMINI, contents="hi")
    with enforcement.usage_metadata(organizationName="acme"):
        streamed(stream)  # judged where it was made, and not judged again
    assert api.count == 1
    assert HEADER not in api.requests[0]["headers"]


async def test_an_async_stream_is_checked_before_its_iterator_is_returned(
    engine: Engine, client: genai.Client, api: FakeGemini
) -> None:
    enforcement.instrument("google-genai", engine=engine)
    async with client.aio as aio:
        engine.load_payload([breached_rule(model=GEMINI)])
        with pytest.raises(BudgetExceededError):
            await aio.models.generate_content_stream(model=GEMINI, contents="hi")
        engine.load_payload(ACME)
        beta: dict[str, Any] = {"usage_metadata": {"organizationName": "beta"}}
        stream: AsyncIterator[Any] = await aio.models.generate_content_stream(
            model=GEMINI, contents="hi", **beta
        )
        with enforcement.usage_metadata(organizationName="acme"):
            await astreamed(stream)
    assert api.count == 1
    assert HEADER not in api.requests[0]["headers"]


@pytest.mark.parametrize(
    "config",
    [
        None,
        {"temperature": 0.5, "http_options": {"headers": {"x-mine": "1"}}},
        gtypes.GenerateContentConfig(
            temperature=0.5, http_options=gtypes.HttpOptions(headers={"x-mine": "1"})
        ),
    ],
    ids=["none", "dict", "model"],
)
def test_a_streams_config_is_neither_changed_nor_lost(
    config: Any, engine: Engine, client: genai.Client, api: FakeGemini
) -> None:
    enforcement.instrument("google-genai", engine=engine)
    before = repr(config)
    streamed(client.models.generate_content_stream(model=GEMINI, contents="hi", config=config))
    assert repr(config) == before
    sent = api.requests[0]
    assert HEADER not in sent["headers"]
    if config is not None:
        assert sent["headers"]["x-mine"] == "1"
        assert sent["body"]["generationConfig"]["temperature"] == 0.5


@pytest.mark.parametrize("case", ["generate_content", "generate_content_stream", "embed_content"])
def test_usage_metadata_keyword_is_used_and_stripped(
    case: str, engine: Engine, client: genai.Client, api: FakeGemini
) -> None:
    call, model, _, _ = SYNC_CASES[case]
    enforcement.instrument("google-genai", engine=engine)
    engine.load_payload(ACME)
    call(client, model, usage_metadata={"organizationName": "beta"})
    with pytest.raises(BudgetExceededError):
        call(client, model, usage_metadata={"organizationName": "acme"})
    with enforcement.usage_metadata(organizationName="acme"), pytest.raises(BudgetExceededError):
        call(client, model)
    with enforcement.usage_metadata(organizationName="acme"):
        call(client, model, usage_metadata={"organization_name": "beta"})  # the call wins
    assert api.count == 2
    for sent in api.requests:
        assert "usage_metadata" not in str(sent["body"])
        assert HEADER not in sent["headers"]


@pytest.mark.parametrize("case", ["generate_content", "generate_content_stream", "embed_content"])
async def test_async_usage_metadata_keyword_is_used_and_stripped(
    case: str, engine: Engine, client: genai.Client, api: FakeGemini
) -> None:
    call, model = ASYNC_CASES[case], SYNC_CASES[case][1]
    enforcement.instrument("google-genai", engine=engine)
    engine.load_payload(ACME)
    async with client.aio:
        await call(client, model, usage_metadata={"organizationName": "beta"})
        with pytest.raises(BudgetExceededError):
            await call(client, model, usage_metadata={"organizationName": "acme"})
        with (
            enforcement.usage_metadata(organizationName="acme"),
            pytest.raises(BudgetExceededError),
        ):
            await call(client, model)
    assert api.count == 1
    assert "usage_metadata" not in str(api.requests[0]["body"])


@pytest.mark.parametrize(
    ("spelling", "bare_rule_bites"),
    [
        (GEMINI, True),
        (f"models/{GEMINI}", True),
        (f"google/{GEMINI}", True),
        (f"publishers/google/models/{GEMINI}", False),
    ],
)
def test_a_method_is_checked_on_its_model_as_spelled(
    spelling: str,
    bare_rule_bites: bool,
    engine: Engine,
    vertex: genai.Client,
    api: FakeGemini,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As the reference checks it: the rule's own matching reads ``<prefix>/<model>``."""
    enforcement.instrument("google-genai", engine=engine)
    checks: list[tuple[Any, Any]] = []
    check = engine.check

    def spy(usage_metadata: Any = None, *, model: Any = None, provider: Any = None) -> None:
        checks.append((provider, model))
        check(usage_metadata, model=model, provider=provider)

    monkeypatch.setattr(engine, "check", spy)
    engine.load_payload([breached_rule(model=spelling)])
    with pytest.raises(BudgetExceededError):
        vertex.models.generate_content(model=spelling, contents="hi")
    assert checks == [("Google", spelling)]
    engine.load_payload([breached_rule(model=GEMINI)])
    if bare_rule_bites:
        with pytest.raises(BudgetExceededError):
            vertex.models.generate_content(model=spelling, contents="hi")
    else:
        vertex.models.generate_content(model=spelling, contents="hi")
    with pytest.raises(BudgetExceededError):
        vertex.batches.create(model=spelling, src="gs://bucket/input.jsonl")  # the funnel's path
    assert api.count == (0 if bare_rule_bites else 1)


def test_vertex_with_a_project_is_labelled_google(
    engine: Engine, vertex_project: genai.Client, api: FakeGemini
) -> None:
    """The reference labels both backends ``Google``."""
    enforcement.instrument("google-genai", engine=engine)
    engine.load_payload([breached_rule(provider="Google")])
    with pytest.raises(BudgetExceededError):
        vertex_project.models.generate_content(model=GEMINI, contents="hi")
    with pytest.raises(BudgetExceededError):
        vertex_project.models.generate_content_stream(model=GEMINI, contents="hi")
    with pytest.raises(BudgetExceededError):
        vertex_project.batches.create(model=GEMINI, src="gs://bucket/input.jsonl")
    assert api.count == 0
    engine.load_payload([breached_rule(provider="vertex")])
    response = vertex_project.models.generate_content(model=GEMINI, contents="hi")
    assert response.text == "hi"
    assert api.requests[0]["path"].startswith("/v1beta1/projects/p/locations/us-central1/")


async def test_async_vertex_with_a_project_is_labelled_google(
    engine: Engine, vertex_project: genai.Client, api: FakeGemini
) -> None:
    enforcement.instrument("google-genai", engine=engine)
    engine.load_payload([breached_rule(provider="Google", model=GEMINI)])
    async with vertex_project.aio as aio:
        with pytest.raises(BudgetExceededError):
            await aio.models.generate_content(model=GEMINI, contents="hi")
        with pytest.raises(BudgetExceededError):
            await aio.models.generate_content_stream(model=GEMINI, contents="hi")
    assert api.count == 0


def test_calls_beyond_models_are_checked_in_the_funnel(
    engine: Engine, client: genai.Client, api: FakeGemini
) -> None:
    enforcement.instrument("google-genai", engine=engine)
    engine.load_payload([breached_rule(model=GEMINI)])
    chat = client.chats.create(model=GEMINI)
    with pytest.raises(BudgetExceededError):
        chat.send_message("hi")
    with pytest.raises(BudgetExceededError):
        list(chat.send_message_stream("hi"))
    inline: Any = [{"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}]
    with pytest.raises(BudgetExceededError):
        client.batches.create(model=GEMINI, src=inline)
    assert api.count == 0
    engine.load_payload([breached_rule(model="gemini-2.5-pro")])
    assert type(client.batches.create(model=GEMINI, src=inline)) is gtypes.BatchJob
    assert api.requests[0]["path"].endswith(f"models/{GEMINI}:batchGenerateContent")


def test_free_endpoints_are_not_checked(
    engine: Engine, client: genai.Client, api: FakeGemini
) -> None:
    enforcement.instrument("google-genai", engine=engine)
    engine.load_payload([breached_rule()])
    client.models.count_tokens(model=GEMINI, contents="hi")
    client.models.get(model=GEMINI)
    assert api.count == 2


def test_one_user_call_is_checked_once_however_many_requests_it_sends(
    engine: Engine, client: genai.Client, api: FakeGemini
) -> None:
    def lookup() -> str:
        """Look something up."""
        return "found"

    enforcement.instrument("google-genai", engine=engine)
    engine.load_payload([breached_rule(shadowMode=True)])  # counts checks, blocks nothing
    response = client.models.generate_content(
        model=GEMINI, contents="hi", config=gtypes.GenerateContentConfig(tools=[lookup])
    )
    assert response.text == "hi"
    assert api.count == 2  # automatic function calling: asked, called lookup(), asked again
    assert engine.status().counters["shadow"] == 1
    streamed(client.models.generate_content_stream(model=GEMINI, contents="hi"))
    assert engine.status().counters["shadow"] == 2


def test_uninstrument_restores_the_original_functions(engine: Engine) -> None:
    patched = [
        (_api_client.BaseApiClient, "request"),
        (_api_client.BaseApiClient, "request_streamed"),
        (_api_client.BaseApiClient, "async_request"),
        (_api_client.BaseApiClient, "async_request_streamed"),
        (models.Models, "generate_content"),
        (models.Models, "generate_content_stream"),
        (models.Models, "embed_content"),
        (models.Models, "generate_images"),
        (models.Models, "generate_videos"),
        (models.AsyncModels, "generate_content"),
        (models.AsyncModels, "generate_content_stream"),
        (models.AsyncModels, "embed_content"),
        (models.AsyncModels, "generate_images"),
        (models.AsyncModels, "generate_videos"),
    ]
    originals = [owner.__dict__[name] for owner, name in patched]
    enforcement.instrument("google-genai", engine=engine)
    enforcement.instrument("google-genai", engine=engine)
    for (owner, name), original in zip(patched, originals):
        assert owner.__dict__[name] is not original
        assert owner.__dict__[name].__wrapped__ is original  # wrapped once, not twice
    enforcement.uninstrument()
    for (owner, name), original in zip(patched, originals):
        assert owner.__dict__[name] is original


def test_instrumenting_twice_checks_once(engine: Engine, client: genai.Client) -> None:
    enforcement.instrument("google-genai", engine=engine)
    enforcement.instrument("google-genai")
    engine.load_payload([breached_rule()])
    with pytest.raises(BudgetExceededError):
        client.models.generate_content(model=GEMINI, contents="hi")
    with pytest.raises(BudgetExceededError):
        client.models.generate_content_stream(model=GEMINI, contents="hi")
    assert engine.status().counters["blocked"] == 2


def test_sdk_errors_pass_through_unchanged(
    engine: Engine, client: genai.Client, api: FakeGemini
) -> None:
    enforcement.instrument("google-genai", engine=engine)
    with pytest.raises(ValueError, match="only supported in Gemini Enterprise"):
        client.models.generate_images(model="imagen-4.0-generate-001", prompt="a cat")
    with (
        genai.Client(
            api_key="k",
            http_options=_options(
                api, "missing/", retry_options=gtypes.HttpRetryOptions(attempts=1)
            ),
        ) as broken,
        pytest.raises(errors.APIError),
    ):
        broken.models.generate_content(model=GEMINI, contents="hi")
    assert api.count == 1
