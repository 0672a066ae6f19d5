"""The public test helper speaks the feed's HTTP contract and breaks on demand."""

from __future__ import annotations

import datetime
import email.utils
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Optional

import httpx
import pytest

from enforcement.testing import (
    Fault,
    RecordedRequest,
    RulesServer,
    make_filter,
    make_group_entry,
    make_rule,
)

KEY = {"x-api-key": "hak_test"}
CONTRACT_KEYS = {
    "ruleId", "teamId", "name", "metricType", "operatorType", "threshold", "currentValue",
    "periodType", "windowStart", "windowEnd", "percentUsed", "breached", "groupBy", "filters",
    "compiledAt", "shadowMode", "action", "denyMessage",
}  # fmt: skip


@pytest.fixture
def server() -> Iterator[RulesServer]:
    with RulesServer(team_id="team-1", api_key="hak_test") as running:
        yield running
        assert running.errors == []


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(headers=KEY, timeout=5.0) as http:
        yield http


# --------------------------------------------------------------------------- builders


def test_make_rule_has_the_wire_shape_of_the_contract_example() -> None:
    rule = make_rule()
    assert set(rule) == CONTRACT_KEYS
    assert rule["ruleId"] == 1
    assert rule["name"] == "daily-cap"
    assert rule["breached"] is False
    assert rule["action"] == "BLOCK"
    assert rule["filters"] == []
    assert rule["groupBy"] is None
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    assert rule["windowStart"] == f"{today}T00:00:00Z"
    assert rule["windowEnd"] == f"{today}T23:59:59.999999999Z"
    json.dumps(rule)


def test_make_rule_options_and_extra_fields() -> None:
    noon = datetime.datetime(2026, 2, 11, 12, tzinfo=datetime.timezone.utc)
    rule = make_rule(
        202,
        "gpt-cap",
        breached=True,
        threshold="10",
        current_value=12.5,
        action="WARN_ONLY",
        shadow_mode=True,
        filters=[make_filter("MODEL", "IS", "gpt-4o")],
        group_by="SUBSCRIBER",
        deny_message="Ask finance.",
        period_type="MONTHLY",
        now=noon,
        blocked=True,
        teamId=1372470220,
    )
    assert rule["threshold"] == "10"
    assert rule["percentUsed"] == 125.0
    assert rule["shadowMode"] is True
    assert rule["denyMessage"] == "Ask finance."
    assert rule["groupBreakdown"] == []
    assert rule["windowStart"] == "2026-02-01T00:00:00Z"
    assert rule["windowEnd"] == "2026-02-28T23:59:59.999999999Z"
    assert rule["blocked"] is True
    assert rule["teamId"] == 1372470220
    assert make_rule(window_end=1700000000.0)["windowEnd"] == 1700000000.0
    assert "action" not in make_rule(action=None)


def test_make_filter_and_group_entry() -> None:
    assert make_filter("PROVIDER", "IS", "openai") == {
        "dimension": "PROVIDER",
        "operator": "IS",
        "value": "openai",
    }
    assert make_filter("MODEL", "IN", ["a", "b"])["values"] == ["a", "b"]
    assert make_filter("MODEL", "IN", "a")["values"] == ["a"]
    entry = make_group_entry("ana@example.com", 3.0, breached=True)
    assert entry == {
        "groupValue": "ana@example.com",
        "displayName": "ana@example.com",
        "currentValue": 3.0,
        "usagePercent": 0.0,
        "breached": True,
    }
    rule = make_rule(group_by="SUBSCRIBER", group_breakdown=[entry])
    assert rule["groupBreakdown"] == [entry]


# --------------------------------------------------------------------------- routing and auth


def test_serves_the_rules_payload(server: RulesServer, client: httpx.Client) -> None:
    assert server.url == f"{server.base_url}/v2/api/ai/enforcement-rules/team-1"
    assert server.base_url == f"http://127.0.0.1:{server.port}"
    assert client.get(server.url).json() == {"rules": []}
    server.set_rules([make_rule(1)], departmentBudgetBlocks={"ana@example.com": 1})
    body = client.get(server.url).json()
    assert [rule["ruleId"] for rule in body["rules"]] == [1]
    assert body["departmentBudgetBlocks"] == {"ana@example.com": 1}
    assert isinstance(body["compiledAt"], float)
    server.set_payload([make_rule(2)])
    assert client.get(server.url).json()[0]["ruleId"] == 2


