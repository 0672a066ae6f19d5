"""The openai SDK, hooked, against a local fake OpenAI API: what conformance does not cover.

The checks every provider shares (blocked calls send nothing, ``usage_metadata=``
stripped, bypass, stacked layers, restore by identity) run from ``tables/openai.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai import AzureOpenAI, OpenAI

import enforcement
from enforcement import BudgetExceededError, Engine
from enforcement.hooks import openai as hook

from .conftest import breached_rule
from .fake_openai import FakeOpenAI
from .tables import openai as table
from .tables.openai import MESSAGES


@pytest.fixture
def api() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as running:
        yield running


@pytest.fixture
def client(api: FakeOpenAI) -> Iterator[OpenAI]:
    with table.client(api) as built:
        yield built


def test_free_endpoints_are_not_checked(engine: Engine, client: OpenAI, api: FakeOpenAI) -> None:
    enforcement.instrument("openai", engine=engine)
    engine.load_payload([breached_rule()])
    client.moderations.create(input="hi")
    client.models.list()
    assert api.count == 2


def test_batches_are_checked_without_a_model(
    engine: Engine, client: OpenAI, api: FakeOpenAI
) -> None:
    enforcement.instrument("openai", engine=engine)
    engine.load_payload([breached_rule()])
    with pytest.raises(BudgetExceededError):
        client.batches.create(
            input_file_id="file-1", endpoint="/v1/chat/completions", completion_window="24h"
        )
    assert api.count == 0


def test_azure_is_checked_as_azure_on_the_methods_model(
    engine: Engine, api: FakeOpenAI, checks: list[tuple[Any, Any]]
) -> None:
    enforcement.instrument("openai", engine=engine)
    with AzureOpenAI(
        azure_endpoint=api.azure_endpoint,
        azure_deployment="prod-4o",
        api_key="k",
        api_version="2024-06-01",
        max_retries=0,
    ) as azure:
        assert hook.provider_label(azure) == "Azure"
        engine.load_payload([breached_rule(provider="Azure")])
        with pytest.raises(BudgetExceededError):
            azure.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert api.count == 0
        assert checks == [("Azure", "gpt-4o")]  # the reference checks kwargs["model"]
        engine.load_payload([breached_rule(provider="OPENAI")])
        azure.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert api.count == 1
        assert "/deployments/prod-4o/" in api.requests[0]["path"]


def test_sdk_errors_pass_through_unchanged(engine: Engine) -> None:
    enforcement.instrument("openai", engine=engine)
    with (
        OpenAI(base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0) as dead,
        pytest.raises(openai.APIConnectionError),
    ):
        dead.chat.completions.create(model="gpt-4o", messages=MESSAGES)


@pytest.mark.parametrize(
    ("base_url", "chat", "other"),
    [
        ("https://api.openai.com/v1", "OPENAI", "OPENAI"),
        ("https://api.x.ai/v1", "XAI", "XAI"),
        ("https://eu.api.x.ai/v1", "XAI", "XAI"),
        ("https://api.perplexity.ai", "PERPLEXITY", "OPENAI"),
        ("https://perplexity-proxy.example.com/v1", "PERPLEXITY", "OPENAI"),
        ("http://localhost:11434/v1", "OLLAMA", "OLLAMA"),
        ("http://ollama.internal:8080/v1", "OLLAMA", "OLLAMA"),
        ("https://myco.openai.azure.com/openai/v1", "Azure", "Azure"),
        ("https://notx.ai.example.com/v1", "OPENAI", "OPENAI"),
    ],
)
def test_openai_compatible_apis_report_their_provider(base_url: str, chat: str, other: str) -> None:
    """The reference's labels: Perplexity only for chat completions and Responses calls."""
    with OpenAI(base_url=base_url, api_key="sk-test") as client:
        assert hook.provider_label(client) == chat
        assert hook.provider_label(client, chat=False) == other


def test_a_client_class_named_for_azure_is_azure(api: FakeOpenAI) -> None:
    class AzureGateway(OpenAI):
        pass

    with AzureGateway(base_url=api.base_url, api_key="k") as client:
        assert hook.provider_label(client) == "Azure"


def test_azure_by_endpoint_only_for_a_class_whose_path_names_azure(
    api: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = type("Gateway", (OpenAI,), {"__module__": "corp.AzureGateways"})
    with (
        gateway(base_url=api.base_url, api_key="k") as client,
        OpenAI(base_url=api.base_url, api_key="k") as plain,
    ):
        assert hook.provider_label(client) == "OPENAI"
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://myco.openai.azure.com")
        assert hook.provider_label(client) == "Azure"
        assert hook.provider_label(plain) == "OPENAI"


def test_perplexity_labels_chat_and_responses_but_not_embeddings(
    engine: Engine, api: FakeOpenAI
) -> None:
    enforcement.instrument("openai", engine=engine)
    engine.load_payload([breached_rule(provider="PERPLEXITY")])
    with OpenAI(base_url=f"{api.origin}/perplexity/v1", api_key="k", max_retries=0) as pplx:
        with pytest.raises(BudgetExceededError):
            pplx.chat.completions.create(model="sonar", messages=MESSAGES)
        with pytest.raises(BudgetExceededError):
            pplx.responses.create(model="sonar", input="hi")
        assert api.count == 0
        pplx.embeddings.create(model="text-embedding-3-small", input="hi")  # OPENAI there
        assert api.count == 1
        engine.load_payload([breached_rule(provider="OPENAI")])
        pplx.chat.completions.create(model="sonar", messages=MESSAGES)
        assert api.count == 2


def test_a_rule_on_an_openai_compatible_provider_stops_the_call(
    engine: Engine, api: FakeOpenAI
) -> None:
    enforcement.instrument("openai", engine=engine)
    engine.load_payload([breached_rule(provider="XAI")])
    xai = OpenAI(base_url="https://api.x.ai/v1", api_key="sk-test", max_retries=0)
    with xai, pytest.raises(BudgetExceededError):
        xai.chat.completions.create(model="grok-4", messages=MESSAGES)
    with OpenAI(base_url=api.base_url, api_key="sk-test") as openai_client:
        openai_client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert api.count == 1
    with OpenAI(base_url=api.base_url, api_key="sk-test") as moved:
        moved.base_url = "https://api.x.ai/v1"  # type: ignore[assignment, unused-ignore]
        with pytest.raises(BudgetExceededError):
            moved.chat.completions.create(model="grok-4", messages=MESSAGES)
