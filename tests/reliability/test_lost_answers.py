"""A write whose answer is lost may still land later. The retry must not leave two copies."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from calsync.crm.suitecrm import SuiteCrmAdapter
from calsync.sync import SyncSettings


class LateCreateSession(requests.Session):
    """Sends the first meeting-creating request `delay` seconds late, in the background,
    and tells the caller it timed out at once: the CRM applies the write after the client
    gave up (a slow database, a proxy that timed out first)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.armed = True
        self.landed = threading.Event()

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        data = kwargs.get("data") or {}
        creating = (
            isinstance(data, dict)
            and data.get("method") in ("set_entry", "set_entries")
            and '"id"' not in str(data.get("rest_data", ""))
        )
        if not (self.armed and creating):
            return super().request(method, url, *args, **kwargs)
        self.armed = False

        def later() -> None:
            time.sleep(self.delay)
            requests.request(method, url, *args, **kwargs)
            self.landed.set()

        threading.Thread(target=later, daemon=True).start()
        raise requests.Timeout("read timed out (the CRM will still apply the write)")


@pytest.mark.parametrize("pair", ["graph"], indirect=True)
def test_a_create_that_lands_after_its_retry_leaves_one_meeting_after_the_next_sync(
    pair,
) -> None:  # type: ignore[no-untyped-def]
    pair.settings = SyncSettings(direction="calendar_to_crm", record_option="all")
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    pair.calendar.create("Pricing call", start, 30, "g@c.test")
    late = LateCreateSession(delay=1.0)
    crm = SuiteCrmAdapter(pair.crm_credentials, session=late, timeout=5)

    first = pair.sync_with(crm=crm)
    assert first.errors  # the create "timed out"
    pair.sync()  # the retry, before the late write has landed
    assert late.landed.wait(5)
    pair.sync()  # a later run sees both

    names = [title for title, _ in pair.crm.contents()]
    assert names == ["Pricing call"]


class OneByOne(SuiteCrmAdapter):
    """Writes one meeting per request, so a refused request fails that meeting alone."""

    max_batch = 1  # type: ignore[assignment]


class FailingCreateSession(requests.Session):
    """Refuses (before sending) every request that would write a meeting titled `title`."""

    def __init__(self, title: str) -> None:
        super().__init__()
        self.title = title

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        data = kwargs.get("data") or {}
        if isinstance(data, dict) and self.title in str(data.get("rest_data", "")):
            raise requests.ConnectionError("connection reset (nothing was sent)")
        return super().request(method, url, *args, **kwargs)


@pytest.mark.parametrize("pair", ["graph", "google"], indirect=True)
def test_an_event_copied_by_a_partly_failed_run_and_then_deleted_is_deleted_in_the_crm(
    pair,
) -> None:  # type: ignore[no-untyped-def]
    pair.settings = SyncSettings(direction="calendar_to_crm", record_option="all")
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    pair.calendar.create("Existing", start, 30, "g@c.test")
    assert pair.sync().ok
    copied = pair.calendar.create("Copied then deleted", start + timedelta(hours=2), 30, "g@c")
    pair.calendar.create("Fails once", start + timedelta(hours=4), 30, "g@c.test")
    failing = OneByOne(pair.crm_credentials, session=FailingCreateSession("Fails once"))

    partly = pair.sync_with(crm=failing)
    assert partly.errors and partly.crm.created == 1  # "Copied then deleted" went across
    pair.calendar.delete(copied)
    assert pair.sync().ok

    assert sorted(title for title, _ in pair.crm.contents()) == ["Existing", "Fails once"]
