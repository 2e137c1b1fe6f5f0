"""An expired cursor (Graph's 410 SyncStateNotFound, Google's 410 fullSyncRequired, a
SuiteCRM cursor the connector no longer reads) means a full listing, never a duplicate."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta


def _seed(pair) -> None:  # type: ignore[no-untyped-def]
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    for n in range(3):
        pair.calendar.create(f"Calendar call {n}", start + timedelta(hours=n), 30, "g@c.test")
    for n in range(2):
        pair.crm.create(f"CRM visit {n}", start + timedelta(days=1, hours=n), 60, "g@c.test")


def _each_once(side) -> Counter[str]:  # type: ignore[no-untyped-def]
    return Counter(title for title, _start in side.contents())


def test_an_expired_calendar_cursor_lists_everything_again_and_copies_nothing_twice(pair) -> None:  # type: ignore[no-untyped-def]
    _seed(pair)
    pair.sync()
    if pair.calendar.kind == "graph":
        pair.calendar.emu.expire_delta_tokens()
    else:
        pair.calendar.emu.expire_sync_tokens()
    later = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=5)
    pair.calendar.create("Added while the cursor expired", later, 30, "g@c.test")

    result = pair.sync()

    assert result.ok, result.to_dict()
    assert result.full_listing.get("calendar") is True
    crm, calendar = _each_once(pair.crm), _each_once(pair.calendar)
    assert set(crm.values()) == {1} and set(calendar.values()) == {1}
    assert crm == calendar
    assert "Added while the cursor expired" in crm


def test_an_unreadable_crm_cursor_lists_everything_again_and_copies_nothing_twice(pair) -> None:  # type: ignore[no-untyped-def]
    _seed(pair)
    pair.sync()
    pair.store.save_cursor("crm", "suitecrm-cursor-from-an-older-calsync")

    result = pair.sync()

    assert result.ok, result.to_dict()
    assert result.full_listing.get("crm") is True
    crm, calendar = _each_once(pair.crm), _each_once(pair.calendar)
    assert set(crm.values()) == {1} and set(calendar.values()) == {1}
    assert crm == calendar
