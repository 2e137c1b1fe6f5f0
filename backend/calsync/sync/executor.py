"""The executor: lists both sides, asks the planner, applies the plan, records the run."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from calsync.sync.adapters import BadItem, BatchWriter, SideAdapter, Window, Write
from calsync.sync.errors import (
    CursorExpired,
    ListingFailed,
    NeedsConfirmation,
    StorageEmpty,
    SyncAborted,
)
from calsync.sync.model import SIDES, Event, Side, write_fingerprint
from calsync.sync.planner import (
    Action,
    Plan,
    PlanContext,
    SideChanges,
    plan_sync,
    reads_needed,
)
from calsync.sync.policies import sync_window
from calsync.sync.result import RunResult
from calsync.sync.settings import SyncSettings, check_direction
from calsync.sync.state import Link, SyncStore

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

# Guards against an adapter whose paging never ends.
MAX_PAGES = 10_000

# Safety caps (docs/architecture.md): a run over one stops with NeedsConfirmation.
DELETE_CAP_MIN = 10  # deletions on one side: more than max(10, 20 % of the links)
DELETE_CAP_SHARE = 0.2
INVITATION_CAP = 50  # events whose invitees would be e-mailed

_SIDE_WORDS = {"calendar": ("events", "your calendar"), "crm": ("meetings", "your CRM")}


@dataclass
class _Listing:
    events: dict[str, Event]
    deleted: set[str]
    bad: list[BadItem]
    full: bool
    cursor: str | None


def _list_side(adapter: SideAdapter, side: Side, cursor: str | None, window: Window) -> _Listing:
    try:
        return _pages(adapter, side, cursor, window)
    except CursorExpired:
        log.info("%s cursor expired; listing everything", side)
    return _pages(adapter, side, None, window)


def _pages(adapter: SideAdapter, side: Side, cursor: str | None, window: Window) -> _Listing:
    listing = _Listing({}, set(), [], cursor is None, None)
    token: str | None = None
    for _ in range(MAX_PAGES):
        page = adapter.list_changes(cursor, window, token)
        for ev in page.events:
            item_id = ev.id_on(side)
            if item_id is None:
                listing.bad.append(BadItem("?", "the item has no id"))
                continue
            listing.events[item_id] = ev
            listing.deleted.discard(item_id)
        for item_id in page.deleted_ids:
            listing.events.pop(item_id, None)
            listing.deleted.add(item_id)
        listing.bad.extend(page.bad)
        if page.next_page_token is None:
            listing.cursor = page.next_cursor
            return listing
        token = page.next_page_token
    raise RuntimeError(f"the {side} listing did not end after {MAX_PAGES} pages")


def run_sync(
    calendar: SideAdapter,
    crm: SideAdapter,
    store: SyncStore,
    settings: SyncSettings,
    now: datetime,
    progress: Progress | None = None,
    *,
    user_email: str | None = None,
    new_link_id: Callable[[], str] | None = None,
    force_delete: bool = False,
    confirmed: bool = False,
) -> RunResult:
    """One sync run for one user. Raises SyncAborted (with `.result`) when it must stop
    before writing: two way refused, a listing failed, a side came back emptied, or the
    plan is over a safety cap (NeedsConfirmation).

    `force_delete=True` is the user's confirmation that an emptied side really is empty:
    the StorageEmpty guard is lifted for that run and the deletions propagate (the delete
    cap with it). `confirmed=True` is the user's answer to NeedsConfirmation: both caps
    are lifted for that run.
    """
    adapters: dict[Side, SideAdapter] = {"calendar": calendar, "crm": crm}
    result = RunResult(started_at=now)
    report = progress or (lambda phase, done, total: None)
    caps = {side: adapters[side].capabilities() for side in SIDES}
    try:
        check_direction(settings, caps["calendar"])
    except SyncAborted as exc:
        exc.result = result
        result.aborted = exc.message
        raise

    window = sync_window(settings, now)
    links = store.links()
    listings: dict[Side, _Listing] = {}
    try:
        for done, side in enumerate(SIDES):
            report("listing", done, len(SIDES))
            with _reading(side, result):
                listings[side] = _list_side(adapters[side], side, store.get_cursor(side), window)
            result.full_listing[side] = listings[side].full
            if not caps[side].lists_deletions:
                _confirm_reported_deletions(adapters[side], side, listings[side], result)
            _recheck_unconfirmed(adapters[side], side, listings[side], store, links, result)
        report("listing", len(SIDES), len(SIDES))
        for side in SIDES:
            if not force_delete:
                _guard_empty(side, listings[side], links, result)
        _resolve_pending(adapters, store, links, listings, result)
        links = store.links()
        for side in SIDES:
            _reconcile_full_listing(
                adapters[side], side, listings[side], links, result, guard=not force_delete
            )
    except SyncAborted as exc:
        result.aborted = exc.message
        raise

    report("planning", 0, 1)
    changes = {
        side: SideChanges(
            events=dict(listings[side].events),
            deleted=frozenset(listings[side].deleted),
            bad=tuple(listings[side].bad),
            full=listings[side].full,
        )
        for side in SIDES
    }
    context: dict[Side, dict[str, Event]] = {"calendar": {}, "crm": {}}
    for side, item_id in sorted(reads_needed(links, changes["calendar"], changes["crm"], settings)):
        with _reading(side, result):
            found = adapters[side].get(item_id)
        if found is not None:
            context[side][item_id] = found
    changes = {side: replace(changes[side], context=context[side]) for side in SIDES}
    first_sync = store.first_sync_completed_at() is None
    plan = plan_sync(
        links,
        changes["calendar"],
        changes["crm"],
        settings,
        PlanContext(
            now=now,
            calendar_caps=caps["calendar"],
            crm_caps=caps["crm"],
            first_sync=first_sync,
            user_email=user_email,
            allow_empty=force_delete,
        ),
        **({"new_link_id": new_link_id} if new_link_id else {}),
    )
    report("planning", 1, 1)
    if not confirmed:
        try:
            check_caps(plan, len(links), allow_deletes=force_delete)
        except NeedsConfirmation as exc:
            exc.result = result
            result.aborted = exc.message
            raise

    failed_sides = apply_plan(plan, adapters, store, result, report)

    for side in SIDES:
        if side not in failed_sides:
            store.save_cursor(side, listings[side].cursor)
        elif not listings[side].full:
            # The old cursor stays, and a delta from it need not mention an item created
            # after it and deleted before the next run: that run reads these back.
            store.add_recheck(side, listings[side].events)
    if first_sync and not failed_sides:
        # Only a first sync applied in full counts: what it left undone is still part of
        # the first sync, and stays silent under "After first sync" when it is redone.
        store.mark_first_sync_completed(now)
    result.finished_at = datetime.now(UTC)
    return result


def check_caps(plan: Plan, link_count: int, *, allow_deletes: bool = False) -> None:
    """Raise NeedsConfirmation when the plan deletes more than max(10, 20 % of the links)
    items on one side, or would e-mail the invitees of more than 50 events."""
    deletes = {side: 0 for side in SIDES}
    invited: set[str] = set()
    for action in plan.writes:
        if action.kind == "delete" and action.side is not None:
            deletes[action.side] += 1
        if action.notify:
            invited.add(action.item or f"{action.side}:{action.target_id}")
    cap = max(DELETE_CAP_MIN, int(DELETE_CAP_SHARE * link_count))
    sentences: list[str] = []
    over = {s: n for s, n in deletes.items() if n > cap and not allow_deletes}
    for side, count in over.items():
        noun, where = _SIDE_WORDS[side]
        sentences.append(f"This sync would delete {count} {noun} in {where}.")
    if len(invited) > INVITATION_CAP:
        sentences.append(
            f"This sync would email invitations or updates to the invitees of {len(invited)} "
            f"events."
        )
    if sentences:
        raise NeedsConfirmation(
            " ".join(sentences) + " Confirm to continue.",
            {s: n for s, n in deletes.items() if n},
            len(invited),
        )


@contextmanager
def _reading(side: Side, result: RunResult) -> Iterator[None]:
    """Any failure to read a side stops the run before anything is written."""
    try:
        yield
    except Exception as exc:
        result.aborted = f"The {side} could not be read, so nothing was changed: {exc}"
        raise ListingFailed(result.aborted, side, exc, result=result) from exc


def _read_back(
    adapter: SideAdapter, side: Side, item_ids: list[str], listing: _Listing, result: RunResult
) -> None:
    """Read each item as it is now: an absence counts as a deletion."""
    for item_id in item_ids:
        with _reading(side, result):
            found = adapter.get(item_id)
        if found is None:
            listing.deleted.add(item_id)
        else:
            listing.deleted.discard(item_id)
            listing.events[item_id] = found


def _confirm_reported_deletions(
    adapter: SideAdapter, side: Side, listing: _Listing, result: RunResult
) -> None:
    """A side that cannot list deletions is not trusted when it reports one anyway (an item
    that merely left its query, say): each is read back, and only an absence counts."""
    if not listing.full:
        _read_back(adapter, side, sorted(listing.deleted), listing, result)


def _recheck_unconfirmed(
    adapter: SideAdapter,
    side: Side,
    listing: _Listing,
    store: SyncStore,
    links: list[Link],
    result: RunResult,
) -> None:
    """Read back the linked items an earlier run saw past the saved cursor and this
    incremental listing leaves out: only an absence counts, as a deletion."""
    if listing.full:
        return
    linked = {lk.id_on(side) for lk in links}
    left_out = [
        item_id
        for item_id in sorted(store.recheck(side))
        if item_id in linked and item_id not in listing.events and item_id not in listing.deleted
    ]
    _read_back(adapter, side, left_out, listing, result)


def _guard_empty(side: Side, listing: _Listing, links: list[Link], result: RunResult) -> None:
    if not listing.full or listing.events or listing.bad:
        return
    linked = [lk for lk in links if lk.id_on(side) and lk.pending != side]
    if linked:
        raise StorageEmpty(
            f"The {side} returned no items at all although {len(linked)} are linked to the "
            f"other side. Nothing was changed, so nothing is deleted on the other side by "
            f'mistake. If the {side} really is empty, use "Reset calendar sync".',
            side,
            result=result,
        )


def _resolve_pending(
    adapters: dict[Side, SideAdapter],
    store: SyncStore,
    links: list[Link],
    listings: dict[Side, _Listing],
    result: RunResult,
) -> None:
    """A create cut short last run may have happened: find it by our link id."""
    listed = {
        side: {e.link_id: e for e in listings[side].events.values() if e.link_id} for side in SIDES
    }
    for link in links:
        side = link.pending
        if side is None or link.id_on(side) is not None or link.abandoned_at is not None:
            continue  # (a given-up create that lands is the planner's stray, not adopted)
        with _reading(side, result):
            found = listed[side].get(link.link_id) or adapters[side].find_by_link_id(link.link_id)
        if found is not None:
            store.save_link(
                # Version left unknown: the content hash tells our write from a later edit.
                replace(
                    link.with_side(side, found.id_on(side), None),
                    pending=None,
                    unsure_since=result.started_at,
                )
            )


def _reconcile_full_listing(
    adapter: SideAdapter,
    side: Side,
    listing: _Listing,
    links: list[Link],
    result: RunResult,
    guard: bool = True,
) -> None:
    """A full listing says nothing about linked items it leaves out (other window, paging):
    read each one, and only a confirmed absence counts as a deletion."""
    if not listing.full:
        return
    linked = [lk.id_on(side) for lk in links if lk.id_on(side)]
    missing: list[str] = []
    for item_id in linked:
        if item_id is None or item_id in listing.events:
            continue
        with _reading(side, result):
            found = adapter.get(item_id)
        if found is None:
            missing.append(item_id)
        else:
            listing.events[item_id] = found
    if guard and linked and len(missing) == len(linked):
        # Every linked item gone at once: far likelier a different calendar/CRM than a
        # user who deleted them all; deleting their twins would be the disaster.
        raise StorageEmpty(
            f"None of the {len(linked)} items linked before can be found in the {side}; it "
            f"may be a different {side} than last time. Nothing was changed. If this is "
            f'intended, use "Reset calendar sync".',
            side,
            result=result,
        )
    listing.deleted.update(missing)


def apply_plan(
    plan: Plan,
    adapters: dict[Side, SideAdapter],
    store: SyncStore,
    result: RunResult,
    progress: Progress | None = None,
) -> set[Side]:
    """Apply every action; an action that fails is recorded and the rest go on.

    A side whose adapter is a `BatchWriter` (with `max_batch` above 1) gets its writes in
    batches (see `_Batcher`); every other side gets them one by one, as they come.

    Returns the sides whose listing is not fully applied, whose cursor must not move.
    """
    report = progress or (lambda phase, done, total: None)
    failed: set[Side] = set()
    total = len(plan.actions)
    sizes = {side: n for side, adapter in adapters.items() if (n := _batch_size(adapter)) > 1}
    if sizes:
        _Batcher(adapters, sizes, store, result, failed, report, total).run(plan.actions)
        report("writing", total, total)
        return failed
    for done, action in enumerate(plan.actions):
        if done % 50 == 0:
            report("writing", done, total)
        try:
            _apply(action, adapters, store, result)
        except Exception as exc:
            _record_failure(action, exc, result, failed)
            _remember_unanswered(store, [action], result.started_at)
    report("writing", total, total)
    return failed


def _remember_unanswered(store: SyncStore, actions: Sequence[Action], started_at: datetime) -> None:
    """A create or update that failed may still have reached the provider, and may land
    later still: its stored link keeps the content it carried (`Link.unanswered_hash`)."""
    writes = [
        a
        for a in actions
        if a.kind in ("create", "update") and a.link is not None and a.event is not None
    ]
    try:
        keep: list[Link] = []
        for action in writes:
            assert action.link is not None
            stored = store.get_link(action.link.link_id)
            if stored is not None and action.event is not None:
                keep.append(
                    replace(
                        stored,
                        unanswered_hash=_with_unanswered(
                            stored.unanswered_hash, write_fingerprint(action.event)
                        ),
                        unanswered_on=action.side,
                        unsure_since=started_at,
                    )
                )
        store.save_links(keep)
    except Exception:  # the failure is recorded already; this is a refinement of it
        log.warning("could not remember the unanswered writes", exc_info=True)


# Unanswered writes remembered per link: enough for a write retried a few times running.
_UNANSWERED_KEPT = 4


def _with_unanswered(kept: str | None, fingerprint: str) -> str:
    prints = [p for p in (kept or "").split() if p != fingerprint] + [fingerprint]
    return " ".join(prints[-_UNANSWERED_KEPT:])


def _record_failure(
    action: Action, exc: BaseException, result: RunResult, failed: set[Side]
) -> None:
    log.warning("sync action failed: %s %s: %s", action.kind, action.item, exc)
    failed.update(action.caused_by or SIDES)
    result.errors.append(
        {
            "action": action.kind,
            "side": action.side,
            "item": action.item or action.target_id,
            "title": action.event.title if action.event else None,
            "reason": action.reason,
            "message": str(exc) or type(exc).__name__,
        }
    )


_WRITES = ("create", "update", "delete")
_REPORT_EVERY = 50


def _batch_size(adapter: SideAdapter) -> int:
    if not isinstance(adapter, BatchWriter):
        return 0
    return int(adapter.max_batch or 0)


class _Batcher:
    """Applies a plan with each batching side's writes grouped into `write_many` calls.

    Which order matters: the planner's order between actions on the same link row or the
    same item (an update then a delete of one item; a series master's version saved after
    its occurrence copies are written, so a run cut short re-expands it; a stray second
    copy removed before anything is created with its link id). Actions with nothing in
    common commute: they write different items and different link rows. So a write waits
    in its side's batch while later actions run ahead of it only as long as they share
    nothing with what waits. A link/refresh/unlink that shares something waits too, and
    is saved right after the batches it follows are written (a series' occurrences are
    batched whole, its master saved after them). A write that shares something sends
    every waiting batch first (in the order they were started), then runs or waits in
    turn. A stray copy's delete names no link, so it never shares a batch with a create
    on the same side.
    """

    def __init__(
        self,
        adapters: dict[Side, SideAdapter],
        sizes: dict[Side, int],
        store: SyncStore,
        result: RunResult,
        failed: set[Side],
        report: Progress,
        total: int,
    ) -> None:
        self.adapters = adapters
        self.sizes = sizes
        self.store = store
        self.result = result
        self.failed = failed
        self.report = report
        self.total = total
        self.done = 0
        self.waiting: list[Side] = []  # sides with a batch started, oldest first
        self.held: dict[Side, list[Action]] = {side: [] for side in sizes}
        self.keys: dict[Side, set[str]] = {side: set() for side in sizes}
        self.parents: dict[Side, set[str]] = {side: set() for side in sizes}
        self.deferred: list[_Deferred] = []  # store-only actions waiting for batches

    def run(self, actions: Sequence[Action]) -> None:
        self.report("writing", 0, self.total)
        for action in actions:
            keys, parents = _footprint(action)
            sides = {
                s for s in self.waiting if _clash(keys, parents, self.keys[s], self.parents[s])
            }
            after = [d for d in self.deferred if _clash(keys, parents, d.keys, d.parents)]
            if (sides or after) and action.kind in _WRITES:
                self.flush_all()
            elif sides or after:
                waits = sides.union(*(d.waits for d in after))
                self.deferred.append(_Deferred(action, keys, parents, waits))
                continue
            side = action.side
            if action.kind in _WRITES and side in self.sizes:
                assert side is not None
                if side not in self.waiting:
                    self.waiting.append(side)
                self.held[side].append(action)
                self.keys[side] |= keys
                self.parents[side] |= parents
                if len(self.held[side]) >= self.sizes[side]:
                    self.flush(side)
                continue
            self.apply(action)
        self.flush_all()

    def apply(self, action: Action) -> None:
        try:
            _apply(action, self.adapters, self.store, self.result)
        except Exception as exc:
            _record_failure(action, exc, self.result, self.failed)
            _remember_unanswered(self.store, [action], self.result.started_at)
        self.advance(1)

    def flush_all(self) -> None:
        for side in list(self.waiting):
            self.flush(side)
        for waiting in self.deferred:  # none left: each waited for a side flushed above
            self.apply(waiting.action)
        self.deferred = []

    def flush(self, side: Side) -> None:
        actions, self.held[side] = self.held[side], []
        self.keys[side], self.parents[side] = set(), set()
        self.waiting.remove(side)
        _write_batch(side, self.adapters[side], actions, self.store, self.result, self.failed)
        self.advance(len(actions))
        # Deferred actions inherit the waits of those they follow, so the ready ones keep
        # their order among themselves.
        still: list[_Deferred] = []
        for waiting in self.deferred:
            waiting.waits.discard(side)
            if waiting.waits:
                still.append(waiting)
            else:
                self.apply(waiting.action)
        self.deferred = still

    def advance(self, count: int) -> None:
        before, self.done = self.done, self.done + count
        if before // _REPORT_EVERY != self.done // _REPORT_EVERY:
            self.report("writing", self.done, self.total)


@dataclass
class _Deferred:
    action: Action
    keys: set[str]
    parents: set[str]
    waits: set[Side]  # the batches it must follow


def _clash(keys: set[str], parents: set[str], held: set[str], held_parents: set[str]) -> bool:
    return bool(keys & (held | held_parents) or parents & held)


def _footprint(action: Action) -> tuple[set[str], set[str]]:
    """What an action writes (link rows, items) and the series it belongs to."""
    keys: set[str] = set()
    parents: set[str] = set()
    for link in (action.link, *action.also_save):
        if link is not None:
            keys.add("link:" + link.link_id)
            if link.series_link_id:
                parents.add("link:" + link.series_link_id)
    keys.update("link:" + link_id for link_id in action.drop_link_ids)
    if action.side is not None and action.target_id is not None:
        keys.add(f"item:{action.side}:{action.target_id}")
    stray = not (action.link or action.drop_link_ids or action.also_save)
    if action.kind == "delete" and stray:
        keys.add(f"stray:{action.side}")
    elif action.kind == "create":
        parents.add(f"stray:{action.side}")
    return keys, parents


def _write_of(action: Action) -> Write:
    if action.kind == "create":
        assert action.link is not None and action.event is not None
        return Write(
            "create",
            event=replace(action.event, link_id=action.link.link_id),
            link_id=action.link.link_id,
            notify=action.notify,
        )
    assert action.target_id is not None
    if action.kind == "update":
        assert action.link is not None and action.event is not None
        return Write("update", event=action.event, item_id=action.target_id, notify=action.notify)
    return Write("delete", item_id=action.target_id, notify=action.notify)


def _write_batch(
    side: Side,
    adapter: SideAdapter,
    actions: list[Action],
    store: SyncStore,
    result: RunResult,
    failed: set[Side],
) -> None:
    assert isinstance(adapter, BatchWriter)
    try:
        # Recorded before the batch is sent, so a retry after a crash finds each create
        # by its link id instead of doubling it.
        store.save_links(
            [replace(a.link, pending=side) for a in actions if a.kind == "create" and a.link]
        )
        outcomes = adapter.write_many([_write_of(a) for a in actions])
        if len(outcomes) != len(actions):
            raise RuntimeError(
                f"the {side} answered {len(outcomes)} of the {len(actions)} writes sent"
            )
    except Exception as exc:
        for action in actions:
            _record_failure(action, exc, result, failed)
        _remember_unanswered(store, actions, result.started_at)
        return
    saves: list[Link] = []
    finished: list[Action] = []
    unanswered: list[Action] = []
    for action, outcome in zip(actions, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            _record_failure(action, outcome, result, failed)
            unanswered.append(action)
            continue
        try:
            saves.extend(_links_after(action, side, outcome, result.started_at))
        except Exception as exc:
            _record_failure(action, exc, result, failed)
            continue
        finished.append(action)
    _remember_unanswered(store, unanswered, result.started_at)
    try:
        store.save_links(saves)
        for action in finished:
            for link_id in action.drop_link_ids:
                store.delete_link(link_id)
    except Exception as exc:
        for action in finished:
            _record_failure(action, exc, result, failed)
        return
    for action in finished:
        counts = result.side(side)
        if action.kind == "create":
            counts.created += 1
        elif action.kind == "update":
            counts.updated += 1
        else:
            counts.deleted += 1
        if action.conflict is not None:
            result.conflicts.append(action.conflict.to_dict())
        for note in action.notes:
            result.notes[note] += 1


def _links_after(
    action: Action, side: Side, written: Event | None, started_at: datetime
) -> list[Link]:
    """The links a successful write leaves behind, as `_apply` saves them."""
    if action.kind == "delete":
        gone = [action.link.with_side(side, None, None)] if action.link is not None else []
        return gone + list(action.also_save)
    assert action.link is not None
    if written is None:
        raise RuntimeError(f"the {side} answered nothing for this {action.kind}")
    if action.kind == "create":
        link = replace(
            action.link.with_side(side, written.id_on(side), written.version_on(side)),
            pending=None,
            unsure_since=started_at,
        )
    else:
        link = action.link.with_side(
            side, written.id_on(side) or action.target_id, written.version_on(side)
        )
    return [link, *action.also_save]


def _apply(
    action: Action, adapters: dict[Side, SideAdapter], store: SyncStore, result: RunResult
) -> None:
    kind = action.kind
    if kind == "skip":
        result.skipped[action.reason] += 1
        return
    if kind in ("link", "refresh"):
        assert action.link is not None
        store.save_link(action.link)
        if kind == "link":
            result.calendar.linked += 1
            result.crm.linked += 1
        return
    if kind == "unlink":
        for link_id in action.drop_link_ids:
            store.delete_link(link_id)
        return

    side = action.side
    assert side is not None
    adapter = adapters[side]
    if kind == "create":
        assert action.link is not None and action.event is not None
        # Recorded before the create so a retry after a crash finds it instead of doubling.
        store.save_link(replace(action.link, pending=side))
        written = adapter.create(
            replace(action.event, link_id=action.link.link_id),
            link_id=action.link.link_id,
            notify=action.notify,
        )
        store.save_link(
            replace(
                action.link.with_side(side, written.id_on(side), written.version_on(side)),
                pending=None,
                unsure_since=result.started_at,
            )
        )
        result.side(side).created += 1
    elif kind == "update":
        assert action.link is not None and action.event is not None
        assert action.target_id is not None
        written = adapter.update(action.target_id, action.event, notify=action.notify)
        store.save_link(
            action.link.with_side(
                side, written.id_on(side) or action.target_id, written.version_on(side)
            )
        )
        result.side(side).updated += 1
    elif kind == "delete":
        assert action.target_id is not None
        adapter.delete(action.target_id, notify=action.notify)
        if action.link is not None:
            store.save_link(action.link.with_side(side, None, None))
        result.side(side).deleted += 1
    else:
        raise ValueError(f"unknown action {kind!r}")
    for link in action.also_save:
        store.save_link(link)
    for link_id in action.drop_link_ids:
        store.delete_link(link_id)
    if action.conflict is not None:
        result.conflicts.append(action.conflict.to_dict())
    for note in action.notes:
        result.notes[note] += 1
