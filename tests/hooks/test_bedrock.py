"""boto3's ``bedrock-runtime`` against a local fake Bedrock: what the conformance suite leaves out.

The model names a call is checked under (every spelling of a Bedrock model
id, compared with the reference's own), the operations and services that are
free, and a ``usage_metadata`` that never reaches botocore's validator.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ParamValidationError

import enforcement
from enforcement import BudgetExceededError, Engine
from enforcement.hooks._base import Call
from enforcement.hooks.bedrock import COSTLY_OPERATIONS, INSTRUMENTOR, describe, model_names

from .conftest import breached_rule
from .fake_bedrock import FakeBedrock
from .tables.bedrock import BODY, MESSAGES, OPERATIONS, invoke

SONNET = "anthropic.claude-3-5-sonnet-20240620-v1:0"
US_SONNET = "us." + SONNET
ACCOUNT = "arn:aws:bedrock:us-east-1:123456789012"
FOUNDATION_ARN = "arn:aws:bedrock:us-east-1::foundation-model/" + SONNET
PROFILE_ARN = f"{ACCOUNT}:inference-profile/{US_SONNET}"
APPLICATION_ARN = f"{ACCOUNT}:application-inference-profile/a1b2c3d4e5f6"
PROVISIONED_ARN = f"{ACCOUNT}:provisioned-model/abcdef123456"
LATER_OPERATIONS = pytest.mark.skipif(
    not {"CountTokens", "ApplyGuardrail", "ListAsyncInvokes"} <= OPERATIONS,
    reason="this botocore predates CountTokens, ApplyGuardrail or ListAsyncInvokes",
)
ACME = {
    **breached_rule(),
    "filters": [{"dimension": "ORGANIZATION", "operator": "IS", "value": "acme"}],
}


@pytest.fixture
def api() -> Iterator[FakeBedrock]:
    with FakeBedrock() as running:
        yield running


def _client(api: FakeBedrock, service: str = "bedrock-runtime") -> Any:
    return boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url=api.base_url,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture
def client(api: FakeBedrock) -> Iterator[Any]:
    built = _client(api)
    try:
        yield built
    finally:
        built.close()


def names(model_id: str) -> list[Any]:
    """The model a call is checked under, and every other name of it, sorted."""
    model = model_names(model_id)
    return [str(model), sorted(getattr(model, "aliases", ()))]


# -- the model names ---------------------------------------------------------------

NAME_CASES: dict[str, tuple[str, list[str]]] = {
    # a bare foundation model id: itself, and the Claude model it serves
    SONNET: (SONNET, [SONNET, "claude-3-5-sonnet-20240620"]),
    # a cross-region inference profile: also the id Bedrock reports back
    US_SONNET: (US_SONNET, [SONNET, "claude-3-5-sonnet-20240620", US_SONNET]),
    "global.anthropic.claude-sonnet-4-5-20250929-v1:0": (
        "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        [
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            "claude-sonnet-4-5-20250929",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ],
    ),
    # ARNs that name their model are read as that model, and as written
    FOUNDATION_ARN: (SONNET, [SONNET, FOUNDATION_ARN, "claude-3-5-sonnet-20240620"]),
    PROFILE_ARN: (US_SONNET, [SONNET, PROFILE_ARN, "claude-3-5-sonnet-20240620"]),
    # ARNs that name no model are checked as written
    APPLICATION_ARN: (APPLICATION_ARN, [APPLICATION_ARN]),
    PROVISIONED_ARN: (PROVISIONED_ARN, [PROVISIONED_ARN]),
    f"{ACCOUNT}:custom-model/anthropic.claude-3-haiku-20240307-v1:0/x1": (
        f"{ACCOUNT}:custom-model/anthropic.claude-3-haiku-20240307-v1:0/x1",
        [
            "anthropic.claude-3-haiku-20240307-v1:0/x1",
            f"{ACCOUNT}:custom-model/anthropic.claude-3-haiku-20240307-v1:0/x1",
            "claude-3-haiku-20240307-v1:0/x1",
        ],
    ),
    # legacy Claude ids that name no Claude model of their own
    "anthropic.claude-v2:1": ("anthropic.claude-v2:1", ["anthropic.claude-v2:1"]),
    "anthropic.claude-instant-v1": (
        "anthropic.claude-instant-v1",
        ["anthropic.claude-instant-v1", "claude-instant-v1"],
    ),
    # other vendors' models: as written
    "amazon.nova-pro-v1:0": ("amazon.nova-pro-v1:0", ["amazon.nova-pro-v1:0"]),
    "us.meta.llama3-2-90b-instruct-v1:0": (
        "us.meta.llama3-2-90b-instruct-v1:0",
        ["us.meta.llama3-2-90b-instruct-v1:0"],
    ),
    "arn:aws:bedrock:us-west-2::foundation-model/amazon.titan-embed-text-v2:0": (
        "amazon.titan-embed-text-v2:0",
        [
            "amazon.titan-embed-text-v2:0",
            "arn:aws:bedrock:us-west-2::foundation-model/amazon.titan-embed-text-v2:0",
        ],
    ),
}


@pytest.mark.parametrize("model_id", list(NAME_CASES))
def test_a_model_id_is_checked_under_every_name_of_its_model(model_id: str) -> None:
    call = describe(None, ("Converse", {"modelId": model_id}), {})
    assert call is not None and call.provider == "AWS"
    assert (str(call.model), sorted(getattr(call.model, "aliases", ()))) == NAME_CASES[model_id]


_REFERENCE_NAMES = """
import json, sys
from revenium_middleware.anthropic.bedrock_model_names import (
    cap_model_names, recorded_bedrock_model_id)
