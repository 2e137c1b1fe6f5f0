"""Fixtures of the reliability suite: shared TLS emulators and a migrated database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from calsync import migrate
from calsync.db import make_engine, make_sessionmaker
from calsync.sandbox.suitecrm import SuiteCrmEmulator
from calsync.store import SqlSyncStore
from calsync.sync import RunResult, SyncSettings, run_sync

from .scenario import CalendarSide, CrmSide, crm_adapter, crm_credentials, new_crm
from .world import World, calendar_for, emulators


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Graph and Google emulators over TLS and one SQLite database; a user per scenario."""
    folder: Path = tmp_path_factory.mktemp("reliability")
    url = f"sqlite:///{folder / 'calsync.sqlite3'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    with emulators() as (graph, google):
        yield World(graph, google, make_sessionmaker(engine))
    engine.dispose()


@dataclass
class Pair:
    """One user's calendar (Graph or Google emulator) and SuiteCRM, synced in process."""

    world: World
    calendar: CalendarSide
    crm: CrmSide
    crm_emu: SuiteCrmEmulator
    store: SqlSyncStore
    make_calendar: Callable[[], Any]
    crm_credentials: dict[str, Any]
    settings: SyncSettings

    def sync(self, **kw: Any) -> RunResult:
        """One run as `jobs.sync_user` makes it; SyncAborted propagates."""
        return run_sync(
            self.make_calendar(),
            crm_adapter(self.crm_credentials),
            self.store,
            self.settings,
            datetime.now(UTC),
            user_email=self.calendar.address,
            **kw,
        )

    def sync_with(self, *, crm: Any) -> RunResult:
        """One run with a CRM adapter of the test's making (e.g. over a hooked session)."""
        return run_sync(
            self.make_calendar(),
            crm,
            self.store,
            self.settings,
            datetime.now(UTC),
            user_email=self.calendar.address,
        )

    def raw_calendar_event(self, item_id: str) -> dict[str, Any]:
        """The emulator's stored dict of an event, to corrupt it past the API's validation."""
        emu = self.calendar.emu
        if self.calendar.kind == "graph":
            return emu.mailbox(self.calendar.address).events[item_id]
        return emu._calendars[self.calendar.address.lower()].events[item_id]


@pytest.fixture(params=["graph", "google"])
def pair(request: pytest.FixtureRequest, world: World) -> Iterator[Pair]:
    """Two way, every record, invitations never: the widest sync, the strictest e-mail rule."""
    calendar, make_calendar = calendar_for(world, request.param)
    crm_emu, crm_user = new_crm(1)
    try:
        user_id = world.new_user(calendar.address)
        yield Pair(
            world,
            calendar,
            CrmSide(crm_emu, crm_user),
            crm_emu,
            SqlSyncStore(world.sessions, user_id),
            make_calendar,
            crm_credentials(crm_emu),
            SyncSettings(direction="two_way", record_option="all", invitations="never"),
        )
    finally:
        crm_emu.stop()
        calendar.session.close()
