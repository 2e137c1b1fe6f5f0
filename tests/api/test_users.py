"""Administrators list their organization's users, assign profiles and share admin rights."""

from __future__ import annotations

import threading

from api_helpers import Browser, error_of


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