out = {}
for model_id in json.loads(sys.argv[1]):
    model = cap_model_names(recorded_bedrock_model_id(model_id), model_id)
    out[model_id] = [str(model), sorted(model.aliases)]
print(json.dumps(out))
"""


def test_claude_model_names_are_the_references() -> None:
    """The names the reference's Bedrock transport checks a Claude call under, in its own process.

    Its hook checks only ids naming ``anthropic.``; for them the names must be the same.
    """
    pytest.importorskip("revenium_middleware")
    claude = [model_id for model_id in NAME_CASES if "anthropic." in model_id]
    done = subprocess.run(
        [sys.executable, "-c", _REFERENCE_NAMES, json.dumps(claude)],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "")},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    reference = json.loads(done.stdout.strip().splitlines()[-1])
    assert {model_id: names(model_id) for model_id in claude} == reference


class _NoMeta:
    meta = None


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        (("Converse",), {}),
        (("Converse", None), {}),
        (("Converse", "modelId"), {}),
        (("Converse", {"modelId": 5}), {}),
        (("Converse", {"modelId": ""}), {}),
        (("Converse", {"modelId": None}), {}),
        (("Converse", {"modelId": "arn:"}), {}),
        (("Converse", {"modelId": "arn:aws:bedrock:::inference-profile/"}), {}),
        (("Converse", {"modelId": "\x00:%/\u00e9" * 50}), {}),
        ((["Converse"], {"modelId": SONNET}), {}),
        ((None, {"modelId": SONNET}), {}),
        ((), {"operation_name": "InvokeModel", "api_params": {"modelId": SONNET}}),
    ],
)
def test_describe_never_raises(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for instance in (None, _NoMeta(), object()):
        call = describe(instance, args, kwargs)
        assert call is None or (
            call.provider == "AWS" and isinstance(call.model, (str, type(None)))
        )


def test_a_costly_call_without_a_readable_model_is_checked_with_none() -> None:
    assert describe(None, ("Converse", {"modelId": 5}), {}) == Call("AWS", None)
    assert describe(None, ("InvokeModel", {}), {}) == Call("AWS", None)


@pytest.mark.parametrize(
    "operation",
    [
        "CountTokens",
        "ApplyGuardrail",
        "InvokeGuardrailChecks",
        "ListAsyncInvokes",
        "GetAsyncInvoke",
    ],
)
def test_operations_that_run_no_model_are_free(operation: str) -> None:
    assert operation not in COSTLY_OPERATIONS
    assert describe(None, (operation, {"modelId": SONNET}), {}) is None


# -- through the real client -------------------------------------------------------


@pytest.mark.parametrize(
    ("model_id", "rule_model", "blocked"),
    [
        (US_SONNET, "claude-3-5-sonnet-20240620", True),
        (US_SONNET, SONNET, True),
        (FOUNDATION_ARN, SONNET, True),
        (FOUNDATION_ARN, "claude-3-5-sonnet-20240620", True),
        (PROFILE_ARN, US_SONNET, True),
        (PROFILE_ARN, PROFILE_ARN, True),
        (APPLICATION_ARN, APPLICATION_ARN, True),
        (APPLICATION_ARN, "claude-3-5-sonnet-20240620", False),
        (SONNET, "claude-3-haiku-20240307", False),
        ("amazon.nova-pro-v1:0", "amazon.nova-pro-v1:0", True),
    ],
)
def test_a_rule_on_any_name_of_the_model_stops_the_call(
    model_id: str,
    rule_model: str,
    blocked: bool,
    engine: Engine,
    client: Any,
    api: FakeBedrock,
) -> None:
    enforcement.instrument("bedrock", engine=engine)
    engine.load_payload([breached_rule(model=rule_model)])
    if blocked:
        with pytest.raises(BudgetExceededError):
            invoke(client, model_id)
        assert api.count == 0
    else:
        assert invoke(client, model_id)["type"] == "message"
        assert api.models == [model_id]  # the ARN reached Bedrock as the caller wrote it


@LATER_OPERATIONS
def test_usage_metadata_is_taken_from_the_parameters_on_every_operation(
    engine: Engine, client: Any, api: FakeBedrock
) -> None:
    enforcement.instrument("bedrock", engine=engine)
    engine.load_payload([ACME])
    with pytest.raises(BudgetExceededError):
        invoke(client, SONNET, usage_metadata={"organizationName": "acme"})
    assert invoke(client, SONNET, usage_metadata={"organizationName": "beta"})["type"] == "message"
    # free operations accept the keyword too, and never send it
    client.count_tokens(
        modelId=SONNET,
        input={"converse": {"messages": MESSAGES}},
        usage_metadata={"organizationName": "acme"},
    )
    client.list_async_invokes(usage_metadata={"organizationName": "acme"})
    # a value that is not a mapping is no metadata, and is removed all the same
    assert invoke(client, SONNET, usage_metadata="acme")["type"] == "message"
    assert api.count == 4
    assert all(b"usage_metadata" not in r["raw"] and b"acme" not in r["raw"] for r in api.requests)


def test_the_callers_parameters_are_not_edited(engine: Engine, client: Any) -> None:
    enforcement.instrument("bedrock", engine=engine)
    params = {"modelId": SONNET, "body": BODY, "usage_metadata": {"organizationName": "b"}}
    assert client._make_api_call("InvokeModel", params)["contentType"] == "application/json"
    assert client._make_api_call(operation_name="InvokeModel", api_params=params)
    assert params["usage_metadata"] == {"organizationName": "b"}


@LATER_OPERATIONS
def test_free_operations_pass_under_a_breached_rule(
    engine: Engine, client: Any, api: FakeBedrock
) -> None:
    enforcement.instrument("bedrock", engine=engine)
    engine.load_payload([breached_rule()])
    assert client.count_tokens(modelId=SONNET, input={"converse": {"messages": MESSAGES}})
    guardrail = client.apply_guardrail(
        guardrailIdentifier="g1",
        guardrailVersion="1",
        source="INPUT",
        content=[{"text": {"text": "hello"}}],
    )
    assert guardrail["action"] == "NONE"
    assert client.list_async_invokes()["asyncInvokeSummaries"] == []
    assert api.count == 3
    assert engine.status().counters["blocked"] == 0


def test_other_services_pass_straight_through(engine: Engine, api: FakeBedrock) -> None:
    enforcement.instrument("bedrock", engine=engine)
    engine.load_payload([breached_rule()])
    control_plane = _client(api, "bedrock")
    try:
        assert control_plane.list_foundation_models()["modelSummaries"] == []
        with pytest.raises(ParamValidationError):  # not ours: botocore judges it as ever
            control_plane.list_foundation_models(usage_metadata={"organizationName": "acme"})
    finally:
        control_plane.close()
    assert api.paths == ["/foundation-models"]


def test_a_client_made_before_instrumenting_is_checked(engine: Engine, client: Any) -> None:
    assert invoke(client, SONNET)
    engine.load_payload([breached_rule(provider="aws")])
    enforcement.instrument("bedrock", engine=engine)
    with pytest.raises(BudgetExceededError):
        invoke(client, SONNET)
    enforcement.uninstrument("bedrock")
    assert invoke(client, SONNET)


def test_status_names_botocore(engine: Engine) -> None:
    enforcement.instrument("bedrock", engine=engine)
    status = enforcement.hook_status("bedrock")["bedrock"]
    assert (status.state, status.distribution, status.missing) == ("patched", "botocore", ())
    assert status.reason is None
    assert INSTRUMENTOR.instrumentation_dependencies() == ("botocore >=1.31.57,<2",)


_IMPORTED_LATER = """
import json, sys
import enforcement
from enforcement import BudgetExceededError, Engine
engine = Engine(environ={"REVENIUM_CIRCUIT_BREAKER_ENABLED": "true", "REVENIUM_CACHE_DIR": "off"})
engine.load_payload(json.loads(sys.argv[2]))
enforcement.instrument("bedrock", engine=engine)
assert enforcement.hook_status("bedrock")["bedrock"].state == "waiting"
import boto3
client = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=sys.argv[1],
                      aws_access_key_id="x", aws_secret_access_key="x")
try:
    client.invoke_model(modelId=sys.argv[3], body=b"{}")
except BudgetExceededError as refusal:
    print(refusal.rule_name)
finally:
    client.close()
"""


def test_boto3_imported_after_instrument_is_checked(api: FakeBedrock) -> None:
    rules = json.dumps([breached_rule(model="claude-3-5-sonnet-20240620")])
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", _IMPORTED_LATER, api.base_url, rules, US_SONNET],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.getcwd()},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["cap-1"]
    assert api.count == 0
