"""Incremental sync after N changes on a 10,000-event calendar already linked.

The same changes are made on calsync's account and on the baseline's: per 100, 60 events
retitled, 15 created and 10 deleted in Outlook, 15 meetings retitled in SuiteCRM. Run at
10 and at 100 changes: calsync's requests should follow the number of changes, the
baseline's the size of the calendar.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bench.linked import Linked, linked

ROUNDS = (10, 100)


def make_changes(state: Linked, count: int, round_no: int, *, baseline: bool) -> None:
    world = state.world
    account = state.naive if baseline else state.mine
    events = world.graph.events(account.address)
    retitle, create, delete = count * 60 // 100, count * 15 // 100, count * 10 // 100
    crm_edits = count - retitle - create - delete
    offset = round_no * (len(events) // 5)
    targets = events[offset : offset + retitle + delete]
    for n, ev in enumerate(targets[:retitle]):
        world.graph.change_event(account.address, ev["id"], {"subject": f"Changed {round_no}-{n}"})
    for ev in targets[retitle:]:
        world.graph.remove_event(account.address, ev["id"])
    day = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0)
    for n in range(create):
        start = day + timedelta(days=1 + n, hours=round_no)
        world.graph.put_event(
            account.address,
            {
                "subject": f"New {round_no}-{n}",
                "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"},
                "end": {
                    "dateTime": (start + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S"),
                    "timeZone": "UTC",
                },
            },
        )
    edited = 0
    for ev in reversed(events[: -1 - offset]):
        if edited == crm_edits:
            break
        twin = state.crm_twin_of(ev["id"], baseline=baseline)
        if twin:
            world.crm.edit_meeting(twin, name=f"CRM edit {round_no}-{edited}")
            edited += 1


def run(quick: bool = False) -> dict[str, Any]:
    state = linked(quick)
    figures: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    for round_no, count in enumerate(ROUNDS, start=1):
        make_changes(state, count, round_no, baseline=False)
        mine, result = state.calsync_run()
        naive = naive_counts = None
        if count == ROUNDS[-1]:
            # The baseline lists everything whatever changed: it runs once, on the last
            # round's changes only (its account skips the earlier rounds).
            make_changes(state, count, round_no, baseline=True)
            naive, naive_counts = state.baseline_run()
        data = result.to_dict()
        points.append(
            {
                "changes": count,
                "calsync": mine.as_dict(),
                "baseline": naive.as_dict() if naive else None,
                "calsync_result": {k: data[k] for k in ("calendar", "crm", "skipped")},
                "calsync_errors": data["errors"][:5],
                "baseline_writes": naive_counts.as_dict() if naive_counts else None,
            }
        )
    small, big = points
    # The line through both rounds: what each further change costs, and what any run
    # costs whatever changed. Proportional to the changes and not to the calendar means a
    # fixed part small beside reading the calendar, and a bounded cost per change.
    marginal = (big["calsync"]["requests"] - small["calsync"]["requests"]) / (
        big["changes"] - small["changes"]
    )
    fixed = small["calsync"]["requests"] - marginal * small["changes"]
    n = state.size
    figures.append(
        {
            "metric": f"provider requests, {big['changes']} changes on {n:,} events",
            "calsync": big["calsync"]["requests"],
            "baseline": big["baseline"]["requests"],
            "ratio": round(big["baseline"]["requests"] / max(1, big["calsync"]["requests"]), 1),
            "target": "proportional to changes, not to the calendar",
            # The fixed part must be small beside what reading the calendar costs (the
            # baseline's run: a full listing of both sides), and each change cheap.
            "met": fixed <= 0.1 * big["baseline"]["requests"] and marginal <= 2,
            "note": f"{marginal:.2f} requests per further change plus {fixed:.0f} per run "
            f"(sign-in, one listing per side, a few per batch of writes) - "
            f"{fixed / big['baseline']['requests']:.0%} of the baseline's full read; "
            f"{small['changes']} changes took {small['calsync']['requests']}",
        }
    )
    figures.append(
        {
            "metric": f"wall time s, {big['changes']} changes on {n:,} events",
            "calsync": big["calsync"]["seconds"],
            "baseline": big["baseline"]["seconds"],
            "ratio": round(big["baseline"]["seconds"] / max(1e-9, big["calsync"]["seconds"]), 1),
            "target": "(no target)",
            "met": None,
        }
    )
    return {"figures": figures, "points": points}
