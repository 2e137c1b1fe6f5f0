"""Batched writes of the Microsoft Graph adapter (`write_many`), over real HTTP against the
Graph emulator's JSON $batch.

Each test connects a mailbox of its own through the real OAuth code flow; the emulator
counts every request, so the number of $batch calls is measured where Graph would see it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from calsync.calendars.graph import GraphCalendar
from calsync.provider_errors import ProviderConflict, ProviderError, ProviderTransientError
from calsync.sandbox.graph import GraphEmulator
from calsync.sync import Event, Invitee, Recurrence
from calsync.sync.adapters import BatchWriter, Write
from calsync.sync.model import WITHHELD_INVITEES

from .graph_fixtures import connect, graph_adapter, graph_emulator, graph_session, new_mailbox

__all__ = ["graph_emulator"]  # a fixture, used by name

BATCH = "POST /v1.0/$batch"
CREATE = "POST /v1.0/me/events"


@pytest.fixture
def graph(graph_emulator: GraphEmulator) -> Iterator[GraphEmulator]:
    graph_emulator.reset_knobs()
    yield graph_emulator
    graph_emulator.reset_knobs()


@pytest.fixture
def session(graph: GraphEmulator) -> Iterator[requests.Session]:
    http = graph_session(graph)
    yield http
    http.close()


@pytest.fixture
def address(graph: GraphEmulator) -> str:
    return new_mailbox(graph)


class Sleeps(list[float]):
    """Records the waits the adapter asks for instead of sleeping them."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_adapter(graph: GraphEmulator, session: requests.Session, address: str, sleeps: Sleeps):
    blob = connect(graph, session, address)

    def make(**kw: Any) -> GraphCalendar:
        kw.setdefault("sleep", sleeps)
        return graph_adapter(graph, session, blob, **kw)

    return make


@pytest.fixture
def adapter(make_adapter) -> GraphCalendar:
    return make_adapter()


def meeting(n: int = 0, **kw: Any) -> Event:
    start = datetime(2026, 2, 2, 9, tzinfo=UTC) + timedelta(hours=n)
    base: dict[str, Any] = {
        "title": f"Call {n}",
        "start": start,
        "end": start + timedelta(minutes=30),
        "timezone": None,
    }
    base.update(kw)
    return Event(**base)


def creates(count: int, prefix: str = "link") -> list[Write]:
    return [Write("create", event=meeting(i), link_id=f"{prefix}-{i}") for i in range(count)]


def _seed_for(pattern: list[bool], rate: float) -> int:
    """A fault RNG seed whose first rolls are throttled (True) or not, as asked."""
    for candidate in range(100_000):
        rng = random.Random(candidate)
        if [rng.random() < rate for _ in pattern] == pattern:
            return candidate
    raise AssertionError("no seed")


# -- the interface ---------------------------------------------------------------------------


def test_the_graph_adapter_offers_batched_writes_of_twenty(adapter):
    assert isinstance(adapter, BatchWriter)
    assert adapter.max_batch == 20


# -- creates ----------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 20, 45])
def test_n_creates_take_one_batch_request_per_twenty(graph, address, adapter, count):
    graph.counter.reset()
    results = adapter.write_many(creates(count))
    assert graph.counter.get(BATCH) == math.ceil(count / 20)
    assert graph.counter.get(CREATE) == count  # each sub-request is still one create
    assert [r.title for r in results] == [f"Call {i}" for i in range(count)]  # in order
    assert len(graph.events(address)) == count


def test_each_created_event_comes_back_with_its_id_version_and_link_id(graph, address, adapter):
    results = adapter.write_many(creates(3))
    stored = {e["id"]: e for e in graph.events(address)}
    for i, made in enumerate(results):
        assert made.link_id == f"link-{i}"
        assert stored[made.calendar_id]["transactionId"] == f"calsync-link-{i}"
        assert made.calendar_version == stored[made.calendar_id]["changeKey"]


