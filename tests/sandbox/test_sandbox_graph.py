"""Behaviour and fidelity tests of the Graph emulator, over real HTTP with requests."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import re
import time
import urllib.parse
from typing import Any

import pytest
import requests

from calsync.sandbox.graph import GraphEmulator
from calsync.sandbox.receiver import NotificationReceiver
from calsync.sandbox.seed import seed_mailbox

from .sandbox_graph_models import assert_graph_event

ALICE = "alice@contoso.com"  # the mailbox the conftest fixtures create
WINDOW = {"startDateTime": "2025-01-01T00:00:00Z", "endDateTime": "2025-03-01T00:00:00Z"}


def _event(subject: str = "Kick-off", day: int = 6, hour: int = 9, **extra: Any) -> dict:
    return {
        "subject": subject,
        "start": {"dateTime": f"2025-01-{day:02d}T{hour:02d}:00:00", "timeZone": "UTC"},
        "end": {"dateTime": f"2025-01-{day:02d}T{hour + 1:02d}:00:00", "timeZone": "UTC"},
        **extra,
    }


def _series() -> dict:
    return {
        "subject": "Weekly sync",
        "start": {"dateTime": "2025-01-06T09:00:00", "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": "2025-01-06T09:30:00", "timeZone": "W. Europe Standard Time"},
        "recurrence": {
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
            "range": {"type": "numbered", "startDate": "2025-01-06", "numberOfOccurrences": 4},
        },
    }


def _post(graph: GraphEmulator, headers: dict, body: dict) -> dict:
    resp = requests.post(f"{graph.url}/v1.0/me/events", json=body, headers=headers, timeout=5)
    assert resp.status_code == 201, resp.text
    return resp.json()


def _delta_round(url: str, headers: dict) -> tuple[list[dict], str, int]:
    items: list[dict] = []
    pages = 0
    while True:
        resp = requests.get(url, headers=headers, timeout=30)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        pages += 1
        items += body["value"]
        if "@odata.nextLink" in body:
            assert "@odata.deltaLink" not in body
            url = body["@odata.nextLink"]
            continue
        return items, body["@odata.deltaLink"], pages


def _delta_url(graph: GraphEmulator) -> str:
    return f"{graph.url}/v1.0/me/calendarView/delta?{urllib.parse.urlencode(WINDOW)}"


# -- fidelity --------------------------------------------------------------------------


def test_every_event_shape_parses_into_msgraph_models(graph: GraphEmulator, graph_headers):
    single = _post(
        graph,
        graph_headers,
        _event(
            attendees=[
                {
                    "emailAddress": {"address": "bob@fabrikam.example", "name": "Bob"},
                    "type": "required",
                }
            ],
            body={"contentType": "html", "content": "<p>Hello</p>"},
            location={"displayName": "Room 1"},
            categories=["CRM"],
            transactionId="tx-fid",
            extensions=[
                {
                    "@odata.type": "microsoft.graph.openTypeExtension",
                    "extensionName": "com.calsync.meta",
                    "crmId": "42",
                }
            ],
            singleValueExtendedProperties=[
                {"id": "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name calsync", "value": "x"}
            ],
        ),
    )
    allday = _post(
        graph,
        graph_headers,
        {
            "subject": "Offsite",
            "isAllDay": True,
            "start": {"dateTime": "2025-01-10T00:00:00", "timeZone": "Europe/Berlin"},
            "end": {"dateTime": "2025-01-11T00:00:00", "timeZone": "Europe/Berlin"},
        },
    )
    master = _post(graph, graph_headers, _series())
    inst = requests.get(
        f"{graph.url}/v1.0/me/events/{master['id']}/instances",
        params=WINDOW,
        headers=graph_headers,
        timeout=5,
    ).json()["value"]
    exc = requests.patch(
        f"{graph.url}/v1.0/me/events/{inst[1]['id']}",
        json={"subject": "Moved sync"},
        headers=graph_headers,
        timeout=5,
    )
    assert exc.status_code == 200 and exc.json()["type"] == "exception"
    expanded = requests.get(
        f"{graph.url}/v1.0/me/events/{single['id']}",
        params={
            "$expand": "extensions($filter=id eq 'com.calsync.meta'),"
            "singleValueExtendedProperties($filter=id eq 'String "
            "{66f5a359-4659-4830-9070-00047ec6ac6e} Name calsync')"
        },
        headers=graph_headers,
        timeout=5,
    ).json()
    assert expanded["extensions"][0]["crmId"] == "42"
    assert expanded["singleValueExtendedProperties"][0]["value"] == "x"
    items, _, _ = _delta_round(_delta_url(graph), graph_headers)
    listed = requests.get(f"{graph.url}/v1.0/me/events", headers=graph_headers, timeout=5).json()[
        "value"
    ]
    shapes = [single, allday, master, exc.json(), expanded, *inst, *items, *listed]
    assert {e["type"] for e in shapes} == {
        "singleInstance",
        "seriesMaster",
        "occurrence",
        "exception",
    }
    for data in shapes:
        assert_graph_event(data)
    parsed = assert_graph_event(inst[0])
    assert parsed.series_master_id == master["id"]


def test_delta_removed_entries_parse(graph: GraphEmulator, graph_headers):
    ev = _post(graph, graph_headers, _event())
    _, delta, _ = _delta_round(_delta_url(graph), graph_headers)
    requests.delete(f"{graph.url}/v1.0/me/events/{ev['id']}", headers=graph_headers, timeout=5)
    items, _, _ = _delta_round(delta, graph_headers)
    assert items == [
        {"@odata.type": "#microsoft.graph.event", "id": ev["id"], "@removed": {"reason": "deleted"}}
    ]
    assert_graph_event(items[0])


# -- delta -----------------------------------------------------------------------------


def test_delta_pages_to_completion_and_tracks_changes(graph: GraphEmulator, graph_headers):
    ids = [_post(graph, graph_headers, _event(f"E{i}", day=6 + i % 20))["id"] for i in range(7)]
    master = _post(graph, graph_headers, _series())
    headers = {**graph_headers, "Prefer": "odata.maxpagesize=3"}
    items, delta, pages = _delta_round(_delta_url(graph), headers)
    assert pages == 4  # 7 singles + 4 occurrences = 11 -> 3 + 3 + 3 + 2
    assert len(items) == 11
    assert all(i["type"] != "seriesMaster" for i in items)
    assert {i["seriesMasterId"] for i in items if i["type"] == "occurrence"} == {master["id"]}

    items, delta2, _ = _delta_round(delta, headers)
    assert items == []  # nothing changed

    requests.patch(
        f"{graph.url}/v1.0/me/events/{ids[0]}",
        json={"subject": "Changed"},
        headers=graph_headers,
        timeout=5,
    )
    requests.delete(f"{graph.url}/v1.0/me/events/{ids[1]}", headers=graph_headers, timeout=5)
    requests.patch(
        f"{graph.url}/v1.0/me/events/{ids[2]}",
        headers=graph_headers,
        timeout=5,
        json={
            "start": {"dateTime": "2025-06-01T09:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2025-06-01T10:00:00", "timeZone": "UTC"},
        },
    )
    new = _post(graph, graph_headers, _event("New", day=20))
    items, _, _ = _delta_round(delta2, headers)
    by_id = {i["id"]: i for i in items}
    assert by_id[ids[0]]["subject"] == "Changed"
    assert by_id[ids[1]]["@removed"] == {"reason": "deleted"}
    assert by_id[ids[2]]["@removed"] == {"reason": "deleted"}  # left the window
    assert by_id[new["id"]]["subject"] == "New"
    assert len(items) == 4


def test_delta_token_expiry_and_unknown_token_give_410(graph: GraphEmulator, graph_headers):
    _post(graph, graph_headers, _event())
    _, delta, _ = _delta_round(_delta_url(graph), graph_headers)
    graph.expire_delta_tokens()
    resp = requests.get(delta, headers=graph_headers, timeout=5)
    assert resp.status_code == 410
    assert resp.json()["error"]["code"] == "SyncStateNotFound"
    bogus = f"{graph.url}/v1.0/me/calendarView/delta?$deltatoken=nope"
    assert requests.get(bogus, headers=graph_headers, timeout=5).status_code == 410


def test_delta_rejects_unsupported_query_options(graph: GraphEmulator, graph_headers):
    for opt in ("$filter", "$orderby", "$expand", "$search"):
        resp = requests.get(_delta_url(graph) + f"&{opt}=x", headers=graph_headers, timeout=5)
        assert resp.status_code == 400, opt
    missing = f"{graph.url}/v1.0/me/calendarView/delta"
    assert requests.get(missing, headers=graph_headers, timeout=5).status_code == 400


def test_default_delta_page_size_forces_paging(graph: GraphEmulator, graph_headers):
    for i in range(25):
        _post(graph, graph_headers, _event(f"E{i}", day=1 + i))
    items, _, pages = _delta_round(_delta_url(graph), graph_headers)
    assert len(items) == 25 and pages == 3


# -- writes ----------------------------------------------------------------------------


def test_transaction_id_deduplicates_retries(graph: GraphEmulator, graph_headers):
    first = _post(graph, graph_headers, _event(transactionId="retry-1"))
    second = _post(graph, graph_headers, _event(transactionId="retry-1"))
    assert first["id"] == second["id"]
    assert len(graph.events(ALICE)) == 1
    other = _post(graph, graph_headers, _event(transactionId="retry-2"))
    assert other["id"] != first["id"]
    assert "transactionId" not in _post(graph, graph_headers, _event())


def test_change_key_etag_and_if_match(graph: GraphEmulator, graph_headers):
    ev = _post(graph, graph_headers, _event())
    url = f"{graph.url}/v1.0/me/events/{ev['id']}"
    ok = requests.patch(
        url,
        json={"subject": "v2"},
        timeout=5,
        headers={**graph_headers, "If-Match": ev["@odata.etag"]},
    )
    assert ok.status_code == 200
    assert ok.json()["changeKey"] != ev["changeKey"]
    assert ok.json()["@odata.etag"] == f'W/"{ok.json()["changeKey"]}"'
    stale = requests.patch(
        url,
        json={"subject": "v3"},
        timeout=5,
        headers={**graph_headers, "If-Match": ev["@odata.etag"]},
    )
    assert stale.status_code == 412
    assert stale.json()["error"]["code"] == "ErrorIrresolvableConflict"
    assert requests.get(url, headers=graph_headers, timeout=5).json()["subject"] == "v2"


def test_unknown_and_read_only_properties_are_rejected(graph: GraphEmulator, graph_headers):
    bad = requests.post(
        f"{graph.url}/v1.0/me/events", json=_event(colour="red"), headers=graph_headers, timeout=5
    )
    assert bad.status_code == 400
    ro = requests.post(
        f"{graph.url}/v1.0/me/events", json=_event(id="abc"), headers=graph_headers, timeout=5
    )
    assert ro.status_code == 400
    tz = requests.post(
        f"{graph.url}/v1.0/me/events",
        headers=graph_headers,
        timeout=5,
        json={**_event(), "start": {"dateTime": "2025-01-06T09:00:00", "timeZone": "Mars/Olympus"}},
    )
    assert tz.json()["error"]["code"] == "TimeZoneNotSupportedException"


def test_prefer_outlook_timezone(graph: GraphEmulator, graph_headers):
    ev = _post(graph, graph_headers, _event(hour=9))
    resp = requests.get(
        f"{graph.url}/v1.0/me/events/{ev['id']}",
        timeout=5,
        headers={**graph_headers, "Prefer": 'outlook.timezone="Pacific Standard Time"'},
    )
    assert resp.json()["start"] == {
        "dateTime": "2025-01-06T01:00:00.0000000",
        "timeZone": "Pacific Standard Time",
    }
    assert resp.headers["Preference-Applied"] == 'outlook.timezone="Pacific Standard Time"'


def test_instances_and_occurrence_delete(graph: GraphEmulator, graph_headers):
    master = _post(graph, graph_headers, _series())
    url = f"{graph.url}/v1.0/me/events/{master['id']}/instances"
    inst = requests.get(url, params=WINDOW, headers=graph_headers, timeout=5).json()["value"]
    # 09:00 Berlin is 08:00 UTC in winter.
    assert [i["start"]["dateTime"][:16] for i in inst] == [
        "2025-01-06T08:00",
        "2025-01-13T08:00",
        "2025-01-20T08:00",
        "2025-01-27T08:00",
    ]
    assert all(i["seriesMasterId"] == master["id"] and i["recurrence"] is None for i in inst)
    requests.delete(f"{graph.url}/v1.0/me/events/{inst[2]['id']}", headers=graph_headers, timeout=5)
    after = requests.get(url, params=WINDOW, headers=graph_headers, timeout=5).json()["value"]
    assert [i["id"] for i in after] == [inst[0]["id"], inst[1]["id"], inst[3]["id"]]
    assert requests.get(url, headers=graph_headers, timeout=5).status_code == 400


# -- invitations -----------------------------------------------------------------------


def test_attendee_writes_log_invitations(graph: GraphEmulator, graph_headers):
    bob = {"emailAddress": {"address": "bob@fabrikam.example"}, "type": "required"}
    eve = {"emailAddress": {"address": "eve@contoso.example"}, "type": "optional"}
    ev = _post(graph, graph_headers, _event(attendees=[bob]))
    assert [(i.recipient, i.reason) for i in graph.invitations.all()] == [
        ("bob@fabrikam.example", "created")
    ]
    requests.patch(
        f"{graph.url}/v1.0/me/events/{ev['id']}",
        json={"attendees": [bob, eve]},
        headers=graph_headers,
        timeout=5,
    )
    requests.patch(
        f"{graph.url}/v1.0/me/events/{ev['id']}",
        json={"subject": "Moved"},
        headers=graph_headers,
        timeout=5,
    )
    requests.delete(f"{graph.url}/v1.0/me/events/{ev['id']}", headers=graph_headers, timeout=5)
    assert [(i.recipient, i.reason) for i in graph.invitations.for_event(ev["id"])] == [
        ("bob@fabrikam.example", "created"),
        ("eve@contoso.example", "created"),
        ("bob@fabrikam.example", "updated"),
        ("eve@contoso.example", "updated"),
        ("bob@fabrikam.example", "cancelled"),
        ("eve@contoso.example", "cancelled"),
    ]
    _post(graph, graph_headers, _event())  # no attendees -> no mail
    assert len(graph.invitations) == 6
    seeded = requests.get(f"{graph.url}/_sandbox/invitations", timeout=5).json()
    assert len(seeded) == 6


# -- auth ------------------------------------------------------------------------------


def test_access_token_expiry(graph: GraphEmulator, graph_headers):
    url = f"{graph.url}/v1.0/me/calendars"
    assert requests.get(url, headers=graph_headers, timeout=5).status_code == 200
    graph.advance_clock(3601)
    resp = requests.get(url, headers=graph_headers, timeout=5)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert requests.get(url, timeout=5).status_code == 401


def test_oauth_code_flow_with_pkce_and_refresh(graph: GraphEmulator):
    import base64
    import hashlib
    import json

    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    auth = requests.get(
        f"{graph.url}/common/oauth2/v2.0/authorize",
        allow_redirects=False,
        timeout=5,
        params={
            "client_id": "app",
            "redirect_uri": "http://localhost/cb",
            "response_type": "code",
            "scope": "Calendars.ReadWrite offline_access",
            "state": "s1",
            "login_hint": ALICE,
            "nonce": "n1",
            "code_challenge": challenge.decode().rstrip("="),
            "code_challenge_method": "S256",
        },
    )
    assert auth.status_code == 302
    query = urllib.parse.parse_qs(urllib.parse.urlparse(auth.headers["Location"]).query)
    assert query["state"] == ["s1"]
    token_url = f"{graph.url}/common/oauth2/v2.0/token"
    form = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "client_id": "app",
        "redirect_uri": "http://localhost/cb",
        "code_verifier": verifier,
    }
    tok = requests.post(token_url, data=form, timeout=5)
    assert tok.status_code == 200, tok.text
    body = tok.json()
    assert body["expires_in"] == 3600 and body["token_type"] == "Bearer"
    claims = json.loads(base64.urlsafe_b64decode(body["id_token"].split(".")[1] + "=="))
    assert claims["preferred_username"] == ALICE and claims["nonce"] == "n1"
    assert requests.post(token_url, data=form, timeout=5).json()["error"] == "invalid_grant"
    me = requests.get(
        f"{graph.url}/v1.0/me",
        timeout=5,
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    assert me.json()["userPrincipalName"] == ALICE
    refreshed = requests.post(
        token_url,
        timeout=5,
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": "app",
        },
    )
    assert refreshed.status_code == 200 and refreshed.json()["access_token"]
    oidc = requests.get(f"{graph.url}/common/v2.0/.well-known/openid-configuration", timeout=5)
    assert oidc.json()["token_endpoint"] == token_url


# -- throttling and faults ---------------------------------------------------------------


def test_injected_429_has_retry_after_and_is_reproducible(graph: GraphEmulator, graph_headers):
    url = f"{graph.url}/v1.0/me/calendars"

    def run() -> list[int]:
        graph.reseed(7)
        return [requests.get(url, headers=graph_headers, timeout=5).status_code for _ in range(30)]

    graph.set_faults(rate_429=0.3, retry_after_seconds=3)
    first = run()
    assert 429 in first and 200 in first
    assert run() == first
    graph.set_faults(rate_429=1.0)
    resp = requests.get(url, headers=graph_headers, timeout=5)
    assert resp.headers["Retry-After"] == "3"
    assert resp.json()["error"]["code"] == "TooManyRequests"


def test_injected_5xx_drop_and_admin_endpoint(graph: GraphEmulator, graph_headers):
    url = f"{graph.url}/v1.0/me/calendars"
    cfg = requests.put(
        f"{graph.url}/_sandbox/config",
        timeout=5,
        json={"faults": {"rate_5xx": 1.0, "status_5xx": 503}},
    )
    assert cfg.json()["faults"]["rate_5xx"] == 1.0
    assert requests.get(url, headers=graph_headers, timeout=5).status_code == 503
    graph.reset_knobs()
    graph.set_faults(rate_drop=1.0)
    with pytest.raises(requests.ConnectionError):
        requests.get(url, headers=graph_headers, timeout=5)
    graph.reset_knobs()
    assert requests.get(url, headers=graph_headers, timeout=5).status_code == 200


def test_mailbox_rate_and_concurrency_limits(graph: GraphEmulator, graph_headers):
    url = f"{graph.url}/v1.0/me/calendars"
    graph.set_limits(enabled=True, max_requests=3, window_seconds=600, retry_after_seconds=5)
    codes = [requests.get(url, headers=graph_headers, timeout=5) for _ in range(4)]
    assert [c.status_code for c in codes] == [200, 200, 200, 429]
    assert codes[-1].headers["Retry-After"] == "5"
    assert codes[-1].json()["error"]["code"] == "ApplicationThrottled"

    graph.set_limits(enabled=True, max_requests=10_000, max_concurrent=4)
    graph.set_faults(rate_slow=1.0, slow_seconds=0.6)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(
            pool.map(
                lambda _: requests.get(url, headers=graph_headers, timeout=10).status_code, range(8)
            )
        )
    assert statuses.count(200) == 4 and statuses.count(429) == 4


def test_request_counters(graph: GraphEmulator, graph_headers):
    ev = _post(graph, graph_headers, _event())
    for _ in range(3):
        requests.get(f"{graph.url}/v1.0/me/events/{ev['id']}", headers=graph_headers, timeout=5)
    assert graph.counter.get("GET /v1.0/me/events/<event_id>") == 3
    assert graph.counter.get("POST /v1.0/me/events") == 1
    remote = requests.get(f"{graph.url}/_sandbox/counters", timeout=5).json()
    assert remote["GET /v1.0/me/events/<event_id>"] == 3
    requests.delete(f"{graph.url}/_sandbox/counters", timeout=5)
    assert graph.counter.total() == 0  # the reset request itself was counted before it ran


# -- $batch ----------------------------------------------------------------------------


def test_batch_limits_dependencies_and_shape(graph: GraphEmulator, graph_headers):
    url = f"{graph.url}/v1.0/$batch"
    too_many = {
        "requests": [{"id": str(i), "method": "GET", "url": "/me/calendars"} for i in range(21)]
    }
    assert requests.post(url, json=too_many, headers=graph_headers, timeout=5).status_code == 400
    batch = {
        "requests": [
            {
                "id": "1",
                "method": "POST",
                "url": "/me/events",
                "body": _event("Batched"),
                "headers": {"Content-Type": "application/json"},
            },
            {"id": "2", "method": "GET", "url": "/me/events/doesnotexist", "dependsOn": ["1"]},
            {"id": "3", "method": "GET", "url": "/me/calendars", "dependsOn": ["2"]},
            {"id": "4", "method": "GET", "url": "/me/events?$top=1"},
        ]
    }
    resp = requests.post(url, json=batch, headers=graph_headers, timeout=5)
    assert resp.status_code == 200
    out = {r["id"]: r for r in resp.json()["responses"]}
    assert out["1"]["status"] == 201 and out["1"]["body"]["subject"] == "Batched"
    assert out["1"]["headers"]["Content-Type"].startswith("application/json")
    assert out["2"]["status"] == 404
    assert out["3"]["status"] == 424
    assert out["4"]["status"] == 200 and len(out["4"]["body"]["value"]) == 1
    assert_graph_event(out["1"]["body"])
    no_ctype = {"requests": [{"id": "1", "method": "POST", "url": "/me/events", "body": _event()}]}
    assert requests.post(url, json=no_ctype, headers=graph_headers, timeout=5).status_code == 400


# -- subscriptions -----------------------------------------------------------------------


def _expiry(minutes: int) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)).isoformat()


def test_subscription_handshake_notifications_and_lifecycle(
    graph: GraphEmulator, graph_headers, receiver: NotificationReceiver
):
    url = f"{graph.url}/v1.0/subscriptions"
    body = {
        "changeType": "created,updated,deleted",
        "resource": "me/events",
        "notificationUrl": receiver.hook_url("graph"),
        "lifecycleNotificationUrl": receiver.hook_url("lifecycle"),
        "expirationDateTime": _expiry(60),
        "clientState": "secret-123",
    }
    too_long = requests.post(
        url, json={**body, "expirationDateTime": _expiry(10_081)}, headers=graph_headers, timeout=15
    )
    assert too_long.status_code == 400
    sub = requests.post(url, json=body, headers=graph_headers, timeout=15)
    assert sub.status_code == 201, sub.text
    sub_id = sub.json()["id"]
    ev = _post(graph, graph_headers, _event())
    got = receiver.wait_for(1)
    note = got[0]["json"]["value"][0]
    assert note["clientState"] == "secret-123" and note["changeType"] == "created"
    assert note["resourceData"]["id"] == ev["id"] and note["subscriptionId"] == sub_id
    graph.change_event(ALICE, ev["id"], {"subject": "Changed in Outlook"})
    assert receiver.wait_for(2)[1]["json"]["value"][0]["changeType"] == "updated"
    assert graph.fire_lifecycle(sub_id, "reauthorizationRequired") == 202
    life = [r for r in receiver.wait_for(3) if r["hook"] == "lifecycle"]
    assert life[0]["json"]["value"][0]["lifecycleEvent"] == "reauthorizationRequired"
    renew = requests.patch(
        f"{url}/{sub_id}",
        json={"expirationDateTime": _expiry(120)},
        headers=graph_headers,
        timeout=5,
    )
    assert renew.status_code == 200
    short = requests.patch(
        f"{url}/{sub_id}",
        json={"expirationDateTime": _expiry(5)},
        headers=graph_headers,
        timeout=5,
    )
    # Graph moves expirations under 45 minutes out to 45 minutes.
    granted = dt.datetime.fromisoformat(short.json()["expirationDateTime"].replace("Z", "+00:00"))
    assert granted - dt.datetime.now(dt.UTC) > dt.timedelta(minutes=44)
    graph.fire_change(ALICE, ev["id"], "updated")  # a spurious notification, no data change
    graph.wait_for_notifications()
    assert len([r for r in receiver.received if r["hook"] == "graph"]) == 3
    assert requests.delete(f"{url}/{sub_id}", headers=graph_headers, timeout=5).status_code == 204
    graph.change_event(ALICE, ev["id"], {"subject": "after unsubscribe"})
    graph.wait_for_notifications()
    assert len([r for r in receiver.received if r["hook"] == "graph"]) == 3


def test_subscription_validation_failure(
    graph: GraphEmulator, graph_headers, receiver: NotificationReceiver
):
    receiver.answer_validation = False
    resp = requests.post(
        f"{graph.url}/v1.0/subscriptions",
        headers=graph_headers,
        timeout=15,
        json={
            "changeType": "created",
            "resource": "me/events",
            "notificationUrl": receiver.hook_url(),
            "expirationDateTime": _expiry(60),
        },
    )
    assert resp.status_code == 400
    assert "validation" in resp.json()["error"]["message"].lower()


# -- seeding -----------------------------------------------------------------------------


def test_seed_10k_events_quickly_and_sync_them(graph: GraphEmulator, graph_headers):
    started = time.perf_counter()
    ids = seed_mailbox(graph, ALICE, 10_000, seed=3, start=dt.date(2025, 1, 1), days=90)
    assert time.perf_counter() - started < 5
    assert len(ids) == 10_000 and len(set(ids)) == 10_000
    events = graph.events(ALICE)
    assert sum(e["type"] == "seriesMaster" for e in events) > 100
    assert sum(e["isAllDay"] for e in events) > 100
    assert len(graph.invitations) == 0
    headers = {**graph_headers, "Prefer": "odata.maxpagesize=1000"}
    url = f"{graph.url}/v1.0/me/calendarView/delta?" + urllib.parse.urlencode(
        {"startDateTime": "2025-02-01T00:00:00Z", "endDateTime": "2025-02-08T00:00:00Z"}
    )
    items, _, _ = _delta_round(url, headers)
    assert items and all(i["type"] != "seriesMaster" for i in items)


def test_msal_auth_code_flow_against_tls_emulator():
    msal = pytest.importorskip("msal")
    with GraphEmulator(tls=True) as graph:
        graph.add_mailbox(ALICE)
        session = requests.Session()
        session.verify = graph.ca_file
        # REQUESTS_CA_BUNDLE in the environment would override session.verify.
        session.trust_env = False
        app = msal.ConfidentialClientApplication(
            "app-id",
            client_credential="secret",
            authority=f"{graph.url}/{graph.tenant_id}",
            http_client=session,
            instance_discovery=False,
        )
        flow = app.initiate_auth_code_flow(
            ["Calendars.ReadWrite"],
            login_hint=ALICE,
            redirect_uri="http://localhost/cb",
            response_mode="form_post",
        )
        resp = session.get(flow["auth_uri"], allow_redirects=False, timeout=5)
        # form_post: the endpoint answers with a self-submitting form to the redirect URI.
        assert resp.status_code == 200 and 'action="http://localhost/cb"' in resp.text
        query = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', resp.text))
        result = app.acquire_token_by_auth_code_flow(flow, query)
        assert "access_token" in result, result
        assert result["id_token_claims"]["preferred_username"] == ALICE
        account = app.get_accounts()[0]
        refreshed = app.acquire_token_silent(
            ["Calendars.ReadWrite"], account=account, force_refresh=True
        )
        assert refreshed["access_token"] != result["access_token"]
        me = session.get(
            f"{graph.url}/v1.0/me",
            timeout=5,
            headers={"Authorization": f"Bearer {refreshed['access_token']}"},
        )
        assert me.status_code == 200


def test_filter_events_by_extended_property(graph: GraphEmulator, graph_headers):
    prop = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name crmId"
    mine = _post(
        graph, graph_headers, _event(singleValueExtendedProperties=[{"id": prop, "value": "opp-1"}])
    )
    _post(
        graph, graph_headers, _event(singleValueExtendedProperties=[{"id": prop, "value": "opp-2"}])
    )
    _post(graph, graph_headers, _event())
    flt = f"singleValueExtendedProperties/Any(ep: ep/id eq '{prop}' and ep/value eq 'opp-1')"
    resp = requests.get(
        f"{graph.url}/v1.0/me/events", params={"$filter": flt}, headers=graph_headers, timeout=5
    )
    assert [e["id"] for e in resp.json()["value"]] == [mine["id"]]
    bad = requests.get(
        f"{graph.url}/v1.0/me/events",
        params={"$filter": "contains(subject,'x')"},
        headers=graph_headers,
        timeout=5,
    )
    assert bad.status_code == 400


def test_app_only_tokens_use_users_paths(graph: GraphEmulator, graph_headers):
    token = requests.post(
        f"{graph.url}/{graph.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "daemon",
            "client_secret": "s3cret",
            "scope": "https://graph.microsoft.com/.default",
        },
        timeout=5,
    ).json()
    assert "refresh_token" not in token and "id_token" not in token
    app = {"Authorization": f"Bearer {token['access_token']}"}
    me = requests.get(f"{graph.url}/v1.0/me/events", headers=app, timeout=5)
    assert me.status_code == 400  # no "me" for an application
    ev = requests.post(
        f"{graph.url}/v1.0/users/{ALICE}/events", json=_event(), headers=app, timeout=5
    )
    assert ev.status_code == 201
    mine = requests.get(f"{graph.url}/v1.0/me/events", headers=graph_headers, timeout=5)
    assert [e["id"] for e in mine.json()["value"]] == [ev.json()["id"]]
    by_id = graph.mailbox(ALICE).user_id
    delta = requests.get(
        f"{graph.url}/v1.0/users/{by_id}/calendarView/delta",
        params=WINDOW,
        headers=app,
        timeout=5,
    )
    assert delta.status_code == 200 and len(delta.json()["value"]) == 1
    other = graph.add_mailbox("carol@contoso.com")
    denied = requests.get(
        f"{graph.url}/v1.0/users/{other.address}/events", headers=graph_headers, timeout=5
    )
    assert denied.status_code == 403  # delegated token, someone else's mailbox
    unknown = requests.get(
        f"{graph.url}/v1.0/users/nobody@x.example/events", headers=app, timeout=5
    )
    assert unknown.status_code == 404
