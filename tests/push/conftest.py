"""Push fixtures: the Graph emulator, calsync's app served over real HTTP on 127.0.0.1 (the
emulator validates and notifies its webhook), and a user whose calendar is a Graph mailbox."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests
from flask import Flask
from rq import Queue, SimpleWorker
from sqlalchemy import select
from werkzeug.serving import make_server

from calendars.graph_fixtures import CLIENT_ID, CLIENT_SECRET, connect, graph_session, new_mailbox
from calsync.calendars import graph as graph_module
from calsync.db import transaction
from calsync.models import (
    Connection,
    Organization,
    PushChannel,
    SyncProfile,
    SyncRun,
    User,
    utcnow,
)
from calsync.runtime import QUEUE_MAINTENANCE, Runtime
from calsync.sandbox.graph import GraphEmulator


@pytest.fixture(scope="session")
def graph() -> Iterator[GraphEmulator]:
    # Not the calendar tests' emulator: these tests move its clock.
    with GraphEmulator(seed=23, tls=True) as emu:
        yield emu


@pytest.fixture
def time_passes(
    graph: GraphEmulator, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[timedelta], datetime]]:
    """Moves time forward for Graph (the emulator's clock) and for calsync's Graph adapter,
    which dates its expiry requests by its own clock; returns calsync's "now" to pass on.
    Put back after the test."""
    moved = [timedelta(0)]

    class Later(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return datetime.now(tz) + moved[0]

    monkeypatch.setattr(graph_module, "datetime", Later)

    def advance(delta: timedelta) -> datetime:
        graph.advance_clock(delta.total_seconds())
        moved[0] += delta
        return utcnow() + moved[0]

    yield advance
    graph.advance_clock(-moved[0].total_seconds())


class LiveServer:
    """A real HTTP server on 127.0.0.1 whose app is given once the port is known (the app's
    BASE_URL must name the port)."""

    def __init__(self) -> None:
        self.app: Flask | None = None
        self.server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None, "serve(app) first"
        return self.app(environ, start_response)

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


@pytest.fixture
def live_server() -> Iterator[LiveServer]:
    server = LiveServer()
    yield server
    server.stop()


@pytest.fixture
def env(env: dict[str, str], live_server: LiveServer) -> dict[str, str]:
    return {
        **env,
        "BASE_URL": live_server.url,
        "MICROSOFT_CLIENT_ID": CLIENT_ID,
        "MICROSOFT_CLIENT_SECRET": CLIENT_SECRET,
        # The SuiteCRM emulator listens on 127.0.0.1, which the SSRF guard refuses by default.
        "CALSYNC_URL_ALLOWED_HOSTS": "127.0.0.1",
    }


@pytest.fixture
def webhooks(app: Flask, live_server: LiveServer) -> str:
    """calsync's app, answering on BASE_URL; returns the Graph webhook's address."""
    live_server.app = app
    return f"{live_server.url}/webhooks/graph"


@dataclass
class Mailbox:
    """A calsync user whose calendar connection is a Graph mailbox of the emulator."""

    user_id: int
    connection_id: int
    address: str
    emu: GraphEmulator

    def channel(self, rt: Runtime) -> PushChannel | None:
        with transaction(rt.sessions) as session:
            return session.scalar(
                select(PushChannel).where(PushChannel.connection_id == self.connection_id)
            )

    def subscriptions(self) -> list[Any]:
        return [s for s in self.emu._subs.values() if s.mailbox == self.address.lower()]

    def update(self, rt: Runtime, **values: Any) -> None:
        with transaction(rt.sessions) as session:
            connection = session.get(Connection, self.connection_id)
            assert connection is not None
            for name, value in values.items():
                setattr(connection, name, value)

    def runs(self, rt: Runtime) -> list[SyncRun]:
        with transaction(rt.sessions) as session:
            query = select(SyncRun).where(SyncRun.user_id == self.user_id).order_by(SyncRun.id)
            return list(session.scalars(query))


def add_graph_user(
    rt: Runtime,
    emu: GraphEmulator,
    *,
    crm: Connection | None = None,
    org: Organization | None = None,
) -> Mailbox:
    address = new_mailbox(emu)
    http = graph_session(emu)
    blob = connect(emu, http, address)
    http.close()
    with transaction(rt.sessions) as session:
        org = org or Organization(tenant_id=f"tenant-{address}", name="Contoso")
        org.profiles = [
            SyncProfile(
                name="Global",
                is_global=True,
                settings={"direction": "calendar_to_crm", "record_option": "all"},
            )
        ]
        user = User(organization=org, external_id=address, email=address)
        calendar = Connection(
            kind="calendar",
            provider="office365",
            account=address,
            details={
                "account_type": "office365",
                "authority_host": emu.url,
                "graph_base": f"{emu.url}/v1.0",
                "ca_file": emu.ca_file,
            },
            secret=blob,
            auto_sync_enabled=True,
        )
        user.connections = [calendar, *([crm] if crm else [])]
        session.add(org)
        session.flush()
        return Mailbox(user.id, calendar.id, address, emu)


@pytest.fixture
def mailbox(rt: Runtime, graph: GraphEmulator, webhooks: str) -> Mailbox:
    return add_graph_user(rt, graph)


def run_maintenance_jobs(rt: Runtime) -> None:
    """What a worker does with the maintenance queue, in this process."""
    SimpleWorker([Queue(QUEUE_MAINTENANCE, connection=rt.redis)], connection=rt.redis).work(
        burst=True
    )


def post_json(url: str, body: Any) -> requests.Response:
    return requests.post(url, json=body, timeout=10)
