"""The Graph emulator's JSON $batch, rule by rule as documented, over real HTTP.

https://learn.microsoft.com/en-us/graph/json-batching
https://learn.microsoft.com/en-us/graph/throttling#throttling-and-batching
https://learn.microsoft.com/en-us/graph/throttling-limits#outlook-service-limits-for-json-batching
"""

from __future__ import annotations

from typing import Any

import requests
from kiota_serialization_json.json_parse_node import JsonParseNode
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_core.requests.batch_response_content import BatchResponseContent

from calsync.sandbox.graph import GraphEmulator

from .sandbox_graph_models import assert_graph_event, unknown_fields

JSON = {"Content-Type": "application/json"}


def _event(subject: str, day: int = 6) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": {"dateTime": f"2025-01-{day:02d}T09:00:00", "timeZone": "UTC"},
        "end": {"dateTime": f"2025-01-{day:02d}T10:00:00", "timeZone": "UTC"},
    }


def _create(sub_id: str, subject: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": sub_id,
        "method": "POST",
        "url": "/me/events",
        "headers": JSON,
        "body": _event(subject),
        **extra,
    }


def _get(sub_id: str, url: str = "/me/calendar", **extra: Any) -> dict[str, Any]:
    return {"id": sub_id, "method": "GET", "url": url, **extra}


def _batch(graph: GraphEmulator, headers: dict, reqs: list[dict[str, Any]]) -> requests.Response:
    return requests.post(
        f"{graph.url}/v1.0/$batch", json={"requests": reqs}, headers=headers, timeout=30
    )


def _answers(resp: requests.Response) -> dict[str, dict[str, Any]]:
    assert resp.status_code == 200, resp.text
    responses = resp.json()["responses"]
    out = {r["id"]: r for r in responses}
    assert len(out) == len(responses)  # one answer per request
    return out


# -- the request --------------------------------------------------------------------------


def test_twenty_requests_are_accepted_and_a_twenty_first_refuses_the_batch(graph, graph_headers):
    twenty = [_get(str(i)) for i in range(20)]
    assert len(_answers(_batch(graph, graph_headers, twenty))) == 20
    resp = _batch(graph, graph_headers, [*twenty, _get("20")])
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "BadRequest"


def test_request_ids_must_be_unique_whatever_their_case(graph, graph_headers):
    assert _batch(graph, graph_headers, [_get("a"), _get("A")]).status_code == 400
    assert _batch(graph, graph_headers, [_get("a"), _get("b")]).status_code == 200


def test_each_request_needs_a_string_id_a_method_and_a_url(graph, graph_headers):
    for broken in (
        {"method": "GET", "url": "/me"},
        {"id": "1", "url": "/me"},
        {"id": 1, "method": "GET", "url": "/me"},
    ):
        assert _batch(graph, graph_headers, [broken]).status_code == 400, broken
    resp = requests.post(f"{graph.url}/v1.0/$batch", json={}, headers=graph_headers, timeout=5)
    assert resp.status_code == 400


def test_urls_are_relative_with_or_without_a_leading_slash(graph, graph_headers):
    out = _answers(
        _batch(graph, graph_headers, [_get("1", "/me/calendar"), _get("2", "me/calendar")])
    )
    assert out["1"]["status"] == out["2"]["status"] == 200
    absolute = _get("1", f"{graph.url}/v1.0/me/calendar")
    assert _batch(graph, graph_headers, [absolute]).status_code == 400


def test_a_batch_inside_a_batch_is_refused(graph, graph_headers):
    inner = {
        "id": "1",
        "method": "POST",
        "url": "/$batch",
        "headers": JSON,
        "body": {"requests": []},
    }
    assert _batch(graph, graph_headers, [inner]).status_code == 400


def test_a_body_needs_a_content_type_header(graph, graph_headers):
    no_type = {"id": "1", "method": "POST", "url": "/me/events", "body": _event("x")}
    assert _batch(graph, graph_headers, [no_type]).status_code == 400
    assert graph.events("alice@contoso.com") == []


def test_a_body_that_is_not_json_must_be_base64(graph, graph_headers):
    text = {
        "id": "1",
        "method": "POST",
        "url": "/me/events",
        "headers": {"Content-Type": "text/plain"},
    }
    assert _batch(graph, graph_headers, [{**text, "body": "not base64!"}]).status_code == 400
    out = _answers(_batch(graph, graph_headers, [{**text, "body": "aGVsbG8="}]))
    assert out["1"]["status"] == 415  # decoded and handed on; events take JSON only


# -- the response -------------------------------------------------------------------------


def test_each_answer_carries_its_status_headers_and_body(graph, graph_headers):
    out = _answers(
        _batch(graph, graph_headers, [_create("1", "Batched"), _get("2", "/me/events/nope")])
    )
    assert out["1"]["status"] == 201 and out["1"]["body"]["subject"] == "Batched"
    assert out["1"]["headers"]["Content-Type"].startswith("application/json")
    assert out["2"]["status"] == 404 and out["2"]["body"]["error"]["code"]
    assert set(out["1"]) == set(out["2"]) == {"id", "status", "headers", "body"}


