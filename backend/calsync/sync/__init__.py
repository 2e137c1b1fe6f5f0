"""The sync engine: keeps one user's calendar and CRM meetings in step. No vendor code here.

Flow of `run_sync(calendar, crm, store, settings, now)`:
1. Refuse two way sync if the calendar's capabilities cannot do it (DirectionNotSupported).
2. List each side's changes since its saved cursor, page by page; an expired cursor
   (CursorExpired) means a full listing. A failed listing stops the run (ListingFailed).
3. A full listing that comes back empty, or whose linked items are all gone, stops the
   run (StorageEmpty) unless the user confirmed it (`force_delete=True`): deleting the
   other side's twins because of an emptied or different calendar would be a disaster.
4. Creates cut short by a crash are found by link id (`find_by_link_id`) and their links
   completed; linked items missing from a full listing are read one by one, and only a
   confirmed absence counts as a deletion.
5. The planner (`plan_sync`, pure) compares the changes with the stored links (each side's
   version + a content hash of what was last synced, so our own writes are recognised)
   and the settings, and returns a plan: create/update/delete/link/refresh/unlink/skip,
   each with a reason. Conflicts follow `conflict_policy`; first-sync twins are linked,
   and a series expanded onto a side without native series adopts the unlinked copies of
   its occurrences already there (our link id, else title/start/end) instead of copying
   them again (after "Reset calendar sync", say).
6. A plan over a safety cap stops before writing (NeedsConfirmation, with the counts and a
   sentence): more than max(10, 20 % of the links) deletions on one side, or invitations
   for more than 50 events. `confirmed=True` is the user's go-ahead for one run.
7. The executor applies the plan. A create first saves a pending link under a new link
   id and sends that id along, so a retry finds the item instead of doubling it.
8. A side's cursor is saved only when every action caused by its listing succeeded; the
   run's counts, skips, conflicts, errors and notes come back as a RunResult. The first
   sync counts as completed ("After first sync" starts notifying) only once it was
   applied in full.

Invitees withheld: a destination that would e-mail every attendee it is given
(`suppress_invitations=False`) gets a copy without invitees when nobody may be notified;
they travel in `Event.extra[WITHHELD_INVITEES]` for the adapter to list in the body, and
the link remembers the side (`Link.withheld_on`) so an edit there never erases them.
"""

from calsync.sync.adapters import (
    BadItem,
    CalendarAdapter,
    ChangePage,
    CrmAdapter,
    SideAdapter,
    Window,
)
from calsync.sync.dedupe import duplicate_groups, match_keys, pair_twins
from calsync.sync.errors import (
    CursorExpired,
    DirectionNotSupported,
    ListingFailed,
    NeedsConfirmation,
    StorageEmpty,
    SyncAborted,
    SyncError,
)
from calsync.sync.executor import apply_plan, run_sync
from calsync.sync.model import (
    Capabilities,
    Event,
    Invitee,
    MovedOccurrence,
    Recurrence,
    Side,
    canonical_rrule,
    content_hash,
    occurrence_key,
    problem,
)
from calsync.sync.planner import Action, Conflict, Plan, PlanContext, SideChanges, plan_sync
from calsync.sync.result import RunResult, SideCounts
from calsync.sync.settings import SyncSettings, check_direction
from calsync.sync.state import InMemoryStore, Link, SyncStore

__all__ = [
    "Action",
    "BadItem",
    "CalendarAdapter",
    "Capabilities",
    "ChangePage",
    "Conflict",
    "CrmAdapter",
    "CursorExpired",
    "DirectionNotSupported",
    "Event",
    "InMemoryStore",
    "Invitee",
    "Link",
    "ListingFailed",
    "MovedOccurrence",
    "NeedsConfirmation",
    "Plan",
    "PlanContext",
    "Recurrence",
    "RunResult",
    "Side",
    "SideAdapter",
    "SideChanges",
    "SideCounts",
    "StorageEmpty",
    "SyncAborted",
    "SyncError",
    "SyncSettings",
    "SyncStore",
    "Window",
    "apply_plan",
    "canonical_rrule",
    "check_direction",
    "content_hash",
    "duplicate_groups",
    "match_keys",
    "occurrence_key",
    "pair_twins",
    "plan_sync",
    "problem",
    "run_sync",
]