def test_batched_creates_are_found_by_link_id_after_the_links_are_lost(make_adapter):
    results = make_adapter().write_many(creates(3, "lost"))
    fresh = make_adapter()  # a new run: nothing remembered
    for i, made in enumerate(results):
        found = fresh.find_by_link_id(f"lost-{i}")
        assert found is not None and found.calendar_id == made.calendar_id


def test_a_batch_sent_again_does_not_double_its_creates(graph, address, adapter):
    first = adapter.write_many(creates(3))
    again = adapter.write_many(creates(3))
    assert [e.calendar_id for e in again] == [e.calendar_id for e in first]
    assert len(graph.events(address)) == 3


def test_a_quiet_create_lists_withheld_invitees_in_the_body_and_invites_nobody(
    graph, address, adapter
):
    guests = (Invitee("bob@fabrikam.com", "Bob Buyer"),)
    quiet = meeting(extra={WITHHELD_INVITEES: guests})
    (made,) = adapter.write_many([Write("create", event=quiet, link_id="quiet", notify=False)])
    raw = next(e for e in graph.events(address) if e["id"] == made.calendar_id)
    assert raw["attendees"] == []
    assert "Bob Buyer <bob@fabrikam.com>" in raw["body"]["content"]
    assert graph.invitations.for_event(made.calendar_id) == []


def test_a_create_with_notify_writes_attendees_and_graph_invites_them(graph, address, adapter):
    loud = meeting(invitees=(Invitee("bob@fabrikam.com", "Bob"),))
    (made,) = adapter.write_many([Write("create", event=loud, link_id="loud", notify=True)])
    assert [i.email for i in made.invitees] == ["bob@fabrikam.com"]
    assert [i.recipient for i in graph.invitations.for_event(made.calendar_id)] == [
        "bob@fabrikam.com"
    ]


def test_withheld_attendees_are_marked_on_the_written_event(adapter):
    guests = (Invitee("bob@fabrikam.com"),)
    (made,) = adapter.write_many(
        [Write("create", event=meeting(invitees=guests), link_id="held", notify=False)]
    )
    assert made.extra["attendees_withheld"] is True and made.invitees == ()


def test_a_series_is_written_whole_through_the_single_write_path(graph, adapter):
    first = datetime(2026, 1, 5, 9, tzinfo=UTC)
    series = meeting(
        start=first,
        end=first + timedelta(minutes=30),
        recurrence=Recurrence("FREQ=WEEKLY;COUNT=4", cancelled=(first + timedelta(days=7),)),
    )
    graph.counter.reset()
    made, single = adapter.write_many(
        [
            Write("create", event=series, link_id="series"),
            Write("create", event=meeting(9), link_id="one"),
        ]
    )
    assert made.recurrence == series.recurrence and made.link_id == "series"
    assert single.title == "Call 9"
    assert graph.counter.get(BATCH) == 1 and graph.counter.get(CREATE) == 2


# -- updates and deletes ----------------------------------------------------------------------


def test_updates_and_deletes_share_one_batch_and_updates_return_new_versions(
    graph, address, adapter
):
    a, b, c = adapter.write_many(creates(3))
    graph.counter.reset()
    results = adapter.write_many(
        [
            Write(
                "update",
                item_id=a.calendar_id,
                event=meeting(0, title="A v2", calendar_version=a.calendar_version),
            ),
            Write("update", item_id=b.calendar_id, event=meeting(1, title="B v2")),
            Write("delete", item_id=c.calendar_id),
        ]
    )
    assert graph.counter.get(BATCH) == 1
    assert graph.counter.get("PATCH /v1.0/me/events/<event_id>") == 2
    assert graph.counter.get("DELETE /v1.0/me/events/<event_id>") == 1
    new_a, new_b, deleted = results
    assert (new_a.title, new_b.title, deleted) == ("A v2", "B v2", None)
    assert new_a.calendar_version not in (None, a.calendar_version)
    assert new_b.calendar_version not in (None, b.calendar_version)
    assert new_a.calendar_version == adapter.get(a.calendar_id).calendar_version
    assert {e["id"] for e in graph.events(address)} == {a.calendar_id, b.calendar_id}


