"""Property: whatever users do on both sides between syncs, the sides end up in step.

Two way: both sides agree. One way: the destination mirrors the source within scope.
Always: no duplicates, no lost events, and a sync after convergence writes nothing.
The second property repeats this with sides that fail writes at random points, and with
runs that "crash" mid-plan; one clean re-run must restore the invariant.

Calendars that cannot suppress invitations ("loud") and every invitation policy are in the
mix: a copy whose invitees were withheld never erases the other side's, nobody is e-mailed
during the first sync (unless "always"), about a meeting that is over, or by a write of
invitees the engine did not want to notify.
"""

from __future__ import annotations

import itertools
import os
import random
from dataclasses import replace
from datetime import timedelta

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sync_fakes import NOW, USER, Clock, FlakySide, MemorySide, SimulatedCrash, meeting

from calsync.sync import (
    Capabilities,
    Event,
    InMemoryStore,
    Invitee,
    NeedsConfirmation,
    StorageEmpty,
    SyncSettings,
    run_sync,
)
from calsync.sync.model import Side, to_utc_instant
from calsync.sync.policies import ended

settings.register_profile(
    "sync-default",
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "sync-thorough",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile(os.environ.get("CALSYNC_SYNC_PROFILE", "sync-default"))

sides = st.sampled_from(["calendar", "crm"])
pick = st.integers(min_value=0, max_value=50)
create = st.tuples(st.just("create"), sides, st.integers(-40, 40), st.booleans())
op = st.one_of(
    create,
    create,
    create,
    st.tuples(st.just("edit"), sides, pick),
    st.tuples(st.just("move"), sides, pick, st.integers(-45, 45)),
    st.tuples(st.just("delete"), sides, pick),
    st.tuples(st.just("invitees"), sides, pick, st.booleans()),
    st.tuples(st.just("cancel"), sides, pick),
    st.tuples(st.just("sync")),
)
sync_settings = st.builds(
    SyncSettings,
    direction=st.sampled_from(["calendar_to_crm", "crm_to_calendar", "two_way"]),
    record_option=st.sampled_from(["related_only", "all"]),
    conflict_policy=st.sampled_from(["most_recent", "calendar_wins", "crm_wins"]),
    invitations=st.sampled_from(["never", "always", "after_first_sync"]),
    sync_invitees=st.booleans(),
)
LOUD = Capabilities(suppress_invitations=False)

WINDOW_START = NOW - timedelta(days=30)
WINDOW_END = NOW + timedelta(days=365)


def in_scope(ev: Event, s: SyncSettings) -> bool:
    if ev.status != "confirmed":
        return False
    if s.record_option == "related_only" and not any(i.email != USER for i in ev.invitees):
        return False
    return to_utc_instant(ev.end) > WINDOW_START and to_utc_instant(ev.start) < WINDOW_END


def shape(ev: Event) -> tuple:
    return (
        ev.title,
        ev.start,
        ev.end,
        ev.timezone,
        ev.status,
        tuple(sorted(i.email for i in ev.invitees)),
    )


def by_title(side: MemorySide) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = {}
    for ev in side.items.values():
        out.setdefault(ev.title, []).append(ev)
    return out


def without_invitees(shape_: tuple) -> tuple:
    return shape_[:-1]


def check_invariant(
    cal: MemorySide, crm: MemorySide, s: SyncSettings, store: InMemoryStore | None = None
) -> None:
    # Copies written without their invitees (withheld, or Sync invitees off) differ in them.
    withheld = {
        lk.id_on(lk.withheld_on)
        for lk in (store.links() if store else [])
        if lk.withheld_on and lk.id_on(lk.withheld_on)
    }
    sides_ = {"calendar": by_title(cal), "crm": by_title(crm)}
    for name, titles in sides_.items():
        dupes = {t: len(v) for t, v in titles.items() if len(v) > 1}
        assert not dupes, f"duplicates on the {name}: {dupes}"
    if s.direction == "two_way":
        pairs = [("calendar", "crm"), ("crm", "calendar")]
    else:
        source = "calendar" if s.direction == "calendar_to_crm" else "crm"
        pairs = [(source, "crm" if source == "calendar" else "calendar")]
    for src, dst in pairs:
        for title, [ev] in sides_[src].items():
            twins = sides_[dst].get(title, [])
            if in_scope(ev, s):
                assert twins, f"lost: {title!r} on the {src} has no copy on the {dst}"
            if twins:
                a, b = shape(twins[0]), shape(ev)
                if {twins[0].id_on(dst), ev.id_on(src)} & withheld:
                    a, b = without_invitees(a), without_invitees(b)
                assert a == b, f"{title!r} differs between sides"
    if s.direction != "two_way":
        src, dst = pairs[0]
        for title, [copy] in sides_[dst].items():
            if copy.link_id:  # a copy we made must still mirror something
                assert title in sides_[src], f"orphan copy {title!r} on the {dst}"


class World:
    def __init__(
        self, s: SyncSettings, flaky: bool, seed: int, loud: bool = False, late: bool = False
    ) -> None:
        self.settings = s
        self.clock = Clock(NOW)
        rng = random.Random(seed)
        self.rng = rng
        kind = FlakySide if flaky else MemorySide
        extra = {"rng": rng, "fault_rate": 0.15, "crash_rate": 0.05} if flaky else {}
        if flaky and late:
            extra["late_rate"] = 0.1
        cal_caps = LOUD if loud else Capabilities()
        self.sides: dict[Side, MemorySide] = {
            "calendar": kind("calendar", cal_caps, self.clock, page_size=2, **extra),
            "crm": kind("crm", Capabilities(), self.clock, page_size=2, **extra),
        }
        self.store = InMemoryStore()
        self.names = itertools.count(1)
        self.link_ids = itertools.count(1)  # deterministic, so a failing example replays
        # Where a user removed invitees (or made a meeting without any), or a meeting was
        # deleted: an empty invitee list there is the user's doing, not the engine's.
        self.emptied: set[tuple[Side, str]] = set()
        self.lossy_links: set[str] = set()
        self.conflicted: set[str] = set()
        self.crashed = False

    def mark_emptied(self, side: Side, item_id: str) -> None:
        self.emptied.add((side, item_id))
        for lk in self.store.links():
            if lk.id_on(side) == item_id:
                self.lossy_links.add(lk.link_id)

    def title(self) -> str:
        return f"T{next(self.names)}"

    def nth(self, side: Side, n: int) -> str | None:
        ids = sorted(self.sides[side].items)
        return ids[n % len(ids)] if ids else None

    def apply(self, step: tuple) -> None:
        kind = step[0]
        if kind == "sync":
            for side in self.sides.values():
                # A create whose answer was lost lands whenever the provider gets to it.
                if isinstance(side, FlakySide) and self.rng.random() < 0.5:
                    side.land_late()
            self.sync()
            return
        side: Side = step[1]
        target = self.sides[side]
        if kind == "create":
            invitees = ("client@example.org",) if step[3] else ()
            new_id = target.user_create(
                meeting(self.title(), start=NOW + timedelta(days=step[2]), invitees=invitees)
            )
            if not invitees:
                self.emptied.add((side, new_id))
            return
        item_id = self.nth(side, step[2])
        if item_id is None:
            return
        ev = target.items[item_id]
        if kind == "edit":
            target.user_update(item_id, title=self.title())
        elif kind == "move":
            delta = timedelta(days=step[3])
            target.user_update(item_id, start=ev.start + delta, end=ev.end + delta)
        elif kind == "delete":
            self.mark_emptied(side, item_id)
            target.user_delete(item_id)
        elif kind == "invitees":
            people = (Invitee("client@example.org"),) if step[3] else ()
            if not people:
                self.mark_emptied(side, item_id)
            target.user_update(item_id, invitees=people)
        elif kind == "cancel":
            target.user_update(item_id, status="cancelled")

    def sync(self) -> None:
        force_delete = confirmed = False
        for _ in range(3):
            try:
                self._run(force_delete, confirmed)
                return
            except StorageEmpty as exc:
                # Legitimate only if the side truly lost every linked item; then the user
                # confirms, as the UI would ask them to.
                side = self.sides[exc.side]  # type: ignore[index]
                linked = {lk.id_on(exc.side) for lk in self.store.links() if lk.id_on(exc.side)}
                assert linked and linked.isdisjoint(side.items), f"false alarm: {exc}"
                force_delete = True
            except NeedsConfirmation as exc:
                cap = max(10, len(self.store.links()) // 5)
                assert max(exc.deletes.values(), default=0) > cap or exc.invitations > 50, exc
                confirmed = True
        raise AssertionError("the user confirmed and the run still did not go ahead")

    def _run(self, force_delete: bool, confirmed: bool) -> None:
        first = self.store.first_sync_completed_at() is None
        before = {name: len(side.sent) for name, side in self.sides.items()}
        try:
            result = run_sync(
                self.sides["calendar"],
                self.sides["crm"],
                self.store,
                self.settings,
                NOW,
                user_email=USER,
                force_delete=force_delete,
                confirmed=confirmed,
                new_link_id=lambda: f"{next(self.link_ids):032x}",
            )
            self.conflicted.update(c["link_id"] for c in result.conflicts)
        except SimulatedCrash:
            self.crashed = True
        finally:
            for name, side in self.sides.items():
                self.check_sent(side, side.sent[before[name] :], first)

    def check_sent(self, side: MemorySide, sent: list, first_sync: bool) -> None:
        policy = self.settings.invitations
        for s in sent:
            if s.notify:
                assert policy != "never", f"notified under 'never': {s}"
                assert not (first_sync and policy == "after_first_sync"), f"first sync: {s}"
                assert not ended(s.event, NOW), f"notified about a meeting that is over: {s}"
            elif side.caps.notify and not side.caps.suppress_invitations and s.op != "delete":
                # (An update may keep attendees the item already has: its own series.)
                added = set(s.invitees) - set(s.previous)
                assert not added, f"attendees written where they get e-mailed: {s}"

    def check_no_invitee_lost(self) -> None:
        """An empty invitee list on a side that shows the meeting's invitees is the user's
        doing: they emptied it, made it without, deleted a twin, or lost a conflict."""
        if self.crashed:
            return  # a crashed run's conflicts are not reported
        for lk in self.store.links():
            if lk.link_id in self.lossy_links | self.conflicted or lk.series_link_id:
                continue
            for side in ("calendar", "crm"):
                item_id = lk.id_on(side)
                ev = self.sides[side].items.get(item_id or "")
                if ev is None or ev.invitees or side == lk.withheld_on:
                    continue
                if self.settings.direction != "two_way" and not self.settings.allows(lk.origin):
                    continue
                assert any((s, lk.id_on(s)) in self.emptied for s in ("calendar", "crm")), (
                    f"invitees of {ev.title!r} on the {side} were erased"
                )

    def calm(self) -> None:
        for side in self.sides.values():
            if isinstance(side, FlakySide):
                side.fault_rate = side.crash_rate = side.late_rate = 0.0
                side.land_late()


def converge(world: World, steps: list[tuple]) -> None:
    for step in steps:
        world.apply(step)
    world.calm()
    world.sync()
    cal, crm = world.sides["calendar"], world.sides["crm"]
    event(f"items on both sides: {min(len(cal.items) + len(crm.items), 20) // 5 * 5}+")
    event(f"withheld links: {sum(1 for lk in world.store.links() if lk.withheld_on) > 0}")
    check_invariant(cal, crm, world.settings, world.store)
    world.check_no_invitee_lost()
    sent = len(cal.sent) + len(crm.sent)
    world.sync()
    assert len(cal.sent) + len(crm.sent) == sent, "a converged sync still wrote something"


@settings(PROFILE)
@given(s=sync_settings, steps=st.lists(op, min_size=12, max_size=40), loud=st.booleans())
def test_sides_converge_after_any_sequence_of_edits(
    s: SyncSettings, steps: list, loud: bool
) -> None:
    converge(World(s, flaky=False, seed=0, loud=loud), steps)


@settings(PROFILE)
@given(
    s=sync_settings,
    steps=st.lists(op, min_size=12, max_size=40),
    seed=st.integers(0, 2**16),
    loud=st.booleans(),
)
def test_sides_converge_despite_failures_mid_plan(
    s: SyncSettings, steps: list, seed: int, loud: bool
) -> None:
    # Syncs inside `steps` hit random faults and crashes; the final sync is clean.
    converge(World(s, flaky=True, seed=seed, loud=loud), steps)


def test_invariant_checker_notices_a_lost_event() -> None:
    s = SyncSettings(direction="two_way", record_option="all")
    world = World(s, flaky=False, seed=0)
    world.sides["calendar"].user_create(meeting("lonely"))
    try:
        check_invariant(world.sides["calendar"], world.sides["crm"], s)
    except AssertionError as exc:
        assert "lost" in str(exc)
    else:
        raise AssertionError("the checker accepted a lost event")
    world.sync()
    check_invariant(world.sides["calendar"], world.sides["crm"], s)


# -- series against a side without native series ------------------------------------------

series_op = st.one_of(
    st.tuples(st.just("series"), st.integers(-10, 20), st.integers(1, 6)),
    st.tuples(st.just("rename"), pick),
    st.tuples(st.just("shift"), pick, st.integers(-3, 3)),
    st.tuples(st.just("drop_series"), pick),
    st.tuples(st.just("exdate"), pick, pick),
    st.tuples(st.just("delete_copy"), pick),
    st.tuples(st.just("move_copy"), pick, st.integers(1, 5)),
    st.tuples(st.just("sync")),
)
series_directions = st.sampled_from(["series_side_to_other", "other_to_series_side", "two_way"])


class SeriesWorld(World):
    """The series side has native series; the other side gets occurrences one by one."""

    def __init__(
        self,
        series_side: Side,
        direction: str,
        flaky: bool,
        seed: int,
        invitations: str = "never",
        loud: bool = False,
    ) -> None:
        other: Side = "crm" if series_side == "calendar" else "calendar"
        if direction == "two_way":
            value = "two_way"
        else:
            src = series_side if direction == "series_side_to_other" else other
            value = "calendar_to_crm" if src == "calendar" else "crm_to_calendar"
        s = SyncSettings(direction=value, record_option="all", invitations=invitations)
        super().__init__(s, flaky, seed, loud=loud)
        self.series_side, self.other = series_side, other
        self.sides[other].caps = replace(self.sides[other].caps, recurrence=False)

    def apply(self, step: tuple) -> None:
        from calsync.sync import Recurrence

        kind = step[0]
        m, c = self.sides[self.series_side], self.sides[self.other]
        if kind == "sync":
            self.sync()
        elif kind == "series":
            start = NOW + timedelta(days=step[1])
            rule = Recurrence(f"FREQ=WEEKLY;COUNT={step[2]}")
            m.user_create(
                meeting(self.title(), start=start, timezone="Europe/Berlin", recurrence=rule)
            )
        elif kind in ("rename", "shift", "drop_series", "exdate"):
            item_id = self.nth(self.series_side, step[1])
            if item_id is None:
                return
            ev = m.items[item_id]
            if kind == "rename":
                m.user_update(item_id, title=self.title())
            elif kind == "shift":
                d = timedelta(hours=step[2])
                m.user_update(item_id, start=ev.start + d, end=ev.end + d)
            elif kind == "drop_series":
                m.user_delete(item_id)
            elif ev.recurrence is not None:
                from calsync.sync.recurrence import expand

                occs = expand(ev, WINDOW_START, WINDOW_END)
                if occs:
                    victim = occs[step[2] % len(occs)].event.start
                    rec = replace(ev.recurrence, cancelled=(*ev.recurrence.cancelled, victim))
                    m.user_update(item_id, recurrence=rec)
        elif kind in ("delete_copy", "move_copy"):
            item_id = self.nth(self.other, step[1])
            if item_id is None:
                return
            if kind == "delete_copy":
                c.user_delete(item_id)
            else:
                ev = c.items[item_id]
                d = timedelta(hours=step[2])
                c.user_update(item_id, start=ev.start + d, end=ev.end + d)


def check_series_invariant(world: SeriesWorld) -> None:
    from calsync.sync.recurrence import expand

    m, c = world.sides[world.series_side], world.sides[world.other]
    copies: dict[str, list[tuple]] = {}
    for ev in c.items.values():
        copies.setdefault(ev.title, []).append((ev.start, ev.end))
    if not world.settings.allows(world.series_side):
        # Series are never copied from the destination of a one way sync.
        assert not copies
        return
    for series in m.items.values():
        assert series.recurrence is not None
        wanted = sorted(
            (o.event.start, o.event.end) for o in expand(series, WINDOW_START, WINDOW_END)
        )
        got = sorted(copies.pop(series.title, []))
        assert got == wanted, f"copies of {series.title!r} differ from its occurrences"
    assert not copies, f"copies without a series: {sorted(copies)}"


def forget_links(store: InMemoryStore) -> None:
    """What "Reset calendar sync" clears: every link, both cursors, the first sync."""
    for lk in store.links():
        store.delete_link(lk.link_id)
    for side in ("calendar", "crm"):
        store.save_cursor(side, None)  # type: ignore[arg-type]
    store._first_sync = None


def copies_linked(world: SeriesWorld) -> set[tuple[str | None, str | None]]:
    """(series id, copy id) of every occurrence copy linked to its series."""
    links = {lk.link_id: lk for lk in world.store.links()}
    return {
        (links[lk.series_link_id].id_on(world.series_side), lk.id_on(world.other))
        for lk in links.values()
        if lk.series_link_id in links and lk.id_on(world.other)
    }


def converge_series(world: SeriesWorld, steps: list[tuple]) -> None:
    for step in steps:
        world.apply(step)
    world.calm()
    world.sync()
    check_series_invariant(world)
    sides_ = world.sides.values()
    sent = sum(len(s.sent) for s in sides_)
    world.sync()
    assert sum(len(s.sent) for s in sides_) == sent, "a converged sync still wrote something"
    # A reset relinks the occurrence copies instead of copying the series again.
    linked = copies_linked(world)
    forget_links(world.store)
    world.sync()
    assert sum(len(s.sent) for s in sides_) == sent, "a sync after a reset wrote something"
    assert copies_linked(world) == linked, "occurrence copies not relinked after a reset"
    check_series_invariant(world)
    world.sync()
    assert sum(len(s.sent) for s in sides_) == sent, "a relinked sync still wrote something"


@settings(PROFILE)
@given(
    series_side=sides,
    direction=series_directions,
    steps=st.lists(series_op, min_size=3, max_size=25),
    flaky=st.booleans(),
    seed=st.integers(0, 2**16),
    invitations=st.sampled_from(["never", "always", "after_first_sync"]),
    loud=st.booleans(),
)
def test_expanded_series_converge(
    series_side: Side,
    direction: str,
    steps: list,
    flaky: bool,
    seed: int,
    invitations: str,
    loud: bool,
) -> None:
    world = SeriesWorld(series_side, direction, flaky, seed, invitations, loud)
    converge_series(world, steps)


@settings(PROFILE)
@given(
    s=sync_settings,
    steps=st.lists(op, min_size=12, max_size=40),
    seed=st.integers(0, 2**16),
    loud=st.booleans(),
)
def test_sides_converge_when_creates_land_after_their_answer_was_lost(
    s: SyncSettings, steps: list, seed: int, loud: bool
) -> None:
    # A create "times out" but the provider applies it later, maybe after the retry wrote a
    # second copy: the copy the engine did not keep must go, and nothing may be lost.
    converge(World(s, flaky=True, seed=seed, loud=loud, late=True), steps)
