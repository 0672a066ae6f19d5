"""The native Perplexity SDK, hooked, against a local fake API: what conformance does not cover.

The models each costly request is checked under (the reference's ``sonar``
default, a response's fallback list, an async completion's inner request),
the costly requests beyond chat and responses, and the free ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest
from perplexity import Perplexity

import enforcement
from enforcement import BudgetExceededError
from enforcement._providers import PERPLEXITY
from enforcement.hooks.perplexity import INSTRUMENTOR, models_of

from .conftest import RecordingEngine, breached_rule
from .fake_perplexity import FakePerplexity
from .tables.perplexity import MESSAGES, client, has


@pytest.fixture
def recording(recording: RecordingEngine) -> RecordingEngine:
    """The shared recording engine, with perplexity instrumented on it."""
    enforcement.instrument("perplexity", engine=recording)
    return recording


@pytest.fixture
def api() -> Iterator[FakePerplexity]:
    with FakePerplexity() as running:
        yield running


@pytest.fixture
def sdk(api: FakePerplexity) -> Iterator[Perplexity]:
    with client(api) as built:
        yield built


@pytest.mark.parametrize(
    ("path", "body", "models"),
    [
        ("/chat/completions", {"model": "sonar-pro"}, ("sonar-pro",)),
        ("/chat/completions", {}, ("sonar",)),  # the reference's default
        ("/chat/completions", {"model": ""}, ("sonar",)),
        ("/v1/responses", {"preset": "pro-search"}, ("sonar",)),
        ("/v1/responses", {"model": "openai/gpt-5.2"}, ("openai/gpt-5.2",)),
        (
            "/v1/responses",
            {"model": "sonar-pro", "models": ["sonar-pro", "openai/gpt-5.2", "openai/gpt-5.2"]},
            ("sonar-pro", "openai/gpt-5.2"),
        ),
        ("/v1/responses", {"models": ["sonar-pro"]}, ("sonar", "sonar-pro")),
        (
            "/async/chat/completions",
            {"request": {"model": "sonar-deep-research"}},
            ("sonar-deep-research",),
        ),
        ("/async/chat/completions", {"request": "junk"}, ("sonar",)),
        ("/v1/embeddings", {"model": "pplx-embed-v1-4b"}, ("pplx-embed-v1-4b",)),
        ("/v1/embeddings", {}, (None,)),
        ("/v1/batches", {"input_file_id": "f"}, (None,)),
    ],
)
def test_the_models_a_request_is_checked_under(
    path: str, body: dict[str, Any], models: tuple[Optional[str], ...]
) -> None:
    assert models_of(path, body) == models


class _Options:
    def __init__(
        self, method: str, url: str, json_data: Any = None, extra_json: Any = None
    ) -> None:
        self.method, self.url, self.json_data, self.extra_json = method, url, json_data, extra_json


@pytest.mark.parametrize(
    ("options", "judged"),
    [
        (_Options("post", "/chat/completions", {"model": "m"}), (PERPLEXITY, ("m",))),
        (_Options("post", "/chat/completions", {}, {"model": "x"}), (PERPLEXITY, ("x",))),
        (_Options("post", "/v1/embeddings?x=1", {"model": "e"}), (PERPLEXITY, ("e",))),
        (_Options("post", "/search", {"query": "q"}), None),
        (_Options("post", "/v1/decisions", {"model": "m"}), (PERPLEXITY, ("m",))),
        (_Options("get", "/async/chat/completions/1"), None),
        (_Options("get", "/v1/models"), None),
        (_Options("post", "/v1/files"), None),
        (_Options("post", "/v1/browser/sessions"), None),
        (_Options("post", "/v1/responses/r/cancel"), None),
        (_Options("post", "/v1/batches/b/cancel"), None),
        (_Options("post", "/v1/skills"), None),
        (object(), None),
        (_Options("post", "/chat/completions", ["not", "a", "body"]), (PERPLEXITY, ("sonar",))),
    ],
)
def test_which_requests_cost_money(options: Any, judged: Any) -> None:
    assert INSTRUMENTOR.judge(None, options) == judged


def since(resource: str, release: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not has(resource), reason=f"{resource}: perplexityai>={release}")


COSTLY: list[Any] = [
    (
        "async_.chat.completions.create",
        lambda c: c.async_.chat.completions.create(
            request={"model": "sonar", "messages": MESSAGES}
        ),
        "/async/chat/completions",
    ),
    pytest.param(
        "embeddings.create",
        lambda c: c.embeddings.create(model="pplx-embed-v1-0.6b", input="hi"),
        "/v1/embeddings",
        marks=since("embeddings", "0.30"),
    ),
    pytest.param(
        "contextualized_embeddings.create",
        lambda c: c.contextualized_embeddings.create(
            model="pplx-embed-context-v1-0.6b", input=[["hi"]]
        ),
        "/v1/contextualizedembeddings",
        marks=since("contextualized_embeddings", "0.30"),
    ),
]


@pytest.mark.parametrize(
    ("name", "call", "path"), COSTLY, ids=["async_", "embeddings", "contextualized_embeddings"]
)
def test_the_other_costly_requests_are_checked(
    recording: RecordingEngine,
    sdk: Perplexity,
    api: FakePerplexity,
    name: str,
    call: Callable[[Perplexity], Any],
    path: str,
) -> None:
    recording.load_payload([breached_rule(provider=PERPLEXITY)])
    with pytest.raises(BudgetExceededError):
        call(sdk)
    assert api.count == 0
    recording.load_payload([breached_rule(model="some-other-model")])
    assert call(sdk)
    assert api.paths == [path]


@since("responses", "0.24")
def test_a_call_without_a_model_is_checked_as_sonar(
    recording: RecordingEngine, sdk: Perplexity, api: FakePerplexity
) -> None:
    recording.load_payload([breached_rule(model="sonar")])
    with pytest.raises(BudgetExceededError):
        sdk.responses.create(input="hi")
    assert api.count == 0
    assert recording.seen == [("sonar", PERPLEXITY)]


def test_free_requests_pass_a_breached_cap(
    recording: RecordingEngine, sdk: Perplexity, api: FakePerplexity
) -> None:
    recording.load_payload([breached_rule()])
    tags: dict[str, Any] = {"usage_metadata": {"organizationName": "acme"}}
    assert sdk.async_.chat.completions.get("async-1").status == "COMPLETED"
    assert sdk.search.create(query="hi", **tags).results
    if has("browser"):  # since 0.30
        assert sdk.browser.sessions.create(**tags).session_id == "session-1"
    assert recording.seen == []
    assert api.paths[:2] == ["/async/chat/completions/async-1", "/search"]
    assert all(b"organizationName" not in request["raw"] for request in api.requests)
    assert all("x-enforcement" not in str(request["headers"]) for request in api.requests)


def test_the_hooks_report_patched(recording: RecordingEngine) -> None:
    status = enforcement.hook_status("perplexity")["perplexity"]
    assert status.state == "patched", status
    assert status.missing == ()
