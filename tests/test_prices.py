"""PriceTable: the maintained table, overrides, a prices file, names as hooks spell them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from enforcement._prices import (
    DEFAULT_OUTPUT_LIMIT,
    InvalidPrices,
    PriceTable,
    load_overrides,
)
from enforcement._usage import Estimate, Usage

MINI = {"gpt-4o-mini": {"input": 0.15, "output": 0.60}}
RUNAWAY_CALL = Usage(20_000, 11_667)


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable()


def test_an_override_prices_the_runaway_call_at_one_cent() -> None:
    prices = PriceTable(overrides=MINI, use_table=False)
    assert prices.cost(RUNAWAY_CALL, "gpt-4o-mini", "OPENAI") == pytest.approx(0.0100002)


def test_cached_prompt_tokens_are_billed_at_the_cache_price() -> None:
    prices = PriceTable(
        overrides={"gpt-4o": {"input": 2.5, "output": 10.0, "cache_read": 1.25}}, use_table=False
    )
    usage = Usage(1_000_000, 0, cache_read_tokens=400_000)
    assert prices.cost(usage, "gpt-4o") == pytest.approx(0.6 * 2.5 + 0.4 * 1.25)


def test_without_a_cache_price_cached_tokens_cost_as_input() -> None:
    prices = PriceTable(overrides=MINI, use_table=False)
    usage = Usage(1_000_000, 0, cache_read_tokens=400_000)
    assert prices.cost(usage, "gpt-4o-mini") == pytest.approx(0.15)


def test_an_unknown_model_is_not_priced_never_guessed(table: PriceTable) -> None:
    assert table.cost(RUNAWAY_CALL, "some-other-model", "OPENAI") is None
    assert table.worst_case(Estimate(10), "some-other-model", "OPENAI") is None
    assert table.cost(RUNAWAY_CALL, None, "OPENAI") is None
    assert "OPENAI:some-other-model" in table.describe().unpriced


@pytest.mark.parametrize(
    ("model", "provider", "price_of"),
    [
        ("gpt-4o", "OPENAI", "gpt-4o"),
        ("gpt-4o-2024-08-06", "OPENAI", "gpt-4o"),
        ("openai/gpt-4o", "LITELLM", "gpt-4o"),
        ("openai/gpt-4o", None, "gpt-4o"),
        ("anthropic.claude-3-5-sonnet-20240620-v1:0", "AWS", "claude-3-5-sonnet"),
        ("us.anthropic.claude-3-5-sonnet-20240620-v1:0", "AWS", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet-20240620", "ANTHROPIC", "claude-3-5-sonnet"),
        ("models/gemini-2.0-flash", "Google", "gemini-2.0-flash"),
        ("publishers/google/models/gemini-2.0-flash", "Google", "gemini-2.0-flash"),
    ],
)
def test_names_as_hooks_spell_them_find_the_model(
    table: PriceTable, model: str, provider: str, price_of: str
) -> None:
    expected = table.rates(price_of, None)
    found = table.rates(model, provider)
    assert expected is not None and found is not None
    assert (found.input, found.output) == (expected.input, expected.output)


def test_an_azure_deployment_name_cannot_be_priced(table: PriceTable) -> None:
    assert table.rates("my-deployment", "Azure") is None


def test_self_hosted_models_are_unpriced_unless_overridden(table: PriceTable) -> None:
    assert table.rates("llama3.2", "OLLAMA") is None
    local = PriceTable(overrides={"llama3.2": {"input": 0.0, "output": 0.01}})
    assert local.cost(Usage(10, 1_000_000), "llama3.2", "OLLAMA") == pytest.approx(0.01)


def test_overrides_win_over_the_table_and_may_name_a_provider() -> None:
    prices = PriceTable(
        overrides={
            "gpt-4o": {"input": 1.0, "output": 1.0},
            "azure/gpt-4o": {"input": 2.0, "output": 2.0},
        }
    )
    one_million_each = Usage(1_000_000, 1_000_000)
    assert prices.cost(one_million_each, "gpt-4o", "OPENAI") == pytest.approx(2.0)
    assert prices.cost(one_million_each, "gpt-4o-2024-08-06", "OPENAI") == pytest.approx(2.0)
    assert prices.cost(one_million_each, "gpt-4o", "Azure") == pytest.approx(4.0)


def test_the_served_model_is_priced_before_the_requested_one() -> None:
    prices = PriceTable(
        overrides={
            "gpt-4o": {"input": 1.0, "output": 0.0},
            "gpt-4o-x": {"input": 3.0, "output": 0},
        },
        use_table=False,
    )
    served = Usage(1_000_000, 0, model="gpt-4o-x")
    assert prices.cost(served, "gpt-4o", "OPENAI") == pytest.approx(3.0)
    unknown_served = Usage(1_000_000, 0, model="nobody-knows")
    assert prices.cost(unknown_served, "gpt-4o", "OPENAI") == pytest.approx(1.0)


def test_worst_case_uses_max_tokens_else_the_family_limit_else_the_default() -> None:
    prices = PriceTable(
        overrides={**MINI, "mystery": {"input": 1.0, "output": 1.0}}, use_table=False
    )
    bounded = prices.worst_case(Estimate(20_000, 11_667), "gpt-4o-mini", "OPENAI")
    assert bounded == pytest.approx(0.0100002)
    unbounded = prices.worst_case(Estimate(20_000), "gpt-4o-mini", "OPENAI")
    assert unbounded == pytest.approx((20_000 * 0.15 + 16_384 * 0.60) / 1e6)
    default = prices.worst_case(Estimate(0), "mystery")
    assert default == pytest.approx(DEFAULT_OUTPUT_LIMIT / 1e6)


def test_an_override_may_set_the_output_limit() -> None:
    prices = PriceTable(
        overrides={"m": {"input": 0.0, "output": 1.0, "max_output_tokens": 1000}}, use_table=False
    )
    assert prices.worst_case(Estimate(5), "m") == pytest.approx(0.001)


def test_a_long_prompt_pays_the_tier_price_on_every_token(table: PriceTable) -> None:
    rates = table.rates("gemini-2.5-pro", "Google")
    assert rates is not None and rates.tiers, "the table prices gemini-2.5-pro in tiers"
    start, long = rates.tiers[0]
    short_prompt = Usage(start, 1_000)
    long_prompt = Usage(start + 1, 1_000)
    assert table.cost(short_prompt, "gemini-2.5-pro", "Google") == pytest.approx(
        (start * rates.input + 1_000 * rates.output) / 1e6
    )
    assert table.cost(long_prompt, "gemini-2.5-pro", "Google") == pytest.approx(
        ((start + 1) * long.input + 1_000 * long.output) / 1e6
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"m": {"input": 1.0}}, "missing"),
        ({"m": {"input": 1.0, "output": -1}}, "output"),
        ({"m": {"input": True, "output": 1}}, "input"),
        ({"m": {"input": 1.0, "output": 1, "ouput": 2}}, "unknown"),
        ({"m": [1, 2]}, "object"),
        ({"": {"input": 1.0, "output": 1}}, "non-empty"),
    ],
)
def test_bad_overrides_raise_with_the_model_and_reason(overrides: object, field: str) -> None:
    with pytest.raises(InvalidPrices) as raised:
        PriceTable(overrides=overrides)  # type: ignore[arg-type]
    assert raised.value.source == "overrides"
    assert field in raised.value.reason


def test_a_prices_file_has_the_overrides_shape(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(MINI), encoding="utf-8")
    assert set(load_overrides(str(path))) == {"gpt-4o-mini"}
    prices = PriceTable.from_file(str(path), use_table=False)
    assert prices.cost(RUNAWAY_CALL, "gpt-4o-mini") == pytest.approx(0.0100002)
    status = prices.describe()
    assert (status.overrides, status.overrides_file, status.overrides_error) == (1, str(path), None)


def test_explicit_overrides_win_over_the_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"m": {"input": 1.0, "output": 0}}), encoding="utf-8")
    prices = PriceTable.from_file(str(path), {"m": {"input": 5.0, "output": 0}}, use_table=False)
    assert prices.cost(Usage(1_000_000, 0), "m") == pytest.approx(5.0)


@pytest.mark.parametrize(
    "content", ["{not json", json.dumps([1, 2]), json.dumps({"m": {"input": "x", "output": 1}})]
)
def test_a_bad_prices_file_is_ignored_with_a_warning_and_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str
) -> None:
    path = tmp_path / "prices.json"
    path.write_text(content, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="enforcement.prices"):
        prices = PriceTable.from_file(str(path), MINI, use_table=False)
    assert prices.cost(RUNAWAY_CALL, "gpt-4o-mini") == pytest.approx(0.0100002)
    error = prices.describe().overrides_error
    assert error is not None and str(path) in error
    assert any("ignored" in record.getMessage() for record in caplog.records)


def test_a_missing_prices_file_is_a_reason_not_an_exception(tmp_path: Path) -> None:
    prices = PriceTable.from_file(str(tmp_path / "absent.json"), use_table=False)
    assert "unreadable" in (prices.describe().overrides_error or "")


def test_the_lookup_cache_is_bounded() -> None:
    prices = PriceTable(overrides=MINI, use_table=False, cache_size=4)
    for index in range(10):
        prices.rates(f"model-{index}", "OPENAI")
    assert prices.describe().cached <= 4
    assert prices.rates("gpt-4o-mini") is not None


def test_describe_names_the_table(table: PriceTable) -> None:
    table.preload()
    status = table.describe()
    assert status.table is not None and status.table.startswith("genai-prices ")
    assert status.table_error is None
    assert PriceTable(use_table=False).describe().table_error == "disabled"