def test_set_rules_accepts_snake_case_map_names(server: RulesServer, client: httpx.Client) -> None:
    server.set_rules([], department_budget_warnings={"bo@example.com": 3})
    assert client.get(server.url).json()["departmentBudgetWarnings"] == {"bo@example.com": 3}


def test_auth_and_unknown_paths(server: RulesServer, client: httpx.Client) -> None:
    assert client.get(server.url, headers={"x-api-key": "hak_wrong"}).status_code == 401
    with httpx.Client() as anonymous:
        assert anonymous.get(server.url).status_code == 401
    rules_root = f"{server.base_url}/v2/api/ai/enforcement-rules"
    assert client.get(f"{rules_root}/team-2").status_code == 404
    assert client.get(f"{rules_root}/team-1/other").status_code == 404
    assert client.get(f"{rules_root}/team-1/").status_code == 404
    assert client.get(f"{server.base_url}/v2/api/ai").status_code == 404


def test_team_id_is_matched_percent_decoded() -> None:
    with RulesServer(team_id="a/b c") as odd, httpx.Client(headers=KEY) as http:
        assert odd.url.endswith("/enforcement-rules/a%2Fb%20c")
        assert http.get(odd.url).status_code == 200


def test_base_path_and_any_key() -> None:
    with RulesServer(api_key=None, base_path="/profitstream/") as proxied, httpx.Client() as http:
        assert proxied.base_url.endswith("/profitstream")
        assert http.get(proxied.url, headers={"x-api-key": "whatever"}).status_code == 200
        bare = proxied.url.replace("/profitstream", "")
        assert http.get(bare).status_code == 404
        assert proxied.env()["REVENIUM_METERING_API_KEY"] == "hak_any"


def test_set_status_204_until_new_rules(server: RulesServer, client: httpx.Client) -> None:
    server.set_status(204)
    response = client.get(server.url)
    assert response.status_code == 204
    assert response.content == b""
    server.set_rules([make_rule()])
    assert client.get(server.url).status_code == 200


def test_env_points_the_engine_here(server: RulesServer) -> None:
    env = server.env(REVENIUM_CB_FAIL_MODE="closed", REVENIUM_CIRCUIT_BREAKER_ENABLED=None)
    assert env == {
        "REVENIUM_ENFORCEMENT_BASE_URL": server.base_url,
        "REVENIUM_TEAM_ID": "team-1",
        "REVENIUM_METERING_API_KEY": "hak_test",
        "REVENIUM_CB_FAIL_MODE": "closed",
    }
    assert server.env()["REVENIUM_CIRCUIT_BREAKER_ENABLED"] == "true"


# --------------------------------------------------------------------------- inspection reads


def test_rule_id_query(server: RulesServer, client: httpx.Client) -> None:
    server.set_rules([make_rule(1), make_rule(2, "other")], departmentBudgetBlocks={})
    whole = client.get(server.url).json()
    narrowed = client.get(server.url, params={"ruleId": "2"}).json()
    assert narrowed == {"rules": [whole["rules"][1]]}  # no maps, no compiledAt
    assert client.get(server.url, params={"ruleId": "9"}).json() == {"rules": []}


def test_include_advisory_appends_rows(server: RulesServer, client: httpx.Client) -> None:
    advisory = make_rule(1, "anomaly", action="NOTIFY", source="ANOMALY")
    server.set_rules([make_rule(1)])
    server.set_advisory([advisory])
    assert len(client.get(server.url).json()["rules"]) == 1
    rules = client.get(server.url, params={"include": "advisory"}).json()["rules"]
    assert [rule.get("source") for rule in rules] == [None, "ANOMALY"]
    narrowed = client.get(server.url, params={"ruleId": "1", "include": "advisory"}).json()
    assert len(narrowed["rules"]) == 1


