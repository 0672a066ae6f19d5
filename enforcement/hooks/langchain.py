"""LangChain hooks: a callback handler that checks every chat model and LLM run.

LangChain has no request funnel of its own (each integration calls its
vendor's SDK), but every run announces ``on_chat_model_start`` /
``on_llm_start`` to its callbacks before the model is called, and a handler
with ``raise_error = True`` can refuse it there: the exception reaches the
caller unchanged and ``_generate`` / ``_stream`` never run.

``instrument("langchain")`` adds the handler to every run without the user
passing ``callbacks=``, by wrapping ``CallbackManager.configure`` and
``AsyncCallbackManager.configure``, which build every run's handler list.
(``register_configure_hook`` cannot be undone and reads a context variable,
which other threads would not see set.) A sync run gets the sync handler, an
async run the async one: a sync run drives an async handler on a throwaway
event loop and swallows what it raises.

One call is checked once. The vendor SDK under the model may be hooked too
(``langchain-openai`` calls the ``openai`` SDK), so a checked run holds the
kit's re-entrancy guard (a :class:`~enforcement.hooks._base.Hold`) until its
first output, end or error, and the SDK hook passes the request straight
through. Async completion LLMs announce their start in tasks of their own, so
``instrument()`` also wraps ``BaseLLM._agenerate_helper`` to carry the guard
into the model call.

Local spend: the start callback asks ``Engine.begin`` (estimating the run
from its messages and output limit), and the run's :class:`Spend` is settled
once, with the usage its ``LLMResult`` reports in ``on_llm_end`` (streams
included: LangChain aggregates the chunks), with ``None`` in ``on_llm_error``
(a stream closed early ends there too) and when the run table evicts a run
that never reported its end. The vendor SDK hook under a run settles
nothing: it passes the request through, as it does for the check.

The instrumentor owns the bookkeeping: the runs in flight (bounded) and the
handler classes, defined on first use and bound to its run table.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any, Callable, NamedTuple, Optional

import wrapt

from .._engine import Engine
from .._fork import renew_after_fork
from .._metadata import current_metadata, merge_metadata
from .._providers import (
    ANTHROPIC,
    AWS,
    AZURE,
    COHERE,
    GOOGLE,
    HUGGINGFACE,
    LITELLM,
    MISTRAL,
    OLLAMA,
    OPENAI,
    PERPLEXITY,
    XAI,
)
from .._usage import Estimate, Spend, Usage
from ._base import (
    Hold,
    Instrumentor,
    already_checked,
    aunder,
    held_guard,
    hold_guard,
    hooked_engine,
)
from ._estimate import output_limit, prompt_tokens
from ._streams import count, field, settle
from .openai import url_label

__all__ = [
    "INSTRUMENTOR",
    "PROVIDER_LABELS",
    "AsyncEnforcementCallbackHandler",  # noqa: F822 -- built on first use, see __getattr__
    "EnforcementCallbackHandler",  # noqa: F822
    "LangChainInstrumentor",
    "estimate",
    "usage_of",
]

logger = logging.getLogger("enforcement.hooks")

#: LangChain's provider key (a run's ``ls_provider``) -> the label the reference's
#: callback checks the run under; any other key, or none, is ``OPENAI``.
PROVIDER_LABELS: Mapping[str, str] = {
    "openai": OPENAI,
    "azure": AZURE,
    "anthropic": ANTHROPIC,
    "ollama": OLLAMA,
    "google_genai": GOOGLE,
    "google_vertexai": GOOGLE,
    "amazon_bedrock": AWS,
    "anthropic-bedrock": AWS,
    "cohere": COHERE,
    "huggingface": HUGGINGFACE,
    "mistral": MISTRAL,
    "litellm": LITELLM,
    "perplexity": PERPLEXITY,
    "anthropicvertex": ANTHROPIC,
}
# Chat models built on the openai SDK's chat completions (ChatOpenAI, AzureChatOpenAI,
# ChatXAI, ChatDeepSeek...). The reference's openai hook is always installed beside its
# callback and checks these itself, under the label of the client the model builds.
_OPENAI_CHAT_KEYS = frozenset(
    {"openai", "azure", "xai", "deepseek", "together", "cerebras", "upstage", "openai-mantle"}
)
# A run with no ``ls_provider``: the first of these in its ``_type`` or class name
# ("azure" before "openai": AzureChatOpenAI holds both).
_PROVIDER_MARKERS = ("azure", "anthropic", "ollama", "openai")
# Where a serialized model keeps the base URL of the client it builds.
_BASE_URL_KEYS = ("openai_api_base", "base_url", "xai_api_base")
_MODEL_KEYS = ("model", "model_name")
_HANDLER_NAMES = ("EnforcementCallbackHandler", "AsyncEnforcementCallbackHandler")
# Where a run's ``invocation_params`` say the most it may write, by integration.
_LIMIT_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "num_predict")


class _Run(NamedTuple):
    """A run in flight: the guard its request leaves under, the money held for it."""

    hold: Hold
    spend: Optional[Spend]
    parent: Any


class _Runs:
    """The runs in flight, by run id. Bounded: a run may never report its end.

    A run's guard is released at its first output; its spend is settled at
    its end or error, or released when the table evicts it.
    """

    def __init__(self, limit: int = 4096) -> None:
        self._lock = threading.Lock()
        self._runs: dict[Any, _Run] = {}
        self._limit = limit
        renew_after_fork(self)

    def _after_fork_in_child(self) -> None:
        # The parent's runs run on threads the child does not have.
        self._lock = threading.Lock()
        self._runs = {}

    def start(self, run_id: Any, run: _Run) -> None:
        with self._lock:
            self._runs[run_id] = run
            evicted = [self._pop_oldest() for _ in range(len(self._runs) - self._limit)]
        for old in evicted:
            _finish(old, None)  # never reported its end: release what it held

    def _pop_oldest(self) -> _Run:
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


def _finish(run: _Run, response: Any) -> None:
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


def _text(mapping: Mapping[str, Any], keys: Iterable[str]) -> Optional[str]:
    for key in keys:
        value = mapping.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _provider_key(serialized: Any, params: Mapping[str, Any], metadata: Mapping[str, Any]) -> Any:
    """LangChain's name for the run's vendor: its ``ls_provider``, else a marker in its type."""
    announced = metadata.get("ls_provider")
    if announced:
        return str(announced).lower()
    ids = serialized.get("id") if isinstance(serialized, Mapping) else None
    class_name = ids[-1] if isinstance(ids, list) and ids else ""
    for hint in (params.get("_type"), class_name):
        hint = str(hint or "").lower()
        for marker in _PROVIDER_MARKERS:
            if marker in hint:
                return marker
    return None


def _base_url(serialized: Any) -> str:
    fields = serialized.get("kwargs") if isinstance(serialized, Mapping) else None
    if not isinstance(fields, Mapping):
        return ""
    for key in _BASE_URL_KEYS:
        if fields.get(key):
            return str(fields[key])
    return ""


def _provider(
    serialized: Any, params: Mapping[str, Any], metadata: Mapping[str, Any], chat: bool
) -> str:
    """The label the reference checks the run under.

    A chat model on the openai SDK is checked by the reference's openai hook,
    under its client's label: ``PERPLEXITY`` for a base URL naming perplexity,
    ``Azure`` for AzureChatOpenAI, else the base URL's label (``XAI`` for
    ChatXAI's default). Every other run is checked by the reference's
    callback, under :data:`PROVIDER_LABELS` (``PERPLEXITY`` for an ``openai``
    model whose base URL names perplexity).
    """
    key = _provider_key(serialized, params, metadata)
    base_url = _base_url(serialized)
    calls_perplexity = "perplexity" in base_url.lower()
    if chat and key in _OPENAI_CHAT_KEYS and metadata.get("ls_model_type") != "llm":
        if calls_perplexity:
            return PERPLEXITY
        if key == "azure":
            return AZURE
        if base_url:
            return url_label(base_url)
        return XAI if key == "xai" else OPENAI
    if key == "openai" and calls_perplexity:
        return PERPLEXITY
    return PROVIDER_LABELS.get(key, OPENAI) if isinstance(key, str) else OPENAI


def _facts(
    serialized: Any,
    metadata: Any,
    params: Any,
    own: Optional[Mapping[str, Any]],
    chat: bool = True,
) -> tuple[Optional[str], Optional[str], Optional[Mapping[str, Any]]]:
    """The run's provider label, model and ``usage_metadata``; never raises.

    The model is the run's ``invocation_params`` ``model`` (else ``model_name``),
    as the reference reads it; ``chat`` says the run is a chat model's.
    """
    try:
        metadata = metadata if isinstance(metadata, Mapping) else {}
        params = params if isinstance(params, Mapping) else {}
        provider = _provider(serialized, params, metadata, chat)
        model = _text(params, _MODEL_KEYS)
        call = merge_metadata(own, metadata.get("usage_metadata"), params.get("usage_metadata"))
        return provider, model, call or None
    except Exception:
        logger.debug("Could not read a LangChain run's model", exc_info=True)
        return None, None, own


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


class _Start(NamedTuple):
    """A run's start event, as either handler flavour receives it."""

    serialized: Any
    prompt: Any  # the messages of a chat model run, the prompts of an LLM run
    metadata: Any
    kwargs: Mapping[str, Any]
    run_id: Any
    parent_run_id: Any
    chat: bool


