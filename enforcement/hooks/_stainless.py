"""The request-funnel hook shared by the SDKs Stainless generates (openai, anthropic).

Both SDKs send every request through ``SyncAPIClient.request`` /
``AsyncAPIClient.request(cast_to, options, ...)``, where ``options`` carries
the method, path and JSON body. One hook there sees every costly call,
including the ones a stream manager sends later, on ``__enter__``; the
provider module only says which requests cost money and for which models.

The public methods are wrapped only to accept the reference SDK's
``usage_metadata=`` keyword; the kit's relay carries it to the funnel in a
context variable, for the call and for a stream manager's ``__enter__``, and
nothing is stored past the call.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Optional

from ._base import Call, Instrumentor

__all__ = ["PublicMethods", "StainlessInstrumentor"]

#: (module, classes, methods): public methods that accept ``usage_metadata=``.
PublicMethods = tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]


def _options_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``request(cast_to, options, ...)``'s options: the method, path and JSON body."""
    return args[1] if len(args) > 1 else kwargs.get("options")


class StainlessInstrumentor(Instrumentor):
    """Hooks a Stainless SDK's request funnel; subclasses say what a request costs.

    A request judged costly is checked once per model it runs (a batch may
    name several), so a rule on any of them stops the whole request.
    """

    #: the SDK's public methods that accept ``usage_metadata=``.
    public_methods: PublicMethods = ()

    def judge(self, client: Any, options: Any) -> Optional[tuple[str, Sequence[Optional[str]]]]:
        """The provider label and the models of a costly request; None when it is free.

        Must not raise: it reads a request the SDK is about to send.
        """
        raise NotImplementedError

    def describe(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The funnel call ``request(cast_to, options, ...)`` as :meth:`judge` tells it."""
        judged = self.judge(instance, _options_of(args, kwargs))
        if judged is None:
            return None
        provider, models = judged
        return Call(provider, models[-1], tuple(models[:-1])) if models else Call(provider)

    def patch(self, module: ModuleType) -> None:
        base = importlib.import_module(f"{self.module}._base_client")
        self.hook(base.SyncAPIClient, "request", self.describe, required=True)
        self.hook(base.AsyncAPIClient, "request", self.describe, required=True)
        self._wrap_public_methods()

    def _wrap_public_methods(self) -> None:
        for module_name, classes, methods in self.public_methods:
            try:
                resource = importlib.import_module(module_name)
            except ImportError:
                continue
            for class_name in classes:
                owner = getattr(resource, class_name, None)
                for method in methods:
                    if owner is not None and method in owner.__dict__:
                        self.relay(owner, method)
