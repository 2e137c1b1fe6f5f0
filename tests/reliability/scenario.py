"""The randomized scenario runner: random edits, injected faults, then one clean sync.

A scenario is one user with a small calendar (Graph or Google emulator) and a SuiteCRM
emulator, a direction (calendar to CRM, CRM to calendar or two way) and a seeded RNG.
Each round the "users" edit both sides (create, retitle, move, delete), the emulators
inject faults (429 with Retry-After, 5xx, timeouts, dropped connections) at `fault_rate`,
and one sync runs; a sync cut short by a fault is simply followed by the next round, as
RQ's retry would do. Then the faults stop, one clean sync runs and `check` compares both
sides with the model of what the users did:

- lost: a live event missing on a side where the settings say it belongs;
- duplicates: an event present more than once on a side;
- leaked: an event copied across although the direction forbids it, or a deleted one
  still present;
- stale: a copy whose title or time differs from what the user last wrote;
- forbidden notifications: invitations the emulator would have e-mailed while the
  policy was "never".

Every event belongs to the side it was created on, and only that side edits or deletes
it, so no conflict policy is needed to say what the right answer is.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import requests

from calsync.crm.suitecrm import SuiteCrmAdapter
from calsync.sandbox.suitecrm import SuiteCrmEmulator
from calsync.store import SqlSyncStore
from calsync.sync import SyncError, SyncSettings, run_sync

CRM_USER, CRM_PASSWORD = "alice", "correct horse battery"
DIRECTIONS = ("calendar_to_crm", "crm_to_calendar", "two_way")
CALENDARS = ("graph", "google")
# Client side timeout; an injected "slow" answer takes longer, so it is a timeout.
TIMEOUT = 0.4
SLOW = 0.6
CLEAN_TIMEOUT = 10.0
SQL_DATE = "%Y-%m-%d %H:%M:%S"


def fault_knobs(rate: float, retry_after: int = 1) -> dict[str, Any]:
    """`rate` is the chance that a request fails at all, split over the four faults."""
    share = rate / 4
    return {
        "rate_429": share,
        "retry_after_seconds": retry_after,
        "rate_5xx": share,
        "status_5xx": 503,
        "rate_slow": share,
        "slow_seconds": SLOW,
        "rate_drop": share,
    }


NO_FAULTS = fault_knobs(0.0)


@dataclasses.dataclass
class Item:
    """What the users did to one event; `owner` is the side it was created on."""

    key: str
    owner: str
    title: str
    start: datetime
    minutes: int
    ids: dict[str, str] = dataclasses.field(default_factory=dict)  # owner side only
    deleted: bool = False
    synced_once: bool = False


@dataclasses.dataclass
class Outcome:
    seed: int
    calendar: str
    direction: str
    rounds: int
    items: int
    syncs: int = 0
    failed_syncs: int = 0
    worker_kills: int = 0
    lost: list[str] = dataclasses.field(default_factory=list)
    duplicates: list[str] = dataclasses.field(default_factory=list)
    leaked: list[str] = dataclasses.field(default_factory=list)
    stale: list[str] = dataclasses.field(default_factory=list)
    forbidden_notifications: list[str] = dataclasses.field(default_factory=list)
    clean_sync_errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicates
            or self.leaked
            or self.stale
            or self.forbidden_notifications
            or self.clean_sync_errors
        )

    def describe(self) -> str:
        parts = [
            f"scenario seed={self.seed} calendar={self.calendar} direction={self.direction}",
            f"rounds={self.rounds} items={self.items} syncs={self.syncs} "
            f"failed={self.failed_syncs} kills={self.worker_kills}",
        ]
        for name in (
            "lost",
            "duplicates",
            "leaked",
            "stale",
            "forbidden_notifications",
            "clean_sync_errors",
        ):
            value = getattr(self, name)
            if value:
                parts.append(f"{name}: {value}")
        parts.append(f"replay: pytest tests/reliability -k 'seed_{self.seed}]' or soak --seed")
        return "\n".join(parts)


class CalendarSide:
    """The user's calendar in an emulator: what the user does there, and what it holds."""

    def __init__(self, kind: str, emu: Any, session: requests.Session, address: str) -> None:
        self.kind = kind
        self.emu = emu
        self.session = session
        self.address = address
        self.title_key = "subject" if kind == "graph" else "summary"

    def _times(self, start: datetime, minutes: int) -> dict[str, Any]:
        end = start + timedelta(minutes=minutes)
        if self.kind == "graph":
            return {
                "start": {"dateTime": f"{start:%Y-%m-%dT%H:%M:%S}", "timeZone": "UTC"},
                "end": {"dateTime": f"{end:%Y-%m-%dT%H:%M:%S}", "timeZone": "UTC"},
            }
        return {
            "start": {"dateTime": f"{start:%Y-%m-%dT%H:%M:%SZ}"},
            "end": {"dateTime": f"{end:%Y-%m-%dT%H:%M:%SZ}"},
        }

    def create(self, title: str, start: datetime, minutes: int, attendee: str) -> str:
        body = {self.title_key: title, **self._times(start, minutes)}
        if self.kind == "graph":
            body["attendees"] = [
                {"emailAddress": {"address": attendee, "name": "Guest"}, "type": "required"}
            ]
            return self.emu.put_event(self.address, body)
        body["attendees"] = [{"email": attendee}]
        (event_id,) = self.emu.bulk_insert(self.address, [body])
        return event_id

    def retitle(self, item_id: str, title: str) -> None:
        self.emu.change_event(self.address, item_id, {self.title_key: title})

    def move(self, item_id: str, start: datetime, minutes: int) -> None:
        self.emu.change_event(self.address, item_id, self._times(start, minutes))

    def delete(self, item_id: str) -> None:
        self.emu.remove_event(self.address, item_id)

    def contents(self) -> list[tuple[str, datetime]]:
        """(title, start in UTC) of every live event."""
        out = []
        for raw in self.emu.events(self.address):
            if raw.get("status") == "cancelled" or raw.get("isCancelled"):
                continue
            out.append((raw.get(self.title_key) or "", _start_of(raw)))
        return out

    def invitations(self) -> int:
        return sum(
            1 for i in self.emu.invitations.all() if i.mailbox.lower() == self.address.lower()
        )


