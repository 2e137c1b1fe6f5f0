"""The duplicate scan of 100,000 events (CPU only; listing them is the sync's I/O).

Uses the cleanup feature's own benchmark (`bench/bench_dedupe.py`: its generator, then
`find_duplicates` plus the preview's JSON, best of 3). If that module is missing, times
`calsync.sync.dedupe.duplicate_groups` on generated neutral events instead, and says so.

Baseline: the naive scan compares every pair of items (title, start, end). It is timed on
2,000 events and projected to 100,000 (it is quadratic; running it would take hours).
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from calsync.sync import Event

TARGET_SECONDS = 10.0
NAIVE_SAMPLE = 2_000


def _naive_seconds(events: list[Event]) -> float:
    started = time.perf_counter()
    found = 0
    for i, a in enumerate(events):
        for b in events[i + 1 :]:
            if a.title == b.title and a.start == b.start and a.end == b.end:
                found += 1
    return time.perf_counter() - started


def _generated(n: int) -> list[Event]:
    rng = random.Random(3)
    now = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    out = []
    for i in range(n):
        j = rng.randrange(i) if i and rng.random() < 0.02 else i
        start = now + timedelta(minutes=15 * (j % 30_000))
        out.append(
            Event(
                title=f"Meeting {j}",
                start=start,
                end=start + timedelta(minutes=30),
                calendar_id=f"cal-{i}",
            )
        )
    return out


def run(quick: bool = False) -> dict[str, Any]:
    n = 10_000 if quick else 100_000
    runs = 1 if quick else 3
    source = "bench/bench_dedupe.py (find_duplicates + preview JSON)"
    try:
        from bench import bench_dedupe
        from calsync.cleanup import CleanupPreview
        from calsync.sync import Window
        from calsync.sync.dedupe import ScanOptions, find_duplicates

        calendar, crm, links, duplicates = bench_dedupe.generate(n)
        options = ScanOptions(
            bench_dedupe.NOW - timedelta(days=30),
            bench_dedupe.NOW + timedelta(days=365),
            user_email=bench_dedupe.ME,
        )
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            groups = find_duplicates(calendar, crm, links, options)
            CleanupPreview(
                bench_dedupe.NOW, Window(options.window_start, options.window_end), groups, {}
            ).to_dict()
            times.append(time.perf_counter() - started)
        sample = (calendar + crm)[:NAIVE_SAMPLE]
        extra = {"groups": len(groups), "duplicates_planted": duplicates}
    except ImportError as exc:
        from calsync.sync.dedupe import duplicate_groups

        source = f"duplicate_groups on generated events (bench_dedupe unavailable: {exc})"
        events = _generated(n)
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            groups_ = duplicate_groups(events, "calendar")
            times.append(time.perf_counter() - started)
        sample = events[:NAIVE_SAMPLE]
        extra = {"groups": len(groups_)}
    best = min(times)
    naive = _naive_seconds(sample) * (n / NAIVE_SAMPLE) ** 2
    return {
        "figures": [
            {
                "metric": f"duplicate scan of {n:,} events, s",
                "calsync": round(best, 2),
                "baseline": round(naive, 0),
                "ratio": round(naive / best, 0),
                "target": "< 10 s",
                "met": best < TARGET_SECONDS if not quick else None,
                "note": f"best of {runs}: {source}; baseline pairwise, timed on "
                f"{NAIVE_SAMPLE:,} events and projected (quadratic)",
            }
        ],
        "runs": [round(t, 3) for t in times],
        **extra,
    }
