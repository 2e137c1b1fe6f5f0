"""The routes every open task pane calls stay cheap: few SQL statements, a server that is not
held up by slow clients, answers kept on one connection.

Counts, not timings: the statements a route runs are counted with SQLAlchemy's events, and
the web server is the real `calsync web` (gunicorn) on a real socket.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from api_helpers import Browser
from connect_helpers import store_run
from flask import Flask
from sqlalchemy import delete, event, update

from calsync import runtime
from calsync.db import transaction
from calsync.models import SyncProfile, User
from processes import calsync_process, stop_process


@contextmanager
def statements(app: Flask) -> Iterator[list[str]]:
    """Every SQL statement the app's engine runs inside the block."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engine = app.extensions["calsync"].engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def set_user(app: Flask, user_id: int, **values: Any) -> None:
    with transaction(app.extensions["calsync"].sessions) as db:
        db.execute(update(User).where(User.id == user_id).values(**values))


def test_get_me_runs_two_statements_the_principal_and_one_for_the_rest(
    app: Flask, member: Browser
) -> None:
    with statements(app) as seen:
        reply = member.get("/api/me")

    assert reply.status_code == 200
    assert len(seen) == 2, seen


def test_get_me_with_an_assigned_profile_still_runs_two_statements(
    app: Flask, admin: Browser, member: Browser
) -> None:
    profile = admin.post(
        "/api/profiles", json={"name": "Sales", "settings": {"direction": "two_way"}}
    ).get_json()
    admin.patch(f"/api/users/{member.user['id']}", json={"sync_profile_id": profile["id"]})  # type: ignore[index]

    with statements(app) as seen:
        me = member.get("/api/me").get_json()

    assert len(seen) == 2, seen
    assert me["profile"] == {"id": profile["id"], "name": "Sales", "is_global": False}
    assert me["effective_profile"] == me["profile"]


def test_get_runs_runs_two_statements_however_long_the_history(app: Flask, member: Browser) -> None:
    for _ in range(30):
        store_run(app, member.user["id"])  # type: ignore[index]

    with statements(app) as seen:
        runs = member.get("/api/runs?limit=5").get_json()

    assert len(runs) == 5
    assert len(seen) == 2, seen


def test_a_profile_of_another_organization_never_applies_to_me(
    app: Flask, member: Browser, outsider: Browser
) -> None:
    theirs = outsider.post("/api/profiles", json={"name": "Theirs", "settings": {}}).get_json()
    set_user(app, member.user["id"], sync_profile_id=theirs["id"])  # type: ignore[index]

    me = member.get("/api/me").get_json()

    assert me["effective_profile"]["is_global"] is True
    assert me["effective_profile"]["id"] != theirs["id"]


def test_an_organization_without_global_settings_gets_them_on_my_next_visit(
    app: Flask, member: Browser
) -> None:
    organization = member.user["organization"]["id"]  # type: ignore[index]
    with transaction(app.extensions["calsync"].sessions) as db:
        db.execute(delete(SyncProfile).where(SyncProfile.organization_id == organization))

    me = member.get("/api/me").get_json()

    assert me["effective_profile"]["is_global"] is True
    assert me["effective_profile"]["name"] == "Global settings"
    assert member.get("/api/me").get_json()["effective_profile"] == me["effective_profile"]


def test_a_user_removed_meanwhile_is_signed_out_at_their_next_request(
    app: Flask, member: Browser
) -> None:
    with transaction(app.extensions["calsync"].sessions) as db:
        db.execute(delete(User).where(User.id == member.user["id"]))  # type: ignore[index]

    assert member.get("/api/me").status_code == 401


def test_losing_the_admin_flag_takes_effect_at_the_next_request(app: Flask, admin: Browser) -> None:
    assert admin.get("/api/users").status_code == 200
    set_user(app, admin.user["id"], is_admin=False)  # type: ignore[index]

    assert admin.get("/api/users").status_code == 403
    assert admin.get("/api/me").get_json()["is_admin"] is False


# -- the real web server -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def web(env: dict[str, str], rt: runtime.Runtime) -> Iterator[tuple[str, int]]:
    """`calsync web` with its default two processes, on a migrated database."""
    port = free_port()
    process = calsync_process(
        {**env, "BASE_URL": f"http://127.0.0.1:{port}"},
        "web",
        "--port",
        str(port),
        "--workers",
        "2",
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, stop_process(process)
            try:  # answered: the processes have loaded the app, not just bound the port
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                probe.request("GET", "/api/auth/csrf")
                probe.getresponse().read()
                probe.close()
                break
            except OSError:
                assert time.monotonic() < deadline, stop_process(process)
                time.sleep(0.2)
        yield "127.0.0.1", port
    finally:
        stop_process(process)


def test_the_web_server_answers_several_requests_on_one_connection(
    web: tuple[str, int],
) -> None:
    connection = http.client.HTTPConnection(*web, timeout=10)
    try:
        connection.request("GET", "/api/auth/csrf")
        reply = connection.getresponse()
        reply.read()
        local = connection.sock.getsockname()
        connection.request("GET", "/api/auth/csrf")
        again = connection.getresponse()
        again.read()

        assert reply.status == again.status == 200
        assert connection.sock.getsockname() == local  # the same TCP connection
    finally:
        connection.close()


def test_clients_slow_to_send_their_request_do_not_hold_up_the_others(
    web: tuple[str, int],
) -> None:
    # As many stalled clients as there are processes: with one request per process, they
    # would hold every process until gunicorn's 30 s timeout.
    stalled = [socket.create_connection(web, timeout=10) for _ in range(2)]
    try:
        for s in stalled:
            s.sendall(b"GET /api/auth/csrf HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never ends
        time.sleep(0.5)
        started = time.monotonic()
        connection = http.client.HTTPConnection(*web, timeout=10)
        connection.request("GET", "/api/auth/csrf")
        reply = connection.getresponse()
        reply.read()
        connection.close()

        assert reply.status == 200
        assert time.monotonic() - started < 5
    finally:
        for s in stalled:
            s.close()
