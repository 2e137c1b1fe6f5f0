"""A side that suddenly lists nothing (another calendar chosen, a CRM that lost the
meetings) stops the run with a sentence for the user, and nothing is deleted anywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from calsync.sync import StorageEmpty

from .scenario import crm_credentials, new_crm
from .world import calendar_for


def _linked_pair(pair) -> tuple[list, list]:  # type: ignore[no-untyped-def]
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=3)
    for n in range(4):
        pair.calendar.create(f"Demo {n}", start + timedelta(hours=n), 30, "g@c.test")
        pair.crm.create(f"Visit {n}", start + timedelta(days=1, hours=n), 30, "g@c.test")
    assert pair.sync().ok
    return sorted(pair.calendar.contents()), sorted(pair.crm.contents())


def test_another_empty_calendar_stops_the_run_and_deletes_no_crm_meeting(pair) -> None:  # type: ignore[no-untyped-def]
    _calendar_before, crm_before = _linked_pair(pair)
    # The user picked another (empty) calendar: the connection is replaced and, as
    # connections.replace_connection does, the calendar cursor forgotten.
    other, make_other = calendar_for(pair.world, pair.calendar.kind)
    pair.make_calendar = make_other
    pair.store.save_cursor("calendar", None)

    with pytest.raises(StorageEmpty) as stopped:
        pair.sync()

    assert stopped.value.side == "calendar"
    assert "calendar" in stopped.value.message.lower()
    assert sorted(pair.crm.contents()) == crm_before
    assert other.contents() == []
    other.session.close()


def test_a_crm_that_suddenly_lists_nothing_stops_the_run_and_deletes_no_calendar_event(
    pair,
) -> None:  # type: ignore[no-untyped-def]
    calendar_before, _crm_before = _linked_pair(pair)
    # Another (empty) CRM instance answers at the stored address from now on.
    empty, _user = new_crm(2)
    pair.crm_credentials = crm_credentials(empty)
    pair.store.save_cursor("crm", None)
    try:
        with pytest.raises(StorageEmpty) as stopped:
            pair.sync()
    finally:
        empty.stop()

    assert stopped.value.side == "crm"
    assert sorted(pair.calendar.contents()) == calendar_before
