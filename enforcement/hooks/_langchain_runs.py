"""The LangChain runs in flight, and what a finished run used.

A run is checked when it starts and its request leaves later, from the
model's own code, so what the check produced (the guard the request leaves
under, the money held for it) waits in a bounded run table until the run's
first output (the guard is released) and its end or error (the spend is
settled, once, from the usage its ``LLMResult`` reports). A run that never
reports its end is released when the table evicts it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple, Optional

from .._fork import renew_after_fork
from .._usage import Estimate, Spend, Usage
from ._estimate import output_limit, prompt_tokens
from ._reentry import Hold
from ._streams import count, field, settle

__all__ = ["Run", "Runs", "estimate", "usage_of"]

logger = logging.getLogger("enforcement.hooks")

# Where a run's ``invocation_params`` say the most it may write, by integration.
_LIMIT_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "num_predict")


class Run(NamedTuple):
    """A run in flight: the guard its request leaves under, the money held for it."""

    hold: Hold
    spend: Optional[Spend]
    parent: Any


class Runs:
    """The runs in flight, by run id. Bounded: a run may never report its end.

    A run's guard is released at its first output; its spend is settled at
    its end or error, or released when the table evicts it.
    """

    def __init__(self, limit: int = 4096) -> None:
        self._lock = threading.Lock()
        self._runs: dict[Any, Run] = {}
        self._limit = limit
        renew_after_fork(self)

    def _after_fork_in_child(self) -> None:
        # The parent's runs run on threads the child does not have.
        self._lock = threading.Lock()
        self._runs = {}

    def start(self, run_id: Any, run: Run) -> None:
        with self._lock:
            self._runs[run_id] = run
            evicted = [self._pop_oldest() for _ in range(len(self._runs) - self._limit)]
        for old in evicted:
            _finish(old, None)  # never reported its end: release what it held

    def _pop_oldest(self) -> Run:
        return self._runs.pop(next(iter(self._runs)))

    def sent(self, run_id: Any) -> None:
        """The run's first output: its request is out, so the hooks below check again."""
        with self._lock:
            run = self._runs.get(run_id)
        if run is not None:
            run.hold.release()

    def finish(self, run_id: Any, response: Any = None) -> None:
        """The run's end (its ``LLMResult``) or error (None): settle it, once."""
        with self._lock:
            run = self._runs.pop(run_id, None)
        if run is not None:
            _finish(run, response)

    def abandon(self, hold: Hold, parent: Any) -> None:
        """Release the runs of a batch that will never run: a later prompt was refused.

        LangChain announces a batch's runs one after another and raises at the
        first refusal, reporting no end for those announced before it.
        """
        with self._lock:
            siblings = [
                run_id
                for run_id, run in self._runs.items()
                if run.hold is hold and run.parent == parent
            ]
            runs = [self._runs.pop(run_id) for run_id in siblings]
        for run in runs:
            _finish(run, None)

    def active_guard(self, run_ids: Iterable[Any]) -> Optional[Hold]:
        with self._lock:
            for run_id in run_ids:
                run = self._runs.get(run_id)
                if run is not None and run.hold:
                    return run.hold
        return None


def _finish(run: Run, response: Any) -> None:
    run.hold.release()
    if run.spend is not None:
        settle(run.spend, _usage(response))


def _usage(response: Any) -> Optional[Usage]:
    """:func:`usage_of`, never raising into LangChain's callback."""
    try:
        return usage_of(response)
    except Exception:
        logger.debug("Could not read a LangChain run's usage; releasing its hold", exc_info=True)
        return None


def _message_usage(generation: Any) -> Optional[Usage]:
    """A chat generation's ``AIMessage.usage_metadata``, LangChain's own usage record."""
    usage = field(generation, "message", "usage_metadata")
    if not isinstance(usage, Mapping):
        return None
    details = usage.get("input_token_details")
    details = details if isinstance(details, Mapping) else {}
    model = field(generation, "message", "response_metadata", "model_name")
    return Usage(
        count(usage.get("input_tokens")),
        count(usage.get("output_tokens")),
        cache_read_tokens=count(details.get("cache_read")),
        cache_write_tokens=count(details.get("cache_creation")),
        model=model if isinstance(model, str) and model else None,
    )


def _output_usage(llm_output: Any) -> Optional[Usage]:
    """``LLMResult.llm_output["token_usage"]``, the OpenAI-shaped record older integrations keep."""
    usage = field(llm_output, "token_usage")
    if not isinstance(usage, Mapping):
        return None
    model = field(llm_output, "model_name")
    return Usage(
        count(usage.get("prompt_tokens")),
        count(usage.get("completion_tokens")),
        cache_read_tokens=count(field(usage, "prompt_tokens_details", "cached_tokens")),
        model=model if isinstance(model, str) and model else None,
    )


def usage_of(response: Any) -> Optional[Usage]:
    """What a finished run (``on_llm_end``'s ``LLMResult``) used; None when it does not say.

    Each prompt's first generation that carries ``usage_metadata`` counts (its
    other candidates repeat the same total); ``llm_output["token_usage"]`` is
    read when no message carries any.
    """
    found = [
        usage
        for candidates in field(response, "generations") or ()
        for usage in [next(filter(None, map(_message_usage, candidates)), None)]
        if usage is not None
    ]
    if not found:
        return _output_usage(field(response, "llm_output"))
    return Usage(
        sum(usage.input_tokens for usage in found),
        sum(usage.output_tokens for usage in found),
        sum(usage.cache_read_tokens for usage in found),
        sum(usage.cache_write_tokens for usage in found),
        found[0].model,
    )


def estimate(prompt: Any, invocation_params: Any) -> Estimate:
    """A run's worst case, from its start event: the messages (or prompts) and output limit."""
    params = invocation_params if isinstance(invocation_params, Mapping) else {}
    texts = [getattr(item, "content", item) for item in _flat(prompt)]
    return Estimate(prompt_tokens(texts), output_limit(*(params.get(k) for k in _LIMIT_KEYS)))


def _flat(prompt: Any) -> list[Any]:
    """``on_chat_model_start``'s ``list[list[BaseMessage]]`` or ``on_llm_start``'s prompts."""
    if not isinstance(prompt, (list, tuple)):
        return [prompt]
    return [item for part in prompt for item in _flat(part)] if prompt else []
