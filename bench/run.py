"""Run calsync's benchmarks: `python -m bench.run [--quick] [--only NAME ...]`.

Every scenario is a module of this package with a `run(quick) -> dict` function returning
`figures` (metric, calsync, baseline, ratio, target, met, note) and its raw data. This
runner calls them in order, prints each figure beside its target, and writes
bench/results/latest.json, latest.md and cost_vs_size.png. A missed target is printed
and written as MISSED; the exit status stays 0 (benchmarks, not tests), unless a
scenario itself crashed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # `python bench/run.py` as well as `python -m bench.run`
    sys.path.insert(0, str(ROOT))

# name -> (module, one line for the table)
SCENARIOS: dict[str, tuple[str, str]] = {
    "first_sync": ("bench.first_sync", "First sync, Graph <-> SuiteCRM, with invitees"),
    "incremental_idle": ("bench.incremental_idle", "Incremental sync, no change, 10k calendar"),
    "incremental_changes": (
        "bench.incremental_changes",
        "Incremental sync, 100 changes, 10k calendar",
    ),
    "push_latency": ("bench.push_latency", "Change-to-other-side latency with push"),
    "many_users": ("bench.many_users", "Many users on real worker processes"),
    "dedupe_scan": ("bench.dedupe_scan", "Duplicate scan of 100,000 events"),
    "api_latency": ("bench.api_latency", "API latency under load (gunicorn)"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument(
        "--only", action="append", choices=sorted(SCENARIOS), help="run this scenario (repeat)"
    )
    parser.add_argument(
        "--sizes", help="first_sync calendar sizes, comma-separated (e.g. 10000)", default=None
    )
    parser.add_argument("--out", type=Path, default=HERE / "results", help="results directory")
    args = parser.parse_args(argv)

    names = args.only or list(SCENARIOS)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, Any] = {}
    crashed = False
    for name in names:
        module_name, title = SCENARIOS[name]
        print(f"== {name}: {title}", flush=True)
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(module_name)
            kwargs: dict[str, Any] = {"quick": args.quick}
            if name == "first_sync" and args.sizes:
                kwargs["sizes"] = tuple(int(s) for s in args.sizes.split(","))
            outcome = module.run(**kwargs)
        except Exception as exc:
            crashed = True
            traceback.print_exc()
            outcome = {
                "figures": [
                    {
                        "metric": "scenario",
                        "calsync": None,
                        "baseline": None,
                        "ratio": None,
                        "target": "runs",
                        "met": False,
                        "note": f"crashed: {type(exc).__name__}: {exc}"[:300],
                    }
                ]
            }
        outcome["title"] = title
        outcome["seconds"] = round(time.perf_counter() - t0, 1)
        results[name] = outcome
        for line in table_lines({name: outcome})[2:]:
            print(line, flush=True)

    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "total_seconds": round(time.perf_counter() - started, 1),
        "scenarios": results,
    }
    separate = args.out / "partial-first_sync.json"
    if not args.only and not args.quick and separate.exists():
        # A first sync measured at full size on its own (`--only first_sync --sizes
        # 10000`, too long for this run's budget) is shown beside this run's figures.
        previous = json.loads(separate.read_text())
        scenario = previous["scenarios"].get("first_sync", {})
        if scenario.get("points") and scenario["points"][-1]["events"] >= 10_000:
            from bench.first_sync import summarize

            report["separate"] = {
                "first_sync_full_size": {
                    "generated_at": previous["generated_at"],
                    "seconds": previous["total_seconds"],
                    "figures": summarize(scenario["points"])["figures"],
                    "points": scenario["points"],
                    "context": previous.get("context", ""),
                }
            }
    from bench import report as report_mod

    stem = "latest" if not args.only else "partial-" + "-".join(names)
    json_path = args.out / f"{stem}.json"
    md_path = args.out / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md = report_mod.markdown(report)
    md_path.write_text(md)
    png = "cost_vs_size.png" if not args.only else f"{stem}.png"
    chart = report_mod.chart(report, args.out / png)
    print()
    print(md)
    print(f"wrote {json_path}, {md_path}" + (f", {chart}" if chart else ""))
    return 1 if crashed else 0


def table_lines(results: dict[str, Any]) -> list[str]:
    from bench.report import table_lines as lines

    return lines(results)


if __name__ == "__main__":
    sys.exit(main())
