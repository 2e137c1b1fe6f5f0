"""The executor's batch path: a side that takes writes in batches (`BatchWriter`) ends a
run exactly where the one-by-one path would, with the same guarantees."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sync_fakes import (
    NOW,
    USER,
    BatchingSide,
    Clock,
    MemorySide,
    SimulatedCrash,
    batching,
    meeting,
)
from test_sync_convergence import (
    PROFILE,
    SeriesWorld,
    World,
    converge,
    converge_series,
    op,
    series_directions,
    series_op,
    sides,
    sync_settings,
)

from calsync.sync import Capabilities, InMemoryStore, SyncSettings, run_sync
from calsync.sync.adapters import Write
from calsync.sync.model import Side

TWO_WAY = SyncSettings(direction="two_way", record_option="all")
_LINK_IDS: dict[int, itertools.count[int]] = {}


def sync(cal: MemorySide, crm: MemorySide, store: InMemoryStore, **kw: Any):  # type: ignore[no-untyped-def]
    # Link ids deterministic (so two worlds compare) and unique across runs.
    ids = _LINK_IDS.setdefault(id(store), itertools.count(1))
    kw.setdefault("new_link_id", lambda: f"L{next(ids)}")
    return run_sync(cal, crm, store, TWO_WAY, NOW, user_email=USER, **kw)


def seeded(batch: int | None, n: int = 10) -> tuple[MemorySide, MemorySide, InMemoryStore]:
    """A calendar with `n` meetings and a CRM with 3, the CRM batching when `batch`."""
    clock = Clock(NOW)
    cal = MemorySide("calendar", Capabilities(), clock)
    crm: MemorySide = MemorySide("crm", Capabilities(), clock)
    if batch:
        crm = BatchingSide("crm", Capabilities(), clock, max_batch=batch)
    for i in range(n):
        cal.user_create(meeting(f"C{i}", start=NOW + timedelta(days=1, hours=i)))
    for i in range(3):
        crm.user_create(meeting(f"R{i}", start=NOW + timedelta(days=2, hours=i)))
    return cal, crm, InMemoryStore()


def snapshot(cal: MemorySide, crm: MemorySide, store: InMemoryStore) -> dict[str, Any]:
    return {
        "calendar": sorted((i, e.title, e.link_id) for i, e in cal.items.items()),
        "crm": sorted((i, e.title, e.link_id) for i, e in crm.items.items()),
        "links": sorted(store.links(), key=lambda lk: lk.link_id),
    }


def counts(result: Any) -> dict[str, Any]:
    data = result.to_dict()
    return {k: data[k] for k in ("calendar", "crm", "skipped", "notes", "conflicts", "errors")}


def test_a_first_sync_in_batches_ends_exactly_like_one_written_at_a_time() -> None:
    one_by_one = seeded(batch=None)
    batched = seeded(batch=4)
    first, second = sync(*one_by_one), sync(*batched)
    assert snapshot(*batched) == snapshot(*one_by_one)
    assert counts(second) == counts(first)
    assert second.crm.created == 10 and second.calendar.created == 3


def test_a_side_gets_its_creates_in_batches_of_at_most_max_batch() -> None:
    cal, crm, store = seeded(batch=4)
    sync(cal, crm, store)
    assert isinstance(crm, BatchingSide)
    assert [len(b) for b in crm.batches] == [4, 4, 2]
    assert [kind for b in crm.batches for kind, _ in b] == ["create"] * 10
    assert not [s for s in crm.sent if s.op != "create"]


def test_a_side_without_write_many_is_still_written_one_by_one() -> None:
    cal, crm, store = seeded(batch=4)
    result = sync(cal, crm, store)
    assert result.calendar.created == 3
    assert [s.op for s in cal.sent] == ["create"] * 3


def test_updates_and_deletes_go_in_batches_too() -> None:
    cal, crm, store = seeded(batch=4)
    sync(cal, crm, store)
    assert isinstance(crm, BatchingSide)
    crm.batches.clear()
    for item_id in sorted(cal.items)[:5]:
        cal.user_update(item_id, title=cal.items[item_id].title + " (moved)")
    for item_id in sorted(cal.items)[5:8]:
        cal.user_delete(item_id)
    result = sync(cal, crm, store)
    assert (result.crm.updated, result.crm.deleted) == (5, 3)
    assert [len(b) for b in crm.batches] == [4, 4]
    assert sync(cal, crm, store).writes == 0


def test_a_refused_write_is_an_error_of_that_meeting_alone() -> None:
    cal, crm, store = seeded(batch=4)
    assert isinstance(crm, BatchingSide)
    crm.refuse_titles = {"C5"}
    result = sync(cal, crm, store)
    assert [(e["action"], e["side"], e["title"]) for e in result.errors] == [
        ("create", "crm", "C5")
    ]
    assert result.errors[0]["message"] == "C5 refused"
    assert result.crm.created == 9
    assert sorted(e.title for e in crm.items.values() if e.title.startswith("C")) == [
        f"C{i}" for i in range(10) if i != 5
    ]
    # The calendar's listing was not fully applied: its cursor stays, the next run retries.
    assert store.get_cursor("calendar") is None
    crm.refuse_titles = set()
    again = sync(cal, crm, store)
    assert again.crm.created == 1 and again.ok
    assert len([e for e in crm.items.values() if e.title == "C5"]) == 1


def test_a_batch_refused_as_a_whole_is_an_error_of_each_of_its_meetings() -> None:
    cal, crm, store = seeded(batch=4)

    class Down(Exception):
        pass

    def refuse(writes: Any) -> list[Any]:
        raise Down("CRM is down")

    crm.write_many = refuse  # type: ignore[attr-defined]
    result = sync(cal, crm, store)
    assert len(result.errors) == 10
    assert {e["message"] for e in result.errors} == {"CRM is down"}
    assert not [e for e in crm.items.values() if e.title.startswith("C")]
    # Every create was announced before it was sent: the links wait, pending, for the retry.
    assert sorted(lk.pending for lk in store.links() if lk.crm_id is None) == ["crm"] * 10


def test_the_pending_links_of_a_batch_are_saved_before_it_is_sent() -> None:
    cal, crm, store = seeded(batch=4)
    assert isinstance(crm, BatchingSide)
    seen: list[list[str | None]] = []
    original = crm.write_many

    def checking(writes: Any) -> list[Any]:
        seen.append([getattr(store.get_link(w.link_id), "pending", None) for w in writes])
        return original(writes)

    crm.write_many = checking  # type: ignore[method-assign]
    sync(cal, crm, store)
    assert seen == [["crm"] * 4, ["crm"] * 4, ["crm"] * 2]


def test_a_run_that_dies_inside_a_batch_neither_loses_nor_doubles_on_the_next_run() -> None:
    cal, crm, store = seeded(batch=4)
    assert isinstance(crm, BatchingSide)
    original = crm.write_many

    def dying(writes: Any) -> list[Any]:
        # Two of the batch land, then the worker is killed.
        original(list(writes)[:2])
        raise SimulatedCrash("killed mid-batch")

    crm.write_many = dying  # type: ignore[method-assign]
    with pytest.raises(SimulatedCrash):
        sync(cal, crm, store)
    crm.write_many = original  # type: ignore[method-assign]
    sync(cal, crm, store)
    titles = sorted(e.title for e in crm.items.values())
    assert titles == sorted([f"C{i}" for i in range(10)] + ["R0", "R1", "R2"])
    assert all(lk.pending is None for lk in store.links())
    assert sync(cal, crm, store).writes == 0


def test_an_answer_missing_for_some_writes_fails_the_whole_batch() -> None:
    cal, crm, store = seeded(batch=4, n=3)
    assert isinstance(crm, BatchingSide)
    original = crm.write_many
    crm.write_many = lambda writes: original(writes)[:-1]  # type: ignore[method-assign]
    result = sync(cal, crm, store)
    assert len(result.errors) == 3
    assert "answered 2 of the 3 writes" in result.errors[0]["message"]


def test_progress_is_reported_while_batches_are_written() -> None:
    cal, crm, store = seeded(batch=4, n=120)
    reports: list[tuple[int, int]] = []

    def progress(phase: str, done: int, total: int) -> None:
        if phase == "writing":
            reports.append((done, total))

    sync(cal, crm, store, progress=progress)
    total = reports[-1][1]
    assert reports[0] == (0, total) and reports[-1] == (total, total)
    assert [d for d, _ in reports] == sorted(d for d, _ in reports)
    assert len(reports) >= 3


def test_write_is_what_the_batch_path_hands_the_adapter() -> None:
    cal, crm, store = seeded(batch=4, n=1)
    assert isinstance(crm, BatchingSide)
    got: list[Write] = []
    original = crm.write_many

    def keep(writes: Any) -> list[Any]:
        got.extend(writes)
        return original(writes)

    crm.write_many = keep  # type: ignore[method-assign]
    sync(cal, crm, store)
    (write,) = got
    assert write.kind == "create" and write.event is not None
    assert write.link_id == write.event.link_id and write.link_id is not None
    assert write.notify is False


# -- the convergence properties, with both sides taking writes in batches -------------------


class BatchedWorld(World):
    def __init__(self, *args: Any, max_batch: int = 3, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.sides = {side: batching(s, max_batch) for side, s in self.sides.items()}


class BatchedSeriesWorld(SeriesWorld):
    def __init__(self, *args: Any, max_batch: int = 3, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.sides = {side: batching(s, max_batch) for side, s in self.sides.items()}


BATCHED = settings(PROFILE, max_examples=max(50, PROFILE.max_examples // 3))


@BATCHED
@given(
    s=sync_settings,
    steps=st.lists(op, min_size=12, max_size=40),
    seed=st.integers(0, 2**16),
    loud=st.booleans(),
    max_batch=st.integers(2, 5),
)
def test_batched_sides_converge_despite_failures_and_crashes_mid_batch(
    s: SyncSettings, steps: list, seed: int, loud: bool, max_batch: int
) -> None:
    converge(BatchedWorld(s, flaky=True, seed=seed, loud=loud, max_batch=max_batch), steps)


@BATCHED
@given(
    s=sync_settings,
    steps=st.lists(op, min_size=12, max_size=40),
    seed=st.integers(0, 2**16),
    loud=st.booleans(),
)
def test_batched_sides_converge_when_creates_land_after_their_answer_was_lost(
    s: SyncSettings, steps: list, seed: int, loud: bool
) -> None:
    converge(BatchedWorld(s, flaky=True, seed=seed, loud=loud, late=True), steps)


@BATCHED
@given(
    series_side=sides,
    direction=series_directions,
    steps=st.lists(series_op, min_size=3, max_size=25),
    flaky=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_expanded_series_converge_through_batches(
    series_side: Side, direction: str, steps: list, flaky: bool, seed: int
) -> None:
    converge_series(BatchedSeriesWorld(series_side, direction, flaky, seed), steps)