def test_answers_may_come_in_another_order_than_the_requests(graph, graph_headers):
    reqs = [_get(str(i)) for i in range(20)]
    answered = [r["id"] for r in _batch(graph, graph_headers, reqs).json()["responses"]]
    assert sorted(answered, key=int) == [r["id"] for r in reqs]
    assert answered != [r["id"] for r in reqs]


def test_the_answers_parse_into_msgraph_sdk_batch_and_error_models(graph, graph_headers):
    graph.set_limits(enabled=True, max_requests=1)
    # In order (dependsOn), so that the second one is the one over the limit.
    reqs = [_create("ok", "Parsed"), _create("throttled", "Later", dependsOn=["ok"])]
    resp = _batch(graph, graph_headers, reqs)
    content = JsonParseNode(resp.json()).get_object_value(BatchResponseContent)
    assert content.get_response_status_codes() == {"ok": 201, "throttled": 429}
    for item_id in ("ok", "throttled"):
        assert content.get_response_by_id(item_id).content_type.startswith("application/json")
    out = _answers(resp)
    assert_graph_event(out["ok"]["body"])
    error = JsonParseNode(out["throttled"]["body"]).get_object_value(ODataError)
    assert error.error.code == "ApplicationThrottled" and not unknown_fields(error, "error")


# -- dependsOn ----------------------------------------------------------------------------


def test_depends_on_runs_requests_in_order_and_fails_dependents_with_424(graph, graph_headers):
    out = _answers(
        _batch(
            graph,
            graph_headers,
            [
                _create("1", "First"),
                _get("2", "/me/events/doesnotexist", dependsOn=["1"]),
                _get("3", dependsOn=["2"]),
            ],
        )
    )
    assert [out[i]["status"] for i in ("1", "2", "3")] == [201, 404, 424]
    assert out["3"]["body"]["error"]["code"] == "FailedDependency"


def test_a_dependency_must_name_an_earlier_request(graph, graph_headers):
    later = [_get("1", dependsOn=["2"]), _get("2")]
    assert _batch(graph, graph_headers, later).status_code == 400
    unknown = [_get("1"), _get("2", dependsOn=["9"])]
    assert _batch(graph, graph_headers, unknown).status_code == 400


# -- throttling and limits ---------------------------------------------------------------


def test_every_request_is_counted_under_its_own_route(graph, graph_headers):
    graph.counter.reset()
    _batch(graph, graph_headers, [_create("1", "a"), _create("2", "b"), _get("3")])
    assert graph.counter.get("POST /v1.0/$batch") == 1
    assert graph.counter.get("POST /v1.0/me/events") == 2
    assert graph.counter.get("GET /v1.0/me/calendar") == 1


def test_each_request_counts_against_the_mailbox_request_limit(graph, graph_headers):
    graph.set_limits(enabled=True, max_requests=3, retry_after_seconds=7)
    resp = _batch(graph, graph_headers, [_create(str(i), f"Call {i}") for i in range(5)])
    out = _answers(resp)  # the batch itself is 200
    throttled = [a for a in out.values() if a["status"] == 429]
    assert len(throttled) == 2 and sum(a["status"] == 201 for a in out.values()) == 3
    assert all(a["headers"]["Retry-After"] == "7" for a in throttled)
    assert len(graph.events("alice@contoso.com")) == 3  # a throttled create did nothing


def test_independent_requests_run_in_parallel_against_the_concurrency_limit(graph, graph_headers):
    # Four at once against a limit of two: two are turned away while the others run.
    graph.set_limits(enabled=True, max_concurrent=2)
    graph.set_faults(rate_slow=1.0, slow_seconds=0.3)
    out = _answers(_batch(graph, graph_headers, [_get(str(i)) for i in range(4)]))
    assert sorted(a["status"] for a in out.values()) == [200, 200, 429, 429]


def test_no_more_than_four_requests_of_a_batch_run_at_once(graph, graph_headers):
    graph.set_limits(enabled=True, max_concurrent=4)
    graph.set_faults(rate_slow=1.0, slow_seconds=0.1)
    out = _answers(_batch(graph, graph_headers, [_get(str(i)) for i in range(12)]))
    assert all(a["status"] == 200 for a in out.values())


def test_dependent_requests_run_one_at_a_time(graph, graph_headers):
    graph.set_limits(enabled=True, max_concurrent=1)
    graph.set_faults(rate_slow=1.0, slow_seconds=0.1)
    reqs = [_get("1"), _get("2", dependsOn=["1"]), _get("3", dependsOn=["2"])]
    out = _answers(_batch(graph, graph_headers, reqs))
    assert all(a["status"] == 200 for a in out.values())
