"""My sync history: runs newest first, each with its counts and errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api_helpers import Browser, error_of
from connect_helpers import store_run
from flask import Flask

COUNTS = {
    "calendar": {"created": 0, "updated": 1, "deleted": 0, "linked": 0},
    "crm": {"created": 2, "updated": 0, "deleted": 0, "linked": 1},
    "skipped": {"no invitees (Sync related calendar records only)": 3},
    "notes": {},
    "conflicts": [],
    "full_listing": {"calendar": True, "crm": True},
}


def at(minutes: int) -> datetime:
    return datetime(2026, 11, 2, 9, 0, tzinfo=UTC) + timedelta(minutes=minutes)


def test_runs_are_listed_newest_first(app: Flask, member: Browser) -> None:
    user = member.user["id"]  # type: ignore[index]
    older = store_run(app, user, created_at=at(0))
    newer = store_run(app, user, created_at=at(5), trigger="automatic")

    runs = member.get("/api/runs").get_json()

    assert [r["id"] for r in runs] == [newer, older]


def test_runs_limit_says_how_many(app: Flask, member: Browser) -> None:
    for minute in range(5):
        store_run(app, member.user["id"], created_at=at(minute))  # type: ignore[index]

    assert len(member.get("/api/runs?limit=2").get_json()) == 2
    assert member.get("/api/runs?limit=0").status_code == 422


def test_a_run_shows_what_the_sync_did(app: Flask, member: Browser) -> None:
    run_id = store_run(
        app,
        member.user["id"],  # type: ignore[index]
        status="partial",
        counts=COUNTS,
        errors=[{"message": "One meeting could not be written."}],
        created_at=at(0),
        started_at=at(0),
        finished_at=at(1),
    )

    run = member.get(f"/api/runs/{run_id}").get_json()

    assert run == {
        "id": run_id,
        "kind": "sync",
        "trigger": "manual",
        "status": "partial",
        "created_at": "2026-11-02T09:00:00+00:00",
        "started_at": "2026-11-02T09:00:00+00:00",
        "finished_at": "2026-11-02T09:01:00+00:00",
        "counts": COUNTS,
        "errors": [{"message": "One meeting could not be written."}],
    }


def test_another_users_runs_are_not_shown(app: Flask, admin: Browser, member: Browser) -> None:
    run_id = store_run(app, admin.user["id"])  # type: ignore[index]

    reply = member.get(f"/api/runs/{run_id}")

    assert member.get("/api/runs").get_json() == []
    assert reply.status_code == 404
    assert error_of(reply)["message"] == "There is no such sync run in your history."