def _start_of(raw: dict[str, Any]) -> datetime:
    start = raw["start"]
    value = start.get("dateTime") or start.get("date")
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:  # Graph renders UTC wall times without an offset
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


class CrmSide:
    def __init__(self, emu: SuiteCrmEmulator, user_id: str) -> None:
        self.emu = emu
        self.user_id = user_id

    def create(self, title: str, start: datetime, minutes: int, attendee: str) -> str:
        end = start + timedelta(minutes=minutes)
        return self.emu.add_meeting(
            self.user_id,
            name=title,
            date_start=start.strftime(SQL_DATE),
            date_end=end.strftime(SQL_DATE),
        )

    def retitle(self, item_id: str, title: str) -> None:
        self.emu.edit_meeting(item_id, name=title)

    def move(self, item_id: str, start: datetime, minutes: int) -> None:
        end = start + timedelta(minutes=minutes)
        self.emu.edit_meeting(
            item_id,
            date_start=start.strftime(SQL_DATE),
            date_end=end.strftime(SQL_DATE),
            duration_hours=str(minutes // 60),
            duration_minutes=str(minutes % 60),
        )

    def delete(self, item_id: str) -> None:
        self.emu.delete_meeting(item_id)

    def contents(self) -> list[tuple[str, datetime]]:
        return [
            (m["name"], datetime.strptime(m["date_start"], SQL_DATE).replace(tzinfo=UTC))
            for m in self.emu.live_meetings()
        ]


@dataclasses.dataclass
class Plan:
    """The random choices of one scenario, all drawn from its seed."""

    seed: int
    calendar: str
    direction: str
    rounds: int
    initial: dict[str, int]
    fault_rate: float
    kill_worker: bool


KILL_EVERY = 10


def plan_for(seed: int, fault_rate: float = 0.05, *, kill_every: int = KILL_EVERY) -> Plan:
    """Calendars alternate Graph/Google and directions cycle, so any 6 consecutive seeds
    cover every pair; every `kill_every`-th scenario runs on real workers and kills one
    (Graph: the worker opens connections through `connections.py`, whose Google opener
    was still being written when this suite was)."""
    rng = random.Random(seed)
    kill = kill_every > 0 and seed % kill_every == kill_every - 1
    return Plan(
        seed=seed,
        calendar="graph" if kill else CALENDARS[seed % 2],
        direction=DIRECTIONS[(seed // 2) % 3],
        rounds=rng.randint(2, 3) if kill else rng.randint(2, 4),
        initial={"calendar": rng.randint(3, 10), "crm": rng.randint(2, 10)},
        fault_rate=fault_rate,
        kill_worker=kill,
    )


class Scenario:
    """One user's world. `sync` is how one run happens (in process, or on a real worker)."""

    def __init__(
        self,
        plan: Plan,
        calendar: CalendarSide,
        crm: CrmSide,
        emulators: list[Any],
        sync: Callable[[Scenario, bool], bool],
    ) -> None:
        self.plan = plan
        self.rng = random.Random(plan.seed * 7919 + 1)
        self.calendar = calendar
        self.crm = crm
        self.emulators = emulators
        self.sync_once = sync
        self.items: list[Item] = []
        self.now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.outcome = Outcome(plan.seed, plan.calendar, plan.direction, plan.rounds, 0)
        self.settings = SyncSettings(
            direction=plan.direction,
            record_option="all",
            invitations="never",
            conflict_policy="most_recent",
        )

    def side(self, name: str) -> CalendarSide | CrmSide:
        return self.calendar if name == "calendar" else self.crm

    def allows(self, owner: str) -> bool:
        return self.settings.allows(owner)

    # -- what the users do -------------------------------------------------------------

    def _new_time(self) -> tuple[datetime, int]:
        start = self.now + timedelta(days=self.rng.randint(1, 40), hours=self.rng.randint(0, 9))
        return start, self.rng.choice((30, 45, 60, 90))

    def create(self, owner: str) -> None:
        n = len(self.items)
        key = f"s{self.plan.seed}e{n}"
        start, minutes = self._new_time()
        item = Item(key, owner, f"{key} v0", start, minutes)
        guest = f"guest{n}@customer.test"
        item.ids[owner] = self.side(owner).create(item.title, start, minutes, guest)
        self.items.append(item)

    def edit_round(self) -> None:
        live = [i for i in self.items if not i.deleted]
        for item in live:
            roll = self.rng.random()
            side = self.side(item.owner)
            if roll < 0.15:
                version = int(item.title.rsplit("v", 1)[1]) + 1
                item.title = f"{item.key} v{version}"
                side.retitle(item.ids[item.owner], item.title)
            elif roll < 0.25:
                item.start, item.minutes = self._new_time()
                side.move(item.ids[item.owner], item.start, item.minutes)
            elif roll < 0.32:
                item.deleted = True
                side.delete(item.ids[item.owner])
        for owner in ("calendar", "crm"):
            for _ in range(self.rng.randint(0, 2)):
                self.create(owner)

    def set_faults(self, knobs: dict[str, Any]) -> None:
        for emu in self.emulators:
            emu.set_faults(**knobs)

    # -- the run -------------------------------------------------------------------------

    def run(self) -> Outcome:
        plan = self.plan
        for owner, count in plan.initial.items():
            for _ in range(count):
                self.create(owner)
        for round_no in range(plan.rounds):
            if round_no:
                self.edit_round()
            for emu in self.emulators:
                emu.reseed(plan.seed * 101 + round_no)
            self.set_faults(fault_knobs(plan.fault_rate))
            try:
                ok = self.sync_once(self, True)
            finally:
                self.set_faults(NO_FAULTS)
            self.outcome.syncs += 1
            self.outcome.failed_syncs += not ok
        self.outcome.items = len(self.items)
        # Faults stop, and the writes still on their way (a slow request the client gave
        # up on) land; then one clean sync must converge.
        for emu in self.emulators:
            assert emu.wait_idle(), f"{emu.name} still busy"
        before = self.calendar.invitations()
        ok = self.sync_once(self, False)
        self.outcome.syncs += 1
        if not ok:
            self.outcome.clean_sync_errors.append("the clean sync did not succeed")
        self.check(invitations_before=before)
        return self.outcome

    def check(self, *, invitations_before: int) -> None:
        out = self.outcome
        holdings = {name: Counter(self.side(name).contents()) for name in ("calendar", "crm")}
        expected: dict[str, Counter[tuple[str, datetime]]] = {
            "calendar": Counter(),
            "crm": Counter(),
        }
        by_key = {}
        for item in self.items:
            by_key[item.key] = item
            if item.deleted:
                continue
            expected[item.owner][(item.title, item.start)] += 1
            other = "crm" if item.owner == "calendar" else "calendar"
            if self.allows(item.owner):
                expected[other][(item.title, item.start)] += 1
        for name in ("calendar", "crm"):
            held, want = holdings[name], expected[name]
            for entry, count in held.items():
                if count > 1:
                    out.duplicates.append(f"{name}: {entry[0]!r} x{count}")
            for entry in want:
                if entry not in held:
                    key = entry[0].split(" ", 1)[0]
                    item = by_key.get(key)
                    near = [h for h in held if h[0].split(" ", 1)[0] == key]
                    if near:
                        out.stale.append(f"{name}: {entry} but holds {near}")
                    else:
                        out.lost.append(f"{name}: {entry} (owner {item.owner if item else '?'})")
            for entry in held:
                if entry in want:
                    continue
                key = entry[0].split(" ", 1)[0]
                item = by_key.get(key)
                if (
                    item is None
                    or item.deleted
                    or not any(w[0].split(" ", 1)[0] == key for w in want)
                ):
                    out.leaked.append(f"{name}: {entry}")
        sent = self.calendar.invitations()
        if sent:
            out.forbidden_notifications.append(
                f"{sent} invitation(s) e-mailed from {self.calendar.address} "
                f"({sent - invitations_before} in the clean sync) with invitations='never'"
            )


# -- in-process syncs: what jobs.sync_user does, minus RQ ---------------------------------


class InProcessSync:
    """Runs the engine as `jobs.sync_user` does (SQL store, real adapters over HTTP),
    treating a transient fault or an aborted run as "RQ will retry": the next round."""

    def __init__(
        self,
        sessions: Any,
        user_id: int,
        make_calendar: Callable[[], Any],
        make_crm: Callable[[], Any],
        user_email: str,
    ) -> None:
        self.store = SqlSyncStore(sessions, user_id)
        self.make_calendar = make_calendar
        self.make_crm = make_crm
        self.user_email = user_email
        self.errors: list[str] = []

    def __call__(self, scenario: Scenario, faulty: bool) -> bool:
        from calsync.jobs import PERMANENT, TRANSIENT

        # The clean sync is not meant to time out: on a loaded machine (the soak on 2
        # CPUs) an answer can take longer than the short timeout used under faults.
        timeout = TIMEOUT if faulty else CLEAN_TIMEOUT
        try:
            result = run_sync(
                self.make_calendar(timeout),
                self.make_crm(timeout),
                self.store,
                scenario.settings,
                datetime.now(UTC),
                user_email=self.user_email,
                new_link_id=lambda: uuid.uuid4().hex,
            )
        except (SyncError, *TRANSIENT) as exc:
            if not faulty:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                scenario.outcome.clean_sync_errors.append(f"{type(exc).__name__}: {exc}")
            return False
        except PERMANENT as exc:  # never expected: no fault knob revokes anything
            scenario.outcome.clean_sync_errors.append(f"permanent fault {exc!r}")
            return False
        if not faulty and not result.ok:
            scenario.outcome.clean_sync_errors.append(
                f"clean sync: errors={result.errors} aborted={result.aborted}"
            )
        return result.ok


def new_crm(seed: int) -> tuple[SuiteCrmEmulator, str]:
    emu = SuiteCrmEmulator(seed=seed).start()
    user_id = emu.add_user(CRM_USER, CRM_PASSWORD, "alice@acme.test", first_name="Alice")
    return emu, user_id


def crm_credentials(emu: SuiteCrmEmulator) -> dict[str, Any]:
    """What the connect page stores (connected before any fault is switched on)."""
    return dict(SuiteCrmAdapter.connect(emu.url, CRM_USER, CRM_PASSWORD).credentials)


def crm_adapter(credentials: dict[str, Any], timeout: float = TIMEOUT) -> SuiteCrmAdapter:
    """A fresh adapter per run, as `connections.open_sides` builds one per job."""
    return SuiteCrmAdapter(credentials, timeout=timeout)