class _Check(NamedTuple):
    """What a run asks its engine before the model is called."""

    engine: Engine
    usage_metadata: Optional[Mapping[str, Any]]
    model: Optional[str]
    provider: Optional[str]
    estimate: Callable[[], Estimate]

    def begin(self) -> Optional[Spend]:
        return self.engine.begin(
            self.usage_metadata, model=self.model, provider=self.provider, estimate=self.estimate
        )

    async def abegin(self) -> Optional[Spend]:
        return await self.engine.abegin(
            self.usage_metadata, model=self.model, provider=self.provider, estimate=self.estimate
        )


class _Checks:
    """What both handler flavours share; they differ in how the check is awaited."""

    #: LangChain re-raises a handler's exception only when this is set.
    raise_error: bool = True
    #: Called in the caller's own context (an async run: its task), so the
    #: guard set here reaches the model call.
    run_inline: bool = True
    #: The guards of runs in flight: its instrumentor's, set when the classes are defined.
    _runs: _Runs

    def __init__(
        self, usage_metadata: Optional[Mapping[str, Any]] = None, *, engine: Optional[Engine] = None
    ) -> None:
        self.usage_metadata = dict(usage_metadata) if isinstance(usage_metadata, Mapping) else None
        self.engine = engine

    # Only LLM and chat model events matter; LangChain skips ignored ones cheaply.
    @property
    def ignore_chain(self) -> bool:
        return True

    @property
    def ignore_agent(self) -> bool:
        return True

    @property
    def ignore_retriever(self) -> bool:
        return True

    @property
    def ignore_retry(self) -> bool:
        return True

    @property
    def ignore_custom_event(self) -> bool:
        return True

    def _start(self, event: _Start) -> Optional[_Check]:
        """What to ask the engine for the run; None inside a call an outer hook checked."""
        if already_checked() and held_guard() is None:
            return None
        params = event.kwargs.get("invocation_params")
        provider, model, call = _facts(
            event.serialized, event.metadata, params, self.usage_metadata, event.chat
        )
        return _Check(
            self.engine or hooked_engine(),
            current_metadata(call),
            model,
            provider,
            lambda: estimate(event.prompt, params),
        )

    def _begin(self, event: _Start) -> None:
        check = self._start(event)
        if check is None:
            return
        try:
            spend = check.begin()
        except BaseException:
            self._refused(event)
            raise
        self._started(event, spend)

    async def _abegin(self, event: _Start) -> None:
        check = self._start(event)
        if check is None:
            return
        try:
            spend = await check.abegin()
        except BaseException:
            self._refused(event)
            raise
        self._started(event, spend)

    def _started(self, event: _Start, spend: Optional[Spend]) -> None:
        """Let the vendor SDK hooks under this run pass its request straight through."""
        self._runs.start(event.run_id, _Run(hold_guard(), spend, event.parent_run_id))

    def _refused(self, event: _Start) -> None:
        hold = held_guard()
        if hold is not None:
            self._runs.abandon(hold, event.parent_run_id)

    def _sent(self, run_id: Any) -> None:
        self._runs.sent(run_id)

    def _ended(self, run_id: Any, response: Any = None) -> None:
        """Settle the run: with its ``LLMResult``'s usage, or None (an error) to release."""
        self._runs.finish(run_id, response)


