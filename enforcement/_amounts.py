"""What a call counts for under each metric: held before it, used after it.

A rule's metric (:attr:`Account.metric`) says what it adds up: ``cost`` in
dollars (priced by the :class:`~._prices.PriceTable`; an unpriced model adds
nothing, never a guess), ``input_tokens``, ``output_tokens``, ``tokens``, or
``requests`` (one per call). A new metric goes here and in ``_accounts``'
metric parsing. The refusal local spend gives is worded here too.
"""

from __future__ import annotations

from typing import Optional

from ._accounts import Account
from ._errors import BudgetExceededError
from ._model_names import output_limit
from ._prices import PriceTable
from ._usage import Estimate, Usage

__all__ = ["held_amount", "local_refusal", "used_amount"]

_BLOCK_PREFIX = "Request blocked by Revenium enforcement rule: "


def held_amount(
    metric: str,
    estimate: Estimate,
    prices: PriceTable,
    model: Optional[str],
    provider: Optional[str],
) -> float:
    """The most a call may add: its estimated prompt plus the largest output it allows."""
    if metric == "cost":
        worst = prices.worst_case(estimate, model, provider)
        return 0.0 if worst is None else worst
    if metric == "requests":
        return 1.0
    output = estimate.max_output_tokens
    if output is None:
        rates = prices.rates(model, provider)
        output = rates.max_output_tokens if rates is not None else output_limit(model or "")
    if metric == "input_tokens":
        return float(estimate.input_tokens)
    if metric == "output_tokens":
        return float(output)
    return float(estimate.input_tokens + output)


def used_amount(
    metric: str,
    usage: Usage,
    prices: PriceTable,
    model: Optional[str],
    provider: Optional[str],
) -> Optional[float]:
    """What a completed call added; ``None`` for a cost the model cannot be priced for."""
    if metric == "cost":
        return prices.cost(usage, model, provider)
    if metric == "requests":
        return 1.0
    if metric == "input_tokens":
        return float(usage.input_tokens)
    if metric == "output_tokens":
        return float(usage.output_tokens)
    return float(usage.input_tokens + usage.output_tokens)


def local_refusal(account: Account, local: float) -> BudgetExceededError:
    """The error for a call local spend refuses: it names the rule and the local figure."""
    rule = account.rule
    figure = account.base + local
    unit = "$" if account.metric == "cost" else ""
    message = (
        f"{_BLOCK_PREFIX}{rule.name} (local spend {unit}{local:.4g} since the server's "
        f"{unit}{account.base:.4g} reaches {unit}{figure:.4g} of {unit}{account.threshold:.4g})"
    )
    if rule.deny_message is not None:
        message = f"{message}. {rule.deny_message}"
    return BudgetExceededError(
        message,
        rule_name=rule.name,
        current_value=figure,
        threshold=account.threshold,
        resets_at=rule.resets_at,
        rule_id=rule.identifier,
        deny_message=rule.deny_message,
        period_type=rule.period_type,
        metric_type=rule.metric_type,
        action=rule.action,
        source="local",
    )
