"""The provider labels: the server's vocabulary, spelled as the reference SDK's hooks spell them.

A rule's PROVIDER filter compares the label a call is checked under with the
value an operator typed, ignoring case. A label of our own ("bedrock" where
the server says "AWS") is therefore a rule that never bites, so every hook
takes its label from here, and each constant names the reference hook that
uses it. The filters read the alias buckets and the vendor label sets from
here too, so hooks and matcher share one vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "ALIAS_BUCKETS",
    "ANTHROPIC",
    "AWS",
    "AZURE",
    "COHERE",
    "FAL",
    "FOUNDRY",
    "GOOGLE",
    "GOOGLE_LABELS",
    "HUGGINGFACE",
    "LITELLM",
    "MISTRAL",
    "OLLAMA",
    "OPENAI",
    "PERPLEXITY",
    "XAI",
    "XAI_LABELS",
]

#: the openai SDK against api.openai.com (and any host not named below); also
#: what the LangChain callback says for a vendor it has no label for.
OPENAI = "OPENAI"
#: the openai SDK's Azure clients, or any base URL naming azure.
AZURE = "Azure"
#: Ollama: its own SDK, or the openai SDK pointed at an Ollama server.
OLLAMA = "OLLAMA"
#: xAI through the openai SDK.
XAI = "XAI"
#: the anthropic SDK: first party, the AWS and Google Cloud gateways, Claude on
#: Vertex AI and the Bedrock Mantle client (no host below names them).
ANTHROPIC = "ANTHROPIC"
#: Amazon Bedrock: any anthropic client whose base URL is on amazonaws.com
#: (AnthropicBedrock's default), boto3's bedrock-runtime, LangChain's Bedrock models.
AWS = "AWS"
#: Microsoft Foundry's Anthropic client or host; counts toward ANTHROPIC caps too.
FOUNDRY = "Foundry"
#: Gemini: google-genai (either backend), the Vertex AI SDK, LangChain's Google models.
GOOGLE = "Google"
#: every LiteLLM call, with the model as LiteLLM routes it.
LITELLM = "LITELLM"
#: the native Perplexity SDK, and chat or Responses calls of the openai SDK
#: pointed at a base URL naming perplexity.
PERPLEXITY = "PERPLEXITY"
#: LangChain's Cohere, Hugging Face and Mistral models (the callback's own labels).
COHERE = "COHERE"
HUGGINGFACE = "HUGGINGFACE"
MISTRAL = "MISTRAL"
#: fal.ai's client, with the application id as the model.
FAL = "fal_ai"

#: A label also counts toward its alias target's caps, one way only (upper case).
ALIAS_BUCKETS: Mapping[str, frozenset[str]] = {
    "FOUNDRY": frozenset({"FOUNDRY", "ANTHROPIC"}),
    "CLAUDECODE": frozenset({"CLAUDECODE", "ANTHROPIC"}),
    "CLAUDECOWORK": frozenset({"CLAUDECOWORK", "ANTHROPIC"}),
    "CODEXCLI": frozenset({"CODEXCLI", "OPENAI"}),
    "GEMINICLI": frozenset({"GEMINICLI", "GOOGLE"}),
}

#: Labels whose calls may reach Gemini's or xAI's own model aliases (upper case).
GOOGLE_LABELS = frozenset({"GOOGLE", "GEMINICLI"})
XAI_LABELS = frozenset({"XAI"})
