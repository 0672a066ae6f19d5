"""The LiteLLM proxy guardrail, called the way the proxy calls it.

    python examples/litellm_proxy_guardrail.py

On a proxy, ``config.yaml`` names the guardrail::

    litellm_settings:
      callbacks: ["enforcement.hooks.litellm.proxy_guardrail"]

and the proxy awaits its ``async_pre_call_hook(key, cache, data, call_type)``
before every proxied call. Running a real proxy needs ``litellm[proxy]``
(FastAPI, uvicorn...), so this example does what the proxy does instead: it
builds the virtual key (``UserAPIKeyAuth``) and the request body and awaits
the hook. A refused request raises the proxy's ``ProxyException``, which the
proxy sends as HTTP 429 with ``x-should-retry: false`` and a body naming
the rule; an allowed request's body comes back unchanged.
"""

from __future__ import annotations

import asyncio
import json
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of LiteLLM's price map

from _example import control_plane, expect, loaded_engine
from litellm.proxy._types import UserAPIKeyAuth

from enforcement.hooks import litellm as litellm_hook
from enforcement.testing import make_filter, make_rule

CAP = make_rule(
    1,
    "acme team cap",
    breached=True,
    threshold=1000.0,
    current_value=1003.5,
    filters=[make_filter("ORGANIZATION", "IS", "acme")],
    deny_message="Ask your admin for more budget.",
)


def request(model: str, **headers: str) -> dict[str, object]:
    """A chat request as the proxy hands it to a pre-call hook."""
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
    body["proxy_server_request"] = {"headers": headers}
    return body


async def run() -> None:
    guardrail = litellm_hook.proxy_guardrail  # what the config line above loads
    acme_key = UserAPIKeyAuth(api_key="sk-virtual-1", team_alias="acme")
    other_key = UserAPIKeyAuth(api_key="sk-virtual-2", team_alias="globex")

    print("A request on acme's virtual key:")
    try:
        await guardrail.async_pre_call_hook(acme_key, None, request("gpt-4o"), "acompletion")
        refusal = None
    except Exception as raised:  # the proxy's ProxyException
        refusal = raised
    expect(refusal is not None, "refused")
    code = getattr(refusal, "code", None)
    headers = getattr(refusal, "headers", {}) or {}
    detail = getattr(refusal, "provider_specific_fields", {}) or {}
    print(f"  HTTP {code}, headers {headers}")
    print(f"  body: {json.dumps(detail)}")
    expect(str(code) == "429", "answered with 429")
    expect(headers.get("x-should-retry") == "false", "SDK clients are told not to retry")
    expect(detail["error"]["budgets"][0]["name"] == "acme team cap", "the body names the rule")

    print("Another team's key:")
    data = request("gpt-4o")
    answer = await guardrail.async_pre_call_hook(other_key, None, data, "acompletion")
    expect(answer is data, "allowed: the request goes on unchanged")

    print("Acme's key, but the caller named by header as another organization:")
    data = request("gpt-4o", **{"x-revenium-organization-name": "globex"})
    answer = await guardrail.async_pre_call_hook(acme_key, None, data, "acompletion")
    expect(answer is data, "the x-revenium-* header wins over the key's team: allowed")


def main() -> None:
    with control_plane([CAP]):
        loaded_engine()
        asyncio.run(run())


if __name__ == "__main__":
    main()
