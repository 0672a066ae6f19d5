"""The google-genai SDK, hooked, against a local fake Gemini API (Developer and Vertex AI).

What conformance does not cover: the checks every provider shares (blocked calls
send nothing, ``usage_metadata=`` stripped, bypass, stacked layers, restore by
identity) run from ``tables/google_genai.py``.
"""

from __future__ import annotations

import inspect
import types as pytypes
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from google import genai
from google.auth import credentials as google_credentials
from google.genai import errors
from google.genai import types as gtypes

import enforcement
from enforcement import BudgetExceededError, Engine

from .conftest import breached_rule
from .fake_google_genai import FakeGemini
from .tables import google_genai as table
from .tables.google_genai import http_options

pytestmark = [
    # The SDK's own warnings, not ours: its aiohttp session subclass, and Imagen's deprecation.
    pytest.mark.filterwarnings("ignore:Inheritance class:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::google.genai._common.ExperimentalWarning"),
]

GEMINI = table.TABLE.model
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


@pytest.fixture
def client(api: FakeGemini) -> Iterator[genai.Client]:
    with table.client(api) as built:
        yield built


@pytest.fixture
def vertex(api: FakeGemini) -> Iterator[genai.Client]:
    """Vertex AI in express mode: an API key, no project."""
    with genai.Client(vertexai=True, api_key="k", http_options=http_options(api)) as built:
        yield built


@pytest.fixture
def vertex_project(api: FakeGemini) -> Iterator[genai.Client]:
    """Vertex AI with a project, a location and (fake) Google credentials."""
    with genai.Client(
        vertexai=True,
        project="p",
        location="us-central1",
        credentials=FakeCredentials(),
        http_options=http_options(api),
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


# Vertex AI only, so not in the table (its client is the Developer API's): method -> model, type.
VERTEX_ONLY = {
    "generate_images": ("imagen-4.0-generate-001", gtypes.GenerateImagesResponse),
    "generate_videos": ("veo-3.0-generate-001", gtypes.GenerateVideosOperation),
}
ARGUMENTS: dict[str, dict[str, Any]] = {
    "generate_images": {"prompt": "a cat"},
    "generate_videos": {"source": gtypes.GenerateVideosSource(prompt="a cat")},
}


async def vertex_only(models: Any, method: str) -> Any:
    """``method`` of ``models`` (sync or ``aio``) on its model, awaited when it is async."""
    result = getattr(models, method)(model=VERTEX_ONLY[method][0], **ARGUMENTS[method])
    return await result if inspect.isawaitable(result) else result


@pytest.mark.parametrize("method", list(VERTEX_ONLY))
async def test_vertex_only_methods_are_checked_before_they_are_sent(
    method: str, engine: Engine, vertex: genai.Client, api: FakeGemini, hook_env: dict[str, str]
) -> None:
    model, returns = VERTEX_ONLY[method]
    enforcement.instrument("google-genai", engine=engine)
    async with vertex.aio as aio:
        for models in (vertex.models, aio.models):
            sent = api.count
            engine.load_payload([breached_rule(model="some-other-model")])
            assert type(await vertex_only(models, method)) is returns
            engine.load_payload([breached_rule(provider="vertex")])  # no label of the reference's
            await vertex_only(models, method)
            for blocking in (
                breached_rule(),
                breached_rule(model=model),
                breached_rule(provider="Google"),
                breached_rule(provider="GOOGLE"),
                breached_rule(model=model, provider="Google"),
            ):
                engine.load_payload([blocking])
                with pytest.raises(BudgetExceededError):
                    await vertex_only(models, method)
            assert api.count == sent + 2

        hook_env["REVENIUM_BYPASS"] = "true"
        await vertex_only(vertex.models, method)
        await vertex_only(aio.models, method)
    assert api.count == 6


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
    checks: list[tuple[Any, Any]],
) -> None:
    """As the reference checks it: the rule's own matching reads ``<prefix>/<model>``."""
    enforcement.instrument("google-genai", engine=engine)
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


def test_sdk_errors_pass_through_unchanged(
    engine: Engine, client: genai.Client, api: FakeGemini
) -> None:
    enforcement.instrument("google-genai", engine=engine)
    with pytest.raises(ValueError, match="only supported in Gemini Enterprise"):
        client.models.generate_images(model="imagen-4.0-generate-001", prompt="a cat")
    with (
        genai.Client(
            api_key="k",
            http_options=http_options(
                api, "missing/", retry_options=gtypes.HttpRetryOptions(attempts=1)
            ),
        ) as broken,
        pytest.raises(errors.APIError),
    ):
        broken.models.generate_content(model=GEMINI, contents="hi")
    assert api.count == 1