def test_roster(server: RulesServer, client: httpx.Client) -> None:
    roster_url = f"{server.url}/roster"
    default = client.get(roster_url, params={"ruleId": "1", "page": 2, "size": 10}).json()
    assert default["rows"] == []
    assert (default["page"], default["size"]) == (2, 10)
    assert client.get(roster_url).status_code == 400
    server.set_roster({"rows": [{"key": "ana"}], "blockedCount": 1})
    server.set_roster(None, rule_id=7)
    assert client.get(roster_url, params={"ruleId": "1"}).json()["blockedCount"] == 1
    assert client.get(roster_url, params={"ruleId": "7"}).status_code == 204


# --------------------------------------------------------------------------- ETag


def test_etag_and_304(server: RulesServer, client: httpx.Client) -> None:
    server.set_rules([make_rule(1)])
    first = client.get(server.url)
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    again = client.get(server.url, headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert client.get(server.url, headers={"if-none-match": f'"x", W/{etag}'}).status_code == 304
    server.update_rule(1, breached=True)
    changed = client.get(server.url, headers={"if-none-match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.json()["rules"][0]["breached"] is True


def test_etags_can_be_turned_off(client: httpx.Client) -> None:
    with RulesServer(etags=False) as plain:
        response = client.get(plain.url)
        assert "etag" not in response.headers
        assert client.get(plain.url, headers={"if-none-match": "*"}).status_code == 200


# --------------------------------------------------------------------------- update_rule


def test_update_rule_snake_and_camel_case(server: RulesServer, client: httpx.Client) -> None:
    server.set_rules([make_rule(1), make_rule(2)])
    server.update_rule(2, breached=True, current_value=120.0, denyMessage="Stop.")
    rules = client.get(server.url).json()["rules"]
    assert rules[0]["breached"] is False
    assert (rules[1]["breached"], rules[1]["currentValue"], rules[1]["denyMessage"]) == (
        True,
        120.0,
        "Stop.",
    )
    with pytest.raises(KeyError):
        server.update_rule(3, breached=True)
    server.set_payload([make_rule("abc")])
    server.update_rule("abc", shadow_mode=True)
    assert client.get(server.url).json()[0]["shadowMode"] is True


def test_served_payload_is_a_snapshot(server: RulesServer, client: httpx.Client) -> None:
    rules = [make_rule(1)]
    server.set_rules(rules)
    rules[0]["breached"] = True
    assert client.get(server.url).json()["rules"][0]["breached"] is False


# --------------------------------------------------------------------------- faults


def test_fail_next_then_steady_state(server: RulesServer, client: httpx.Client) -> None:
    server.fail_next(2, status=503, body=b"down", headers={"Retry-After": "2"})
    first = client.get(server.url)
    assert (first.status_code, first.content, first.headers["retry-after"]) == (503, b"down", "2")
    assert client.get(server.url).status_code == 503
    assert client.get(server.url).status_code == 200


def test_fault_applies_before_auth_and_routing(server: RulesServer) -> None:
    server.fail_next(status=502)
    with httpx.Client() as anonymous:
        assert anonymous.get(f"{server.base_url}/nowhere").status_code == 502
        assert anonymous.get(f"{server.base_url}/nowhere").status_code == 401


def test_retry_after_http_date(server: RulesServer, client: httpx.Client) -> None:
    when = email.utils.formatdate(time.time() + 3, usegmt=True)
    server.add_fault(Fault.status(429, headers={"Retry-After": when}))
    response = client.get(server.url)
    assert response.status_code == 429
    assert response.headers["retry-after"] == when


def test_persistent_fault_after_queue(server: RulesServer, client: httpx.Client) -> None:
    server.set_fault(Fault.status(500))
    server.add_fault(Fault.status(408), Fault.status(429))
    codes = [client.get(server.url).status_code for _ in range(4)]
    assert codes == [408, 429, 500, 500]
    server.set_fault(None)
    assert client.get(server.url).status_code == 200
    server.add_fault(Fault.status(500))
    server.set_fault(Fault.status(500))
    server.clear_faults()
    assert client.get(server.url).status_code == 200


def test_garbage_and_wrong_shapes(server: RulesServer, client: httpx.Client) -> None:
    server.add_fault(Fault.garbage(), Fault.body(b"[1,2]"), Fault.body(b'{"rules": null}'))
    garbage = client.get(server.url)
    assert garbage.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        garbage.json()
    assert client.get(server.url).json() == [1, 2]
    assert client.get(server.url).json() == {"rules": None}
    server.add_fault(Fault.body(b"{}", status=418, content_type="text/plain"))
    teapot = client.get(server.url)
    assert (teapot.status_code, teapot.headers["content-type"]) == (418, "text/plain")


def test_reset_is_a_transport_error(server: RulesServer, client: httpx.Client) -> None:
    server.add_fault(Fault.reset())
    with pytest.raises(httpx.TransportError):
        client.get(server.url)
    assert client.get(server.url).status_code == 200


def test_delay_then_normal_answer(server: RulesServer, client: httpx.Client) -> None:
    server.add_fault(Fault.delay(0.3))
    started = time.monotonic()
    assert client.get(server.url).status_code == 200
    assert 0.25 <= time.monotonic() - started < 2.0


def test_hang_times_the_client_out(server: RulesServer) -> None:
    server.add_fault(Fault.hang())
    with httpx.Client(headers=KEY, timeout=0.3) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            impatient.get(server.url)
        assert impatient.get(server.url).status_code == 200


def test_short_hang_drops_the_connection_unanswered(
    server: RulesServer, client: httpx.Client
) -> None:
    server.add_fault(Fault.hang(0.2))
    with pytest.raises(httpx.TransportError):
        client.get(server.url)


def test_close_releases_a_hanging_handler_promptly() -> None:
    server = RulesServer().start()
    server.set_fault(Fault.hang())
    outcome: list[Optional[BaseException]] = []

    def call() -> None:
        with httpx.Client(headers=KEY, timeout=10.0) as http:
            try:
                http.get(server.url)
                outcome.append(None)
            except httpx.TransportError as error:
                outcome.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    assert server.wait_for_requests(1, timeout=2.0)
    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 1.0
    caller.join(2.0)
    assert not caller.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.TransportError)
    server.close()  # idempotent


def test_trickle_sends_the_body_a_byte_at_a_time(server: RulesServer) -> None:
    server.add_fault(Fault.trickle(b"[1]", every=0.1))
    pieces = []
    started = time.monotonic()
    with httpx.Client(headers=KEY, timeout=0.5) as http, http.stream("GET", server.url) as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == "3"
        pieces = list(response.iter_raw())
    assert b"".join(pieces) == b"[1]" and len(pieces) == 3
    assert time.monotonic() - started >= 0.25


@pytest.mark.parametrize("chunked", [False, True])
def test_huge_body_is_streamed_to_size(
    server: RulesServer, client: httpx.Client, chunked: bool
) -> None:
    size = 20 * 1024 * 1024
    server.add_fault(Fault.huge(size, chunked=chunked))
    received = 0
    with client.stream("GET", server.url) as response:
        assert response.status_code == 200
        if chunked:
            assert "content-length" not in response.headers
        else:
            assert response.headers["content-length"] == str(size)
        for piece in response.iter_raw():
            received += len(piece)
    assert received == size
    assert client.get(server.url).status_code == 200  # the connection stays usable


def test_huge_body_is_valid_json(server: RulesServer, client: httpx.Client) -> None:
    server.add_fault(Fault.huge(100_000))
    response = client.get(server.url)
    assert len(response.content) == 100_000
    assert response.json()["rules"] == []


def test_close_is_prompt_while_a_huge_body_is_unread() -> None:
    server = RulesServer().start()
    server.set_fault(Fault.huge(200 * 1024 * 1024))
    with httpx.Client(headers=KEY) as http, http.stream("GET", server.url) as response:
        assert response.status_code == 200
        time.sleep(0.1)  # let the server block on a full socket buffer
        started = time.monotonic()
        server.close()
        assert time.monotonic() - started < 1.0
        with pytest.raises(httpx.TransportError):
            for _ in response.iter_raw():
                pass
    assert server.errors == []


# --------------------------------------------------------------------------- observation


def test_requests_are_recorded(server: RulesServer, client: httpx.Client) -> None:
    before = time.monotonic()
    client.get(server.url, headers={"If-None-Match": '"abc"'})
    client.get(f"{server.url}/roster", params={"ruleId": "4", "page": "0"})
    requests = server.requests
    assert server.request_count == 2
    assert all(isinstance(request, RecordedRequest) for request in requests)
    first, second = requests
    assert first.path == "/v2/api/ai/enforcement-rules/team-1"
    assert first.query == {}
    assert first.headers["x-api-key"] == "hak_test"
    assert first.headers["if-none-match"] == '"abc"'
    assert second.path.endswith("/roster")
    assert second.query == {"ruleId": "4", "page": "0"}
    assert before <= first.at <= second.at <= time.monotonic()
    server.reset_requests()
    assert server.requests == []
    assert server.request_count == 0


def test_wait_for_requests(server: RulesServer) -> None:
    assert server.wait_for_requests(0)
    assert not server.wait_for_requests(1, timeout=0.05)

    def later() -> None:
        time.sleep(0.1)
        with httpx.Client(headers=KEY) as http:
            http.get(server.url)

    caller = threading.Thread(target=later)
    caller.start()
    assert server.wait_for_requests(1, timeout=3.0)
    caller.join()


def test_concurrent_requests(server: RulesServer, client: httpx.Client) -> None:
    server.set_rules([make_rule(1)])
    server.add_fault(Fault.delay(0.2))
    codes: list[int] = []
    lock = threading.Lock()

    def call() -> None:
        code = client.get(server.url).status_code
        with lock:
            codes.append(code)

    callers = [threading.Thread(target=call) for _ in range(16)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(5.0)
    assert codes == [200] * 16
    assert server.request_count == 16


# --------------------------------------------------------------------------- lifecycle


def test_lifecycle() -> None:
    server = RulesServer()
    with pytest.raises(RuntimeError):
        _ = server.base_url
    server.start()
    with pytest.raises(RuntimeError):
        server.start()
    with httpx.Client(headers=KEY) as http:
        assert http.get(server.url).status_code == 200  # leaves an idle keep-alive connection
        started = time.monotonic()
        server.close()
        assert time.monotonic() - started < 1.0
        with pytest.raises(httpx.TransportError):
            http.get(server.url)
    RulesServer().close()  # never started: nothing to do


def test_listens_on_a_chosen_port() -> None:
    with RulesServer() as first:
        port = first.port
    # Just released: no other test asks for this port, the OS only hands out free ones.
    with RulesServer(port=port) as server:
        server.set_rules([make_rule(1, "fixed")])
        assert server.port == port
        assert server.base_url == f"http://127.0.0.1:{port}"
        assert httpx.get(server.url, headers=KEY).json()["rules"][0]["name"] == "fixed"


def test_a_port_in_use_is_an_os_error(server: RulesServer) -> None:
    taken = RulesServer(port=server.port)
    with pytest.raises(OSError):
        taken.start()
    taken.close()


def test_listens_on_an_ipv6_loopback_when_the_host_has_one() -> None:
    probe = socket.socket(socket.AF_INET6) if socket.has_ipv6 else None
    try:
        if probe is None:
            pytest.skip("no IPv6 on this host")
        probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this host")
    finally:
        if probe is not None:
            probe.close()
    with RulesServer(host="::1") as server:
        assert server.base_url == f"http://[::1]:{server.port}"
        assert httpx.get(server.url, headers=KEY).status_code == 200


def test_an_any_address_server_is_reached_through_loopback() -> None:
    with RulesServer(host="0.0.0.0") as server:
        assert server.host == "0.0.0.0"
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        assert httpx.get(server.url, headers=KEY).status_code == 200
