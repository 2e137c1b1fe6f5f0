"""The executor: lists both sides, asks the planner, applies the plan, records the run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from calsync.sync.adapters import BadItem, SideAdapter, Window
from calsync.sync.errors import (
    CursorExpired,
    ListingFailed,
    NeedsConfirmation,
    StorageEmpty,
    SyncAborted,
)
from calsync.sync.model import SIDES, Event, Side
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
            try:
                listings[side] = _list_side(adapters[side], side, store.get_cursor(side), window)
            except Exception as exc:
                raise ListingFailed(
                    f"The {side} could not be read, so nothing was changed: {exc}",
                    side,
                    exc,
                    result=result,
                ) from exc
            result.full_listing[side] = listings[side].full
            if not caps[side].lists_deletions:
                _confirm_reported_deletions(adapters[side], side, listings[side], result)
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
        try:
            found = adapters[side].get(item_id)
        except Exception as exc:
            result.aborted = f"The {side} could not be read, so nothing was changed: {exc}"
            raise ListingFailed(result.aborted, side, exc, result=result) from exc
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


def _confirm_reported_deletions(
    adapter: SideAdapter, side: Side, listing: _Listing, result: RunResult
) -> None:
    """A side that cannot list deletions is not trusted when it reports one anyway (an item
    that merely left its query, say): each is read back, and only an absence counts."""
    if listing.full:
        return
    for item_id in sorted(listing.deleted):
        try:
            found = adapter.get(item_id)
        except Exception as exc:
            raise ListingFailed(
                f"The {side} could not be read, so nothing was changed: {exc}",
                side,
                exc,
                result=result,
            ) from exc
        if found is not None:
            listing.deleted.discard(item_id)
            listing.events[item_id] = found


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
        if side is None or link.id_on(side) is not None:
            continue
        try:
            found = listed[side].get(link.link_id) or adapters[side].find_by_link_id(link.link_id)
        except Exception as exc:
            raise ListingFailed(
                f"The {side} could not be read, so nothing was changed: {exc}",
                side,
                exc,
                result=result,
            ) from exc
        if found is not None:
            store.save_link(
                # Version left unknown: the content hash tells our write from a later edit.
                replace(link.with_side(side, found.id_on(side), None), pending=None)
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
        try:
            found = adapter.get(item_id)
        except Exception as exc:
            raise ListingFailed(
                f"The {side} could not be read, so nothing was changed: {exc}",
                side,
                exc,
                result=result,
            ) from exc
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

    Returns the sides whose listing is not fully applied, whose cursor must not move.
    """
    report = progress or (lambda phase, done, total: None)
    failed: set[Side] = set()
    total = len(plan.actions)
    for done, action in enumerate(plan.actions):
        if done % 50 == 0:
            report("writing", done, total)
        try:
            _apply(action, adapters, store, result)
        except Exception as exc:
            log.warning("sync action failed: %s %s: %s", action.kind, action.item, exc)
            failed |= action.caused_by or set(SIDES)
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
    report("writing", total, total)
    return failed


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
