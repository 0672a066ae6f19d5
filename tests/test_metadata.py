"""The ``usage_metadata`` scopes: nesting, merging, precedence, and one object shared by many."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from enforcement import usage_metadata
from enforcement._metadata import current_metadata, merge_metadata


def test_scopes_nest_and_merge_the_subscriber_field_by_field() -> None:
    with usage_metadata(organizationName="acme", subscriber={"id": "u-1"}):
        with usage_metadata(subscriber={"email": "dev@acme.com"}) as inner:
            assert inner == {
                "organizationName": "acme",
                "subscriber": {"id": "u-1", "email": "dev@acme.com"},
            }
        assert current_metadata() == {"organizationName": "acme", "subscriber": {"id": "u-1"}}
    assert current_metadata() is None


def test_one_field_whatever_its_spelling_the_last_layer_winning() -> None:
    with usage_metadata(organization_name="outer"), usage_metadata(organizationName="inner"):
        assert current_metadata() == {"organizationName": "inner"}
        assert current_metadata({"organization_name": "call"}) == {"organization_name": "call"}


def test_the_calls_own_metadata_wins_over_every_scope() -> None:
    with usage_metadata({"subscriber": {"id": "u-1", "email": "a@x.io"}}, productName="p"):
        assert current_metadata({"subscriber": {"email": "b@x.io"}}) == {
            "subscriber": {"id": "u-1", "email": "b@x.io"},
            "productName": "p",
        }
        assert current_metadata({}) == current_metadata() == current_metadata("junk")  # type: ignore[arg-type]
    assert current_metadata({"a": 1}) == {"a": 1}
    assert current_metadata("junk") is None  # type: ignore[arg-type]


def test_merging_skips_what_is_not_a_mapping_and_copies_what_is() -> None:
    subscriber = {"id": "u-1"}
    merged = merge_metadata(None, "junk", {"subscriber": subscriber, 3: "x"})  # type: ignore[arg-type, dict-item]
    assert merged == {"subscriber": {"id": "u-1"}}
    merged["subscriber"]["id"] = "changed"
    assert subscriber == {"id": "u-1"}


def test_one_object_entered_twice_in_one_context_nests() -> None:
    scope = usage_metadata(organizationName="acme")
    with scope, usage_metadata(productName="p"), scope:
        assert current_metadata() == {"organizationName": "acme", "productName": "p"}
    assert current_metadata() is None


def test_two_tasks_sharing_one_object_exit_in_any_order() -> None:
    scope = usage_metadata(organizationName="acme")

    async def early(inside: asyncio.Event, other_inside: asyncio.Event, out: asyncio.Event) -> Any:
        with scope:
            inside.set()
            await other_inside.wait()
            seen = current_metadata()
        out.set()  # leaves while the other task is still inside
        return seen, current_metadata()

    async def late(inside: asyncio.Event, other_inside: asyncio.Event, out: asyncio.Event) -> Any:
        await other_inside.wait()
        with scope:
            inside.set()
            await out.wait()
            seen = current_metadata()
        return seen, current_metadata()

    async def both() -> list[Any]:
        early_in, late_in, early_out = asyncio.Event(), asyncio.Event(), asyncio.Event()
        return list(
            await asyncio.gather(
                early(early_in, late_in, early_out), late(late_in, early_in, early_out)
            )
        )

    assert asyncio.run(both()) == [({"organizationName": "acme"}, None)] * 2


def test_two_threads_sharing_one_object_exit_in_any_order() -> None:
    scope = usage_metadata(organizationName="acme")
    entered = threading.Barrier(2)
    first_out = threading.Event()
    seen: dict[str, Any] = {}

    def run(name: str) -> None:
        with scope:
            entered.wait()  # both inside, the first to enter leaves first
            if name == "late":
                first_out.wait()
            seen[name] = current_metadata()
        if name == "early":
            first_out.set()
        seen[name + " after"] = current_metadata()

    threads = [threading.Thread(target=run, args=(name,)) for name in ("early", "late")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert seen == {
        "early": {"organizationName": "acme"},
        "late": {"organizationName": "acme"},
        "early after": None,
        "late after": None,
    }


def test_exiting_an_object_this_context_did_not_enter_last_is_refused() -> None:
    outer, inner = usage_metadata(a=1), usage_metadata(b=2)
    outer.__enter__()
    inner.__enter__()
    with pytest.raises(RuntimeError):
        outer.__exit__(None, None, None)
    inner.__exit__(None, None, None)
    outer.__exit__(None, None, None)
    assert current_metadata() is None


def test_as_a_decorator_each_call_opens_its_own_scope() -> None:
    @usage_metadata(organizationName="acme")
    def plain() -> Any:
        return current_metadata()

    @usage_metadata(organizationName="acme")
    async def coroutine() -> Any:
        await asyncio.sleep(0)
        return current_metadata()

    async def concurrently() -> list[Any]:
        return list(await asyncio.gather(coroutine(), coroutine()))

    assert plain() == {"organizationName": "acme"}
    assert asyncio.run(concurrently()) == [{"organizationName": "acme"}] * 2
    assert current_metadata() is None
