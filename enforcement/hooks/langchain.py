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

The instrumentor owns the bookkeeping: the runs in flight (bounded, in
``_langchain_runs``) and the handler classes (``_langchain_handlers``),
defined on first use and bound to its run table; how a run is labelled is
``_langchain_labels``. The walk from a run to the matcher:
``on_chat_model_start`` -> ``Checks._begin`` -> ``Engine.begin`` ->
``Engine.check`` -> ``RuleSet.evaluate``.
"""

from __future__ import annotations

import logging
import sys
import threading
from types import ModuleType
from typing import Any, Callable, Optional

import wrapt

from ._instrumentor import Instrumentor
from ._langchain_handlers import Checks, define_handlers
from ._langchain_labels import PROVIDER_LABELS
from ._langchain_runs import Runs, estimate, usage_of
from ._reentry import already_checked, aunder

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

_HANDLER_NAMES = ("EnforcementCallbackHandler", "AsyncEnforcementCallbackHandler")


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
        self._runs = Runs()
        self._classes: Optional[tuple[type[Any], type[Any]]] = None
        self._classes_lock = threading.Lock()

    def _after_fork_in_child(self) -> None:
        super()._after_fork_in_child()
        self._classes_lock = threading.Lock()  # a child forked while another thread defined them

    def handler_classes(self) -> tuple[type[Any], type[Any]]:
        """Define the handlers on first use, so importing this module never imports LangChain."""
        with self._classes_lock:
            if self._classes is None:
                self._classes = define_handlers(self._runs)
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
            ours = [handler for handler in handlers if isinstance(handler, Checks)]
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
