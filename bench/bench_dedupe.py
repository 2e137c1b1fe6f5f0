"""Benchmark: the duplicate scan over 100,000 events (target: under 10 s on 2 cores).

Generates 100,000 neutral events, 2% of them duplicates (copies on the same side by
title/start/end, copies sharing an iCalUID, and copies across the sides), with a third of
the rest linked to a twin, then times `find_duplicates` (the grouping and the verdicts,
which is what a cleanup preview spends its CPU on) and the preview's JSON. Listing the
items from a provider is I/O and not part of this figure.

    .venv/bin/python bench/bench_dedupe.py [--events 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import random
import time
from datetime import UTC, datetime, timedelta

from calsync.cleanup import CleanupPreview
from calsync.sync import Event, Invitee, Link, Window
from calsync.sync.dedupe import ScanOptions, find_duplicates

TARGET_SECONDS = 10.0
ME = "me@example.com"
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def generate(n: int, seed: int = 7) -> tuple[list[Event], list[Event], list[Link], int]:
    """(calendar, crm, links, duplicates): n events in all, 2% of them duplicates."""
    rng = random.Random(seed)
    duplicates = n * 2 // 100
    originals = n - duplicates
    calendar: list[Event] = []
    crm: list[Event] = []
    for i in range(originals):
        start = NOW + timedelta(days=rng.randrange(-29, 360), minutes=15 * rng.randrange(96))
        ev = Event(
            title=f"Meeting {i} with customer {rng.randrange(5000)}",
            start=start,
            end=start + timedelta(minutes=30 * rng.randrange(1, 5)),
            timezone="Europe/Berlin",
            organizer=ME,
            invitees=(Invitee(f"person{rng.randrange(20000)}@client.org"),),
            ical_uid=f"uid-{i}",
            last_modified=NOW - timedelta(minutes=i),
        )
        if i % 2:
            calendar.append(ev.with_identity("calendar", f"cal-{i}", f"v{i}"))
        else:
            crm.append(replace_uid(ev, None).with_identity("crm", f"crm-{i}", f"v{i}"))
    links = [
        Link(link_id=f"L{n}", crm_id=ev.crm_id, crm_version=ev.crm_version)
        for n, ev in enumerate(crm[: len(crm) // 3])
    ]
    for d in range(duplicates):
        kind = d % 4
        if kind in (0, 1):  # a copy made by hand on the calendar
            src = rng.choice(calendar)
            calendar.append(
                replace_uid(src, f"dup-uid-{d}").with_identity("calendar", f"cal-d{d}", "v")
            )
        elif kind == 2:  # an import that kept the iCalUID
            src = rng.choice(calendar)
            calendar.append(src.with_identity("calendar", f"cal-u{d}", "v"))
        else:  # a copy an earlier tool left in the CRM
            src = rng.choice(crm)
            crm.append(replace_uid(src, None).with_identity("crm", f"crm-d{d}", "v"))
    return calendar, crm, links, duplicates


def replace_uid(ev: Event, uid: str | None) -> Event:
    from dataclasses import replace

    return replace(ev, ical_uid=uid, calendar_id=None, crm_id=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    calendar, crm, links, duplicates = generate(args.events)
    options = ScanOptions(NOW - timedelta(days=30), NOW + timedelta(days=365), user_email=ME)
    print(
        f"{len(calendar) + len(crm):,} events ({len(calendar):,} calendar, {len(crm):,} CRM), "
        f"{duplicates:,} duplicates, {len(links):,} links; {os.cpu_count()} CPUs"
    )
    best = float("inf")
    for run in range(1, args.runs + 1):
        started = time.perf_counter()
        groups = find_duplicates(calendar, crm, links, options)
        scan = time.perf_counter() - started
        started = time.perf_counter()
        preview = CleanupPreview(NOW, Window(options.window_start, options.window_end), groups, {})
        shown = preview.to_dict()
        render = time.perf_counter() - started
        best = min(best, scan + render)
        counts = shown["counts"]
        print(
            f"run {run}: scan {scan:.2f} s + preview JSON {render:.2f} s; "
            f"{counts['groups']:,} groups, {counts['remove']:,} to remove, "
            f"{counts['similar']:,} similar, {counts['protected']:,} protected"
        )
    verdict = "OK" if best < TARGET_SECONDS else "TOO SLOW"
    print(
        f"duplicate scan of {args.events:,} events: {best:.2f} s "
        f"(target < {TARGET_SECONDS:.0f} s) {verdict}"
    )


if __name__ == "__main__":
    main()
