"""Push in the sandbox: with "Enable automatic calendar sync" on, a change made in the Sandbox
Outlook mailbox reaches the Sandbox CRM by a push notification, not by the schedule. The
sandbox's Graph emulator subscribes calsync's webhook at BASE_URL over plain http
(http://localhost:<port>, as `make run` serves http://localhost:3000), validates it, and
notifies it; a real `calsync worker` opens the channel and runs the push sync."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from api_helpers import Browser
from flask import Flask
from rq import Queue
from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer, make_server

from calsync import jobs
from calsync.db import transaction
from calsync.models import PushChannel, SyncRun
from calsync.runtime import QUEUE_MAINTENANCE, Runtime
from calsync.sandbox.demo import CRM_PASSWORD, CRM_USER, Sandbox
from e2e.test_sync_jobs import run_worker_until_idle
from processes import calsync_process, stop_process

from .test_sandbox_end_to_end import connect_sandbox_outlook

EMAIL = "ada@example.com"
MEETING = "Demo \u2013 Fabrikam"
RENAMED = "Demo \u2013 Fabrikam (moved to the showroom)"
FINISHED = ("succeeded", "partial", "failed")
# The worker's scheduler picks up the debounced push sync within seconds; generous for a
# loaded machine.
WAIT_SECONDS = 90


class Web:
    """`calsync web` as a real HTTP server on localhost, its port known before the app
    exists (BASE_URL, which the app is configured with, names it)."""

    def __init__(self) -> None:
        self.app: Flask | None = None
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.base_url = f"http://localhost:{self.server.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None, "serve the app first"
        return self.app(environ, start_response)

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def web() -> Iterator[Web]:
    server = Web()
    yield server
    server.stop()


@pytest.fixture
def env(env: dict[str, str], web: Web) -> dict[str, str]:
    # Plain http on localhost, as in development: only the sandbox accepts it.
    return {**env, "BASE_URL": web.base_url}


def wait_for(check: Callable[[], Any], what: str, output: Callable[[], str]) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"no {what} within {WAIT_SECONDS} s\n{output()[-3000:]}")


def channels(rt: Runtime) -> list[PushChannel]:
    with transaction(rt.sessions) as session:
        return list(session.scalars(select(PushChannel)))


def runs(rt: Runtime) -> list[SyncRun]:
    with transaction(rt.sessions) as session:
        return list(session.scalars(select(SyncRun).order_by(SyncRun.id)))


def test_a_change_in_sandbox_outlook_reaches_the_sandbox_crm_by_push(
    app: Flask, rt: Runtime, sandbox: Sandbox, env: dict[str, str], web: Web
) -> None:
    web.app = app
    admin = Browser(app)
    admin.sign_in(EMAIL, name="Ada")
    chosen = admin.patch("/api/organization", json={"crm_type": "sandbox"})
    assert chosen.status_code == 200, chosen.get_json()
    assert connect_sandbox_outlook(admin, sandbox) == {"connected": ["calendar"]}
    crm = admin.put("/api/connections/crm", json={"user_name": CRM_USER, "password": CRM_PASSWORD})
    assert crm.status_code == 200, crm.get_json()
    queued = admin.post("/api/sync")
    assert queued.status_code == 202, queued.get_json()
    output = run_worker_until_idle(env)
    assert [r.status for r in runs(rt)] == ["succeeded"], output[-3000:]
    assert MEETING in {m["name"] for m in sandbox.crm.live_meetings()}

    enabled = admin.patch("/api/connections/calendar", json={"auto_sync_enabled": True})
    assert enabled.status_code == 200, enabled.get_json()
    worker = calsync_process(env, "worker")
    logs: list[str] = []

    def worker_output() -> str:
        if not logs:
            logs.append(stop_process(worker))
        return logs[0]

    try:
        # What the scheduler does every 5 minutes: the worker subscribes through the sandbox
        # adapter, and the emulator validates calsync's webhook before it answers.
        Queue(QUEUE_MAINTENANCE, connection=rt.redis).enqueue(jobs.renew_push_channels)
        [channel] = wait_for(lambda: channels(rt), "push channel", worker_output)
        assert channel.provider == "graph"
        [subscription] = sandbox.graph._subs.values()
        assert subscription.id == channel.channel_id
        assert subscription.notification_url == f"{web.base_url}/webhooks/graph"

        [event] = [e for e in sandbox.graph.events(EMAIL) if e["subject"] == MEETING]
        sandbox.graph.change_event(EMAIL, event["id"], {"subject": RENAMED})
        sandbox.graph.wait_for_notifications()
        assert sandbox.graph.notification_log[-1]["status"] == 202

        def renamed() -> bool:
            names = {m["name"] for m in sandbox.crm.live_meetings()}
            return RENAMED in names and MEETING not in names

        wait_for(renamed, "renamed CRM meeting", worker_output)
        wait_for(lambda: runs(rt)[-1].status in FINISHED, "finished push sync", worker_output)
    finally:
        output = worker_output()

    first, pushed = runs(rt)
    assert first.trigger == "manual"
    assert pushed.trigger == "push"
    assert pushed.status == "succeeded", (pushed.errors, output[-3000:])