def _define_handlers(runs: _Runs) -> tuple[type[Any], type[Any]]:
    """The sync and async handler classes, keeping their runs' guards in ``runs``."""
    from langchain_core.callbacks.base import AsyncCallbackHandler, BaseCallbackHandler

    class EnforcementCallbackHandler(_Checks, BaseCallbackHandler):
        """Refuses a LangChain chat model or LLM run that a breached budget rule covers.

        The check runs when the run starts, before the model is called, and
        raises :class:`~enforcement.BudgetExceededError` to the caller. It is
        judged on the model (``invocation_params``), the provider (labelled
        from the run's ``ls_provider`` as the reference labels it, see
        :data:`PROVIDER_LABELS`), the enclosing :func:`enforcement.usage_metadata`
        scopes, this handler's ``usage_metadata`` and the run's
        ``metadata["usage_metadata"]``. Works for sync and async runs alike
        (in an async run it checks without awaiting).

        >>> model.invoke(
        ...     "hi",
        ...     config={
        ...         "callbacks": [EnforcementCallbackHandler()],
        ...         "metadata": {"usage_metadata": {"organizationName": "acme"}},
        ...     },
        ... )  # doctest: +SKIP

        ``enforcement.instrument("langchain")`` adds one to every run instead.
        """

        __qualname__ = "EnforcementCallbackHandler"
        _runs = runs

        def on_chat_model_start(
            self,
            serialized: dict[str, Any],
            messages: list[list[Any]],
            *,
            run_id: Any,
            parent_run_id: Any = None,
            tags: Optional[list[str]] = None,
            metadata: Optional[dict[str, Any]] = None,
            **kwargs: Any,
        ) -> None:
            self._begin(
                _Start(serialized, messages, metadata, kwargs, run_id, parent_run_id, chat=True)
            )

        def on_llm_start(
            self,
            serialized: dict[str, Any],
            prompts: list[str],
            *,
            run_id: Any,
            parent_run_id: Any = None,
            tags: Optional[list[str]] = None,
            metadata: Optional[dict[str, Any]] = None,
            **kwargs: Any,
        ) -> None:
            self._begin(
                _Start(serialized, prompts, metadata, kwargs, run_id, parent_run_id, chat=False)
            )

        # The request is out once the first output arrives: from then on the
        # vendor SDK's own hook checks again, and the caller's code (which
        # runs between a stream's chunks) is never inside the guard.
        def on_llm_new_token(self, token: Any, *, run_id: Any, **kwargs: Any) -> None:
            self._sent(run_id)

        def on_stream_event(self, event: Any, *, run_id: Any, **kwargs: Any) -> None:
            self._sent(run_id)

        def on_llm_end(self, response: Any, *, run_id: Any, **kwargs: Any) -> None:
            self._ended(run_id, response)

        def on_llm_error(self, error: BaseException, *, run_id: Any, **kwargs: Any) -> None:
            self._ended(run_id)

    class AsyncEnforcementCallbackHandler(_Checks, AsyncCallbackHandler):
        """:class:`EnforcementCallbackHandler` for async runs: the check is awaited.

        Only for async calls (``ainvoke``, ``astream``...): LangChain runs an
        async handler of a sync call on a throwaway event loop and ignores what
        it raises. ``instrument("langchain")`` picks the right flavour itself.
        """

        __qualname__ = "AsyncEnforcementCallbackHandler"
        _runs = runs

        async def on_chat_model_start(
            self,
            serialized: dict[str, Any],
            messages: list[list[Any]],
            *,
            run_id: Any,
            parent_run_id: Any = None,
            tags: Optional[list[str]] = None,
            metadata: Optional[dict[str, Any]] = None,
            **kwargs: Any,
        ) -> None:
            await self._abegin(
                _Start(serialized, messages, metadata, kwargs, run_id, parent_run_id, chat=True)
            )

        async def on_llm_start(
            self,
            serialized: dict[str, Any],
            prompts: list[str],
            *,
            run_id: Any,
            parent_run_id: Any = None,
            tags: Optional[list[str]] = None,
            metadata: Optional[dict[str, Any]] = None,
            **kwargs: Any,
        ) -> None:
            await self._abegin(
                _Start(serialized, prompts, metadata, kwargs, run_id, parent_run_id, chat=False)
            )

        # Plain functions on purpose: LangChain calls them inline without a
        # coroutine per token, and a sync manager (a sync model's
        # ``_agenerate`` in an executor) without an event loop per token.
        def on_llm_new_token(  # type: ignore[override]
            self, token: Any, *, run_id: Any, **kwargs: Any
        ) -> None:
            self._sent(run_id)

        def on_stream_event(  # type: ignore[override]
            self, event: Any, *, run_id: Any, **kwargs: Any
        ) -> None:
            self._sent(run_id)

        def on_llm_end(  # type: ignore[override]
            self, response: Any, *, run_id: Any, **kwargs: Any
        ) -> None:
            self._ended(run_id, response)

        def on_llm_error(  # type: ignore[override]
            self, error: BaseException, *, run_id: Any, **kwargs: Any
        ) -> None:
            self._ended(run_id)

    return EnforcementCallbackHandler, AsyncEnforcementCallbackHandler


