"""A call's worst case read from its request: the prompt in tokens, roughly, and its output limit.

Cheap and never raising: the estimate sizes a hold the engine makes before
the call is sent, and is replaced by the usage the provider reports. So text
counts a token per four characters, and an image, audio clip or document a
flat :data:`MEDIA_TOKENS` (its bytes say nothing about its tokens). No
tokenizer is used: tiktoken downloads its encodings on first use, and a call
must never wait on the network for a guess that is replaced minutes later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from .._usage import Estimate

__all__ = ["CHARS_PER_TOKEN", "MEDIA_TOKENS", "estimate_from", "output_limit", "prompt_tokens"]

#: characters of text per token, the usual rule of thumb for English and code.
CHARS_PER_TOKEN = 4
#: what one image, audio clip or document is counted as.
MEDIA_TOKENS = 1000

# Keys whose value is media (base64, bytes or a URL), counted per item, not per character.
_MEDIA_KEYS = frozenset(
    {
        "image",
        "images",
        "image_url",
        "input_image",
        "input_audio",
        "audio",
        "inline_data",
        "inlineData",
        "file_data",
        "fileData",
        "document",
        "bytes",
        "video",
    }
)
# Part types that are media whatever their keys say (anthropic's ``source`` blocks).
_MEDIA_TYPES = frozenset({"image", "document", "input_image", "input_audio", "input_file"})
# A request is walked at most this deep and this wide: a guess need not read everything.
_MAX_DEPTH = 12
_MAX_NODES = 20_000


class _Walk:
    """Characters of text and pieces of media under one value."""

    __slots__ = ("chars", "media", "nodes")

    def __init__(self) -> None:
        self.chars = 0
        self.media = 0
        self.nodes = 0

    def visit(self, value: Any, depth: int = 0) -> None:
        self.nodes += 1
        if self.nodes > _MAX_NODES or depth > _MAX_DEPTH:
            return
        if isinstance(value, str):
            self.chars += len(value)
        elif isinstance(value, (bytes, bytearray)):
            self.media += 1
        elif isinstance(value, Mapping):
            self._mapping(value, depth)
        elif isinstance(value, (list, tuple)):
            for item in value:
                self.visit(item, depth + 1)
        elif hasattr(value, "model_dump"):  # a pydantic part (google-genai, ollama Message)
            self.visit(value.model_dump(exclude_none=True), depth + 1)

    def _mapping(self, value: Mapping[Any, Any], depth: int) -> None:
        if value.get("type") in _MEDIA_TYPES:
            self.media += 1
            return
        for key, item in value.items():
            if key in _MEDIA_KEYS:
                self.media += len(item) if isinstance(item, (list, tuple)) else 1
            else:
                self.visit(item, depth + 1)


def prompt_tokens(*parts: Any) -> int:
    """The tokens ``parts`` (messages, system, tools, contents...) are guessed to take."""
    walk = _Walk()
    for part in parts:
        if part is not None:
            walk.visit(part)
    return -(-walk.chars // CHARS_PER_TOKEN) + walk.media * MEDIA_TOKENS


def output_limit(*candidates: Any) -> Optional[int]:
    """The first positive integer among ``candidates``: the output limit the request sets."""
    for value in candidates:
        if type(value) is int and value > 0:
            return value
    return None


def estimate_from(body: Any, prompt_keys: tuple[str, ...], limit_keys: tuple[str, ...]) -> Estimate:
    """An :class:`Estimate` from a request body's prompt fields and output-limit fields."""
    if not isinstance(body, Mapping):
        return Estimate(0)
    prompt = prompt_tokens(*(body.get(key) for key in prompt_keys))
    return Estimate(prompt, output_limit(*(body.get(key) for key in limit_keys)))
