"""Administrators list their organization's users, assign profiles and share admin rights."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from api_helpers import Browser, error_of
from connect_helpers import store_connection, store_run
from flask import Flask
from sqlalchemy import event


def test_an_admin_lists_the_users_with_their_profile(admin: Browser, member: Browser) -> None:
    users = admin.get("/api/users").get_json()

    assert [(u["email"], u["is_admin"], u["profile"]) for u in users] == [
        ("ada@example.com", True, None),
        ("bob@example.com", False, None),
    ]


def test_an_admin_assigns_a_profile_and_takes_it_back(admin: Browser, member: Browser) -> None:
    profile = admin.post("/api/profiles", json={"name": "Sales"}).get_json()
    url = f"/api/users/{member.user['id']}"

    assigned = admin.patch(url, json={"sync_profile_id": profile["id"]}).get_json()
    back = admin.patch(url, json={"sync_profile_id": None}).get_json()

    assert assigned["profile"]["name"] == "Sales"
    assert back["profile"] is None


def test_an_admin_makes_another_user_an_admin(admin: Browser, member: Browser) -> None:
    reply = admin.patch(f"/api/users/{member.user['id']}", json={"is_admin": True})

    assert reply.get_json()["is_admin"] is True
    assert member.get("/api/users").status_code == 200


def test_the_last_admin_cannot_be_removed(admin: Browser) -> None:
    reply = admin.patch(f"/api/users/{admin.user['id']}", json={"is_admin": False})

    assert reply.status_code == 409
    assert "at least one administrator" in error_of(reply)["message"]


def test_an_admin_can_step_down_once_there_is_another(admin: Browser, member: Browser) -> None:
    admin.patch(f"/api/users/{member.user['id']}", json={"is_admin": True})

    reply = admin.patch(f"/api/users/{admin.user['id']}", json={"is_admin": False})

    assert reply.status_code == 200
    assert admin.get("/api/users").status_code == 403  # takes effect at once


def test_members_cannot_make_themselves_admins(member: Browser) -> None:
    reply = member.patch(f"/api/users/{member.user['id']}", json={"is_admin": True})

    assert reply.status_code == 403


def test_only_one_of_two_simultaneous_first_users_becomes_admin(browser) -> None:  # type: ignore[no-untyped-def]
    browsers = [browser() for _ in range(6)]
    for b in browsers:
        b.fetch_csrf()
    start = threading.Barrier(len(browsers))
    results: list[dict] = []

    def sign_in(b: Browser, n: int) -> None:
        start.wait()
        results.append(b.sign_in(f"user{n}@race.example"))

    threads = [threading.Thread(target=sign_in, args=(b, n)) for n, b in enumerate(browsers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(results) == len(browsers)
    assert len({r["organization"]["id"] for r in results}) == 1
    assert sum(r["is_admin"] for r in results) == 1


def test_two_admins_removing_each_other_at_once_leave_one_admin(
    admin: Browser, member: Browser
) -> None:
    admin.patch(f"/api/users/{member.user['id']}", json={"is_admin": True})
    start = threading.Barrier(2)
    statuses: list[int] = []

    def demote(actor: Browser, target: Browser) -> None:
        start.wait()
        reply = actor.patch(f"/api/users/{target.user['id']}", json={"is_admin": False})
        statuses.append(reply.status_code)

    threads = [
        threading.Thread(target=demote, args=(admin, member)),
        threading.Thread(target=demote, args=(member, admin)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(statuses) in ([200, 403], [200, 409])
    remaining = [b for b in (admin, member) if b.get("/api/users").status_code == 200]
    assert len(remaining) == 1


# -- connection states and last sync ------------------------------------------------------------


def at(minutes: int) -> datetime:
    return datetime(2026, 11, 2, 9, 0, tzinfo=UTC) + timedelta(minutes=minutes)


def listed(admin: Browser) -> dict[str, dict[str, Any]]:
    reply = admin.get("/api/users")
    assert reply.status_code == 200, reply.get_json()
    return {u["email"]: u for u in reply.get_json()}


def test_an_admin_sees_each_users_connection_states(
    app: Flask, admin: Browser, member: Browser
) -> None:
    store_connection(app, admin.user["id"], "calendar")  # type: ignore[index]
    store_connection(
        app,
        member.user["id"],  # type: ignore[index]
        "crm",
        status="needs_reconnect",
        status_message="SuiteCRM refused the saved password: connect again.",
    )

    users = listed(admin)

    ada, bob = users["ada@example.com"], users["bob@example.com"]
    assert (ada["calendar"], ada["crm"]) == ({"status": "connected", "status_message": ""}, None)
    assert (bob["calendar"], bob["crm"]) == (
        None,
        {
            "status": "needs_reconnect",
            "status_message": "SuiteCRM refused the saved password: connect again.",
        },
    )
    assert admin.get(f"/api/users/{member.user['id']}").get_json()["crm"] == bob["crm"]  # type: ignore[index]


def test_an_admin_sees_each_users_last_sync(app: Flask, admin: Browser, member: Browser) -> None:
    user = member.user["id"]  # type: ignore[index]
    store_run(app, user, status="failed", created_at=at(0))
    store_run(app, user, status="succeeded", created_at=at(5))
    latest = store_run(app, user, status="partial", created_at=at(5))  # same tick: higher id
    store_run(app, user, kind="cleanup", trigger="manual", created_at=at(9))  # not a sync

    users = listed(admin)

    assert users["ada@example.com"]["last_run"] is None
    last = users["bob@example.com"]["last_run"]
    assert (last["id"], last["kind"], last["status"]) == (latest, "sync", "partial")
    assert admin.get(f"/api/users/{user}").get_json()["last_run"] == last


@pytest.mark.parametrize(
    ("calendar", "crm", "run", "attention"),
    [
        ("connected", "connected", "succeeded", False),
        (None, None, None, True),  # nothing connected: this user cannot be synced
        ("needs_reconnect", "connected", "succeeded", True),
        ("connected", "no_permission", None, True),
        (None, "error", "succeeded", True),
        ("connected", "connected", "failed", True),
    ],
)
def test_attention_flags_a_missing_or_broken_connection_or_a_failed_last_sync(
    app: Flask,
    admin: Browser,
    member: Browser,
    calendar: str | None,
    crm: str | None,
    run: str | None,
    attention: bool,
) -> None:
    user = member.user["id"]  # type: ignore[index]
    for kind, status in (("calendar", calendar), ("crm", crm)):
        if status is not None:
            store_connection(app, user, kind, status=status)
    if run is not None:
        store_run(app, user, status="succeeded", created_at=at(0))
        store_run(app, user, status=run, created_at=at(1))

    assert listed(admin)["bob@example.com"]["attention"] is attention
    assert admin.get(f"/api/users/{user}").get_json()["attention"] is attention


def test_an_admin_never_sees_another_organizations_states_or_runs(
    app: Flask, admin: Browser, member: Browser, outsider: Browser
) -> None:
    b_user = outsider.user["id"]  # type: ignore[index]
    store_connection(app, b_user, "calendar", status="error", status_message="B only calendar")
    store_connection(app, b_user, "crm", status="no_permission", status_message="B only crm")
    b_run = store_run(app, b_user, status="failed", errors=[{"message": "B only run"}])

    reply = admin.get("/api/users")

    assert {u["email"] for u in reply.get_json()} == {"ada@example.com", "bob@example.com"}
    assert "B only" not in reply.get_data(as_text=True)
    # Ada and Bob have connected nothing: they need attention, whatever B's states are.
    assert all(u["attention"] is True for u in reply.get_json())
    assert admin.get(f"/api/users/{b_user}").status_code == 404
    own = outsider.get("/api/users").get_json()
    assert [(u["email"], u["last_run"]["id"]) for u in own] == [("eve@other.example", b_run)]


def test_a_connection_shows_its_status_and_nothing_else(
    app: Flask, admin: Browser, member: Browser
) -> None:
    secret = {"refresh_token": "rt-SECRET-41d2", "password": "pw-SECRET-7be0"}
    store_connection(
        app,
        member.user["id"],  # type: ignore[index]
        "calendar",
        account="bob-private@dav.example.com",
        details={"server_url": "https://dav.example.com/bob/", "token_expiry": "soon"},
        secret=secret,
    )

    for path in ("/api/users", f"/api/users/{member.user['id']}"):  # type: ignore[index]
        text = admin.get(path).get_data(as_text=True)
        for value in (*secret.values(), "bob-private", "dav.example.com/bob", "token_expiry"):
            assert value not in text, f"GET {path} shows {value!r}"
    assert set(listed(admin)["bob@example.com"]["calendar"]) == {"status", "status_message"}


@contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
        seen.append(statement)

    engine = app.extensions["calsync"].engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_the_users_list_reads_connections_and_runs_once_however_many_users(
    app: Flask, admin: Browser, member: Browser, browser
) -> None:  # type: ignore[no-untyped-def]
    others = [browser() for _ in range(3)]
    for n, b in enumerate(others):
        b.sign_in(f"user{n}@example.com")
    for b in (admin, member, *others):
        store_connection(app, b.user["id"], "calendar")
        store_connection(app, b.user["id"], "crm")
        store_run(app, b.user["id"], created_at=at(0))
        store_run(app, b.user["id"], created_at=at(1))

    with statements(app) as seen:
        users = admin.get("/api/users").get_json()

    assert len(users) == 5 and all(u["last_run"] and u["calendar"] for u in users)
    assert len([s for s in seen if "FROM connections" in s]) == 1
    assert len([s for s in seen if "FROM sync_runs" in s]) == 1