def __getattr__(name: str) -> Any:
    if name in _HANDLER_NAMES:
        sync_class, async_class = INSTRUMENTOR.handler_classes()
        globals().update(
            EnforcementCallbackHandler=sync_class, AsyncEnforcementCallbackHandler=async_class
        )
        return sync_class if name == _HANDLER_NAMES[0] else async_class
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_HANDLER_NAMES})


class LangChainInstrumentor(Instrumentor):
    """Adds the enforcement handler to every LangChain run.

    The callback managers are patched when ``langchain_core.callbacks.manager``
    is imported and completion LLMs when ``langchain_core.language_models.llms``
    is, so importing ``langchain_core`` for its message types loads neither.
    """

    name = "langchain"
    module = "langchain_core"
    distribution = "langchain-core"
    minimum = (0, 3, 10)  # async callbacks run inline from here; before, a run is checked twice
    below = (2,)

    def __init__(self) -> None:
        super().__init__()
        self._awaited: set[str] = set()
        self._handlers: Optional[tuple[Any, Any]] = None
        self._runs = _Runs()
        self._classes: Optional[tuple[type[Any], type[Any]]] = None
        self._classes_lock = threading.Lock()

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        self._classes_lock = threading.Lock()  # a child forked while another thread defined them

    def handler_classes(self) -> tuple[type[Any], type[Any]]:
        """Define the handlers on first use, so importing this module never imports LangChain."""
        with self._classes_lock:
            if self._classes is None:
                self._classes = _define_handlers(self._runs)
            return self._classes

    def patch(self, module: ModuleType) -> None:
        self._when_imported("langchain_core.callbacks.manager", self._patch_managers)
        self._when_imported("langchain_core.language_models.llms", self._patch_llms)

    def _when_imported(self, name: str, apply: Callable[[ModuleType], None]) -> None:
        loaded = sys.modules.get(name)
        if loaded is not None:
            apply(loaded)
            return
        if name in self._awaited:
            return
        self._awaited.add(name)

        def on_import(imported: ModuleType) -> None:
            if not self._wanted:
                return
            try:
                apply(imported)
            except Exception:
                logger.warning(
                    "Could not hook %s %s; its calls are not checked",
                    name,
                    self.version() or "",
                    exc_info=True,
                )

        wrapt.register_post_import_hook(on_import, name)

    def _patch_managers(self, manager_module: ModuleType) -> None:
        sync_class, async_class = self.handler_classes()
        if self._handlers is None:
            self._handlers = (sync_class(), async_class())
        sync_handler, async_handler = self._handlers
        async_manager = manager_module.AsyncCallbackManager

        def sync_twin(handler: Any) -> Any:
            if handler is async_handler:
                return sync_handler
            return sync_class(handler.usage_metadata, engine=handler.engine)

        def enlist(manager: Any) -> None:
            handlers = getattr(manager, "handlers", None)
            if not isinstance(handlers, list):
                return
            ours = [handler for handler in handlers if isinstance(handler, _Checks)]
            if isinstance(manager, async_manager):
                if not ours:
                    manager.add_handler(async_handler, True)
                return
            if any(isinstance(handler, sync_class) for handler in ours):
                return
            # Async handlers inherited from an async parent would be ignored here.
            for handler in ours:
                inherit = handler in manager.inheritable_handlers
                manager.remove_handler(handler)
                manager.add_handler(sync_twin(handler), inherit)
            if not ours:
                manager.add_handler(sync_handler, True)

        def configure(
            wrapped: Callable[..., Any],
            instance: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> Any:
            manager = wrapped(*args, **kwargs)
            try:
                enlist(manager)
            except Exception:
                logger.debug("Could not add the enforcement handler", exc_info=True)
            return manager

        self.wrap(manager_module.CallbackManager, "configure", configure)
        self.wrap(async_manager, "configure", configure)

    def _patch_llms(self, llms_module: ModuleType) -> None:
        async def agenerate_helper(
            wrapped: Callable[..., Any],
            instance: Any,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
        ) -> Any:
            # The runs' start was announced in tasks of their own (asyncio.gather),
            # whose guard never reached this one: adopt it for the model call.
            managers = args[2] if len(args) > 2 else kwargs.get("run_managers")
            guard = None
            if isinstance(managers, list) and not already_checked():
                guard = self._runs.active_guard(getattr(m, "run_id", None) for m in managers)
            if guard is None:
                return await wrapped(*args, **kwargs)
            return await aunder(guard, lambda: wrapped(*args, **kwargs))

        self.wrap(llms_module.BaseLLM, "_agenerate_helper", agenerate_helper)


INSTRUMENTOR = LangChainInstrumentor()
