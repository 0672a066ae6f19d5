"""The LangChain callback handlers: the check, in a run's start callback.

Every run announces ``on_chat_model_start`` / ``on_llm_start`` to its
callbacks before the model is called, and a handler with
``raise_error = True`` can refuse it there: the exception reaches the caller
unchanged and ``_generate`` / ``_stream`` never run. A checked run holds the
re-entrancy guard (a :class:`~enforcement.hooks._reentry.Hold`) in the run
table (``_langchain_runs``) until its first output, so the vendor SDK hook
under it passes the request through.

The handler classes subclass LangChain's, so they are defined on first use
(:func:`define_handlers`), bound to their instrumentor's run table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, NamedTuple, Optional

from .._engine import Engine
from .._metadata import current_metadata
from .._usage import Estimate, Spend
from ._base import hooked_engine
from ._langchain_labels import run_facts
from ._langchain_runs import Run, Runs, estimate
from ._reentry import already_checked, held_guard, hold_guard

__all__ = ["Checks", "define_handlers"]


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


class Checks:
    """What both handler flavours share; they differ in how the check is awaited."""

    #: LangChain re-raises a handler's exception only when this is set.
    raise_error: bool = True
    #: Called in the caller's own context (an async run: its task), so the
    #: guard set here reaches the model call.
    run_inline: bool = True
    #: The guards of runs in flight: its instrumentor's, set when the classes are defined.
    _runs: Runs

    def __init__(
        self, usage_metadata: Optional[Mapping[str, Any]] = None, *, engine: Optional[Engine] = None
    ) -> None:
        self.usage_metadata = dict(usage_metadata) if isinstance(usage_metadata, Mapping) else None
        self.engine = engine

    # Only LLM and chat model events matter; LangChain skips ignored ones cheaply.
    ignore_chain: bool = True
    ignore_agent: bool = True
    ignore_retriever: bool = True
    ignore_retry: bool = True
    ignore_custom_event: bool = True

    def _start(self, event: _Start) -> Optional[_Check]:
        """What to ask the engine for the run; None inside a call an outer hook checked."""
        if already_checked() and held_guard() is None:
            return None
        params = event.kwargs.get("invocation_params")
        provider, model, call = run_facts(
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
        self._runs.start(event.run_id, Run(hold_guard(), spend, event.parent_run_id))

    def _refused(self, event: _Start) -> None:
        hold = held_guard()
        if hold is not None:
            self._runs.abandon(hold, event.parent_run_id)

    def _sent(self, run_id: Any) -> None:
        self._runs.sent(run_id)

    def _ended(self, run_id: Any, response: Any = None) -> None:
        """Settle the run: with its ``LLMResult``'s usage, or None (an error) to release."""
        self._runs.finish(run_id, response)


def define_handlers(runs: Runs) -> tuple[type[Any], type[Any]]:
    """The sync and async handler classes, keeping their runs' guards in ``runs``."""
    from langchain_core.callbacks.base import AsyncCallbackHandler, BaseCallbackHandler

    class EnforcementCallbackHandler(Checks, BaseCallbackHandler):
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
        __module__ = "enforcement.hooks.langchain"  # where users name it
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

    class AsyncEnforcementCallbackHandler(Checks, AsyncCallbackHandler):
        """:class:`EnforcementCallbackHandler` for async runs: the check is awaited.

        Only for async calls (``ainvoke``, ``astream``...): LangChain runs an
        async handler of a sync call on a throwaway event loop and ignores what
        it raises. ``instrument("langchain")`` picks the right flavour itself.
        """

        __qualname__ = "AsyncEnforcementCallbackHandler"
        __module__ = "enforcement.hooks.langchain"  # where users name it
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
