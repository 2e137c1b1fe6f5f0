"""A 10,000-event calendar already linked to its CRM, for the incremental scenarios.

A first sync that writes 10,000 meetings takes longer than the whole suite's budget (see
first_sync), so the linked state is reached the way a customer moving to calsync reaches
it: both sides already hold the same meetings, and the first sync links the twins
without writing. The calendar is seeded without series (each event is one CRM meeting);
the CRM twins are written straight into the emulator's store from each side's own view
of the calendar. calsync then runs once to link and once more to settle; the baseline
adopts the pairs from one full listing of both sides. Both states are built once per
process and shared by the scenarios that need them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from bench import common
from bench.baseline import NaiveSync, _Pair
from bench.common import SETTINGS, Account, Counted, World, counting
from calsync.store import SqlSyncStore
from calsync.sync import Event, Window, run_sync

SIZE = 10_000
QUICK_SIZE = 500
SQL = "%Y-%m-%d %H:%M:%S"


def _sql(value: datetime | date) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime(SQL)
    return f"{value.isoformat()} 00:00:00"


@dataclass
class Linked:
    world: World
    size: int
    mine: Account
    naive: Account
    store: SqlSyncStore
    baseline: NaiveSync
    link_seconds: float

    def calsync_run(self) -> tuple[Counted, Any]:
        cal, crm = self.world.calendar(self.mine), self.world.crm_adapter(self.mine)
        with counting(self.world.graph, self.world.crm) as counted:
            result = run_sync(
                cal, crm, self.store, SETTINGS, common.now(), user_email=self.mine.address
            )
        return counted, result

    def baseline_run(self) -> tuple[Counted, Any]:
        with counting(self.world.graph, self.world.crm) as counted:
            counts = self.baseline.run(common.now())
        return counted, counts

    def crm_twin_of(self, graph_id: str, *, baseline: bool) -> str | None:
        if baseline:
            return next((p.crm_id for p in self.baseline.pairs if p.graph_id == graph_id), None)
        return next((lk.crm_id for lk in self.store.links() if lk.calendar_id == graph_id), None)


_CACHE: dict[int, Linked] = {}


def linked(quick: bool) -> Linked:
    size = QUICK_SIZE if quick else SIZE
    if size not in _CACHE:
        _CACHE[size] = _build(size)
    return _CACHE[size]


def _build(n: int) -> Linked:
    rt = common.bench_runtime()
    world = World(seed=23)
    mine = world.new_account(0, name=f"li{n}")
    naive = world.new_account(0, name=f"ln{n}")
    for account in (mine, naive):
        from calsync.sandbox.seed import seed_mailbox

        seed_mailbox(world.graph, account.address, n, seed=5, series_ratio=0.0)
        world.add_contacts(account.address)

    # calsync's twins: from calsync's own reading of the calendar.
    window = _window()
    for ev in _full_listing(world, mine, window):
        if ev.start is None or ev.end is None:
            continue
        world.crm.add_meeting(
            mine.crm_user_id,
            name=ev.title or "(no title)",
            date_start=_sql(ev.start),
            date_end=_sql(ev.end),
        )
    user_id = common.provision_user(rt, world, mine, SETTINGS)
    store = SqlSyncStore(rt.sessions, user_id)

    # The baseline's twins: from its own reading, then it adopts the pairs.
    baseline = NaiveSync(world, naive)
    baseline._login()
    start, end = window.start, window.end
    for triple in baseline._list_graph(start, end).values():
        world.crm.add_meeting(
            naive.crm_user_id, name=triple[0], date_start=triple[1], date_end=triple[2]
        )
    graph = baseline._list_graph(start, end)
    me = naive.crm_user_id
    by_triple: dict[tuple[str, str, str], list[str]] = {}
    for row in baseline._list_crm(
        "Meetings", f"meetings.assigned_user_id = '{me}'", ["id", "name", "date_start", "date_end"]
    ):
        key = (row.get("name", ""), row.get("date_start", ""), row.get("date_end", ""))
        by_triple.setdefault(key, []).append(row["id"])
    for graph_id, triple in graph.items():
        ids = by_triple.get(triple)
        if ids:
            baseline.pairs.append(_Pair(graph_id, ids.pop(), triple))

    state = Linked(world, n, mine, naive, store, baseline, 0.0)
    first, result = state.calsync_run()
    state.link_seconds = first.seconds
    data = result.to_dict()
    if data["crm"]["created"] or data["calendar"]["created"]:
        print(
            f"  note: linking wrote {data['crm']['created']} CRM meetings and "
            f"{data['calendar']['created']} events instead of linking only",
            flush=True,
        )
    state.calsync_run()  # settle: the first follow-up re-reads what the first run saw
    return state


def _window() -> Window:
    from calsync.sync.policies import sync_window

    return sync_window(SETTINGS, common.now())


def _full_listing(world: World, account: Account, window: Window) -> list[Event]:
    cal = world.calendar(account)
    out: list[Event] = []
    token = None
    while True:
        page = cal.list_changes(None, window, token)
        out.extend(page.events)
        token = page.next_page_token
        if token is None:
            return out