def test_two_writes_to_one_event_never_share_a_batch(graph, address, adapter):
    (made,) = adapter.write_many(creates(1))
    graph.counter.reset()
    updated, deleted = adapter.write_many(
        [
            Write("update", item_id=made.calendar_id, event=meeting(0, title="Last words")),
            Write("delete", item_id=made.calendar_id),
        ]
    )
    assert updated.title == "Last words" and deleted is None
    assert graph.counter.get(BATCH) == 2 and graph.events(address) == []


def test_deleting_an_event_already_gone_is_no_error(graph, address, adapter):
    (made,) = adapter.write_many(creates(1))
    graph.remove_event(address, made.calendar_id)
    assert adapter.write_many([Write("delete", item_id=made.calendar_id)]) == [None]


# -- failures stay with their write ------------------------------------------------------------


def test_a_failed_write_is_recorded_against_it_alone(graph, address, adapter):
    (kept,) = adapter.write_many(creates(1))
    graph.change_event(address, kept.calendar_id, {"subject": "Edited in Outlook"})
    results = adapter.write_many(
        [
            Write("create", event=meeting(5), link_id="fine"),
            Write("update", item_id="AAMkAgone", event=meeting(6)),
            Write(
                "update",
                item_id=kept.calendar_id,
                event=meeting(0, calendar_version=kept.calendar_version),
            ),
            Write("create", event=Event(title="No times"), link_id="broken"),
            Write("delete", item_id=kept.calendar_id + "x"),
            Write("delete"),
        ]
    )
    fine, gone, stale, broken, missing, aimless = results
    assert isinstance(fine, Event) and fine.title == "Call 5"
    assert isinstance(gone, ProviderError) and "no longer exists" in gone.message
    assert isinstance(stale, ProviderConflict)
    assert isinstance(broken, ProviderError) and "no start or end" in broken.message
    assert missing is None  # not there, which is what a delete asks
    assert isinstance(aimless, ValueError)  # no event named: refused before sending
    assert adapter.get(kept.calendar_id).title == "Edited in Outlook"  # the stale write lost


def test_a_throttled_write_is_sent_again_alone_after_its_retry_after(
    graph, address, adapter, sleeps
):
    # The batch itself passes, then exactly one of its five sub-requests is throttled;
    # the retry (one batch, one sub-request) passes.
    graph.set_faults(rate_429=0.5, retry_after_seconds=2)
    graph.reseed(_seed_for([False, True, False, False, False, False, False, False], 0.5))
    graph.counter.reset()
    results = adapter.write_many(creates(5))
    assert sleeps == [2.0]
    assert graph.counter.get(BATCH) == 2 and graph.counter.get(CREATE) == 6
    assert all(isinstance(r, Event) for r in results)
    assert sorted(e["transactionId"] for e in graph.events(address)) == [
        f"calsync-link-{i}" for i in range(5)
    ]


def test_a_write_throttled_past_the_retry_bound_fails_alone_as_transient(
    graph, address, make_adapter, sleeps
):
    # Two requests left in the mailbox's window: the third create is throttled each time.
    graph.set_limits(enabled=True, max_requests=2, retry_after_seconds=1)
    results = make_adapter(max_retries=2).write_many(creates(3))
    throttled = [r for r in results if isinstance(r, ProviderTransientError)]
    assert len(throttled) == 1 and throttled[0].retry_after == 1.0
    assert sum(isinstance(r, Event) for r in results) == 2
    assert sleeps == [1.0, 1.0] and len(graph.events(address)) == 2


def test_an_expired_access_token_inside_a_batch_is_refreshed_once(graph, address, adapter):
    adapter.write_many(creates(1, "before"))
    graph.expire_tokens()
    results = adapter.write_many(creates(2, "after"))
    assert all(isinstance(r, Event) for r in results)
    assert len(graph.events(address)) == 3
