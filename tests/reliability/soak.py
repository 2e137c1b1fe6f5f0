"""`make soak`: the scenarios of tests/reliability/test_scenarios.py, many more of them.

    cd tests && ../.venv/bin/python -m reliability.soak --scenarios 1000 \
        --out ../test-artifacts/soak.json

Runs scenarios `--start` .. `--start + --scenarios - 1` (scenario n is `plan_for(n)`, so any
failure replays with `--start n --scenarios 1`); every `--kill-every`-th runs its syncs on
real `calsync worker` processes and SIGKILLs one. Prints and writes the counts (scenarios,
syncs, failed syncs under faults, worker kills, duplicates, lost events, forbidden
notifications, stale copies, leaks) after every scenario, so an interrupted soak still
reports what it did. Exits 1 if any scenario broke a promise.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

from calsync import migrate, runtime
from calsync.config import Config
from calsync.db import make_engine, make_sessionmaker
from calsync.embedded_redis import EmbeddedRedis

from .scenario import plan_for
from .world import World, emulators, run_in_process, run_on_worker


def _env(folder: Path, database_url: str, redis_url: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CALSYNC_", "DATABASE"))}
    base.pop("REDIS_URL", None)
    return {
        **base,
        "CALSYNC_ENV": "development",
        "CALSYNC_INSTANCE_DIR": str(folder / "instance"),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenarios", type=int, default=1000)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.05, help="fault rate per request")
    parser.add_argument("--kill-every", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    folder = Path(tempfile.mkdtemp(prefix="calsync-soak-"))
    database_url = f"sqlite:///{folder / 'calsync.sqlite3'}"
    migrate.upgrade(database_url)
    redis_server = EmbeddedRedis(folder / "redis")
    redis_server.start()
    env = _env(folder, database_url, redis_server.url)
    rt = runtime.Runtime.from_config(Config.from_env(env))
    totals: Counter[str] = Counter()
    failures: list[str] = []
    began = time.monotonic()
    try:
        with emulators() as (graph, google):
            world = World(graph, google, make_sessionmaker(make_engine(database_url)))
            for seed in range(args.start, args.start + args.scenarios):
                plan = plan_for(seed, args.rate, kill_every=args.kill_every)
                try:
                    if plan.kill_worker:
                        log = folder / f"worker-{seed}.log"
                        outcome = run_on_worker(world, plan, rt, env, log)
                    else:
                        outcome = run_in_process(world, plan)
                except Exception:  # a crashed scenario is a failure, not the end of the soak
                    totals["crashed_scenarios"] += 1
                    failures.append(f"seed {seed} crashed:\n{traceback.format_exc()}")
                    _report(args, totals, failures, began)
                    continue
                totals["scenarios"] += 1
                totals["on_workers"] += plan.kill_worker
                totals["syncs"] += outcome.syncs
                totals["failed_syncs_under_faults"] += outcome.failed_syncs
                totals["worker_kills"] += outcome.worker_kills
                totals["events"] += outcome.items
                totals["duplicates"] += len(outcome.duplicates)
                totals["lost_events"] += len(outcome.lost)
                totals["forbidden_notifications"] += len(outcome.forbidden_notifications)
                totals["stale_copies"] += len(outcome.stale)
                totals["leaked_copies"] += len(outcome.leaked)
                totals["clean_sync_failures"] += bool(outcome.clean_sync_errors)
                if not outcome.ok:
                    failures.append(outcome.describe())
                _report(args, totals, failures, began)
    finally:
        rt.close()
        redis_server.stop()
    print(json.dumps(_summary(args, totals, failures, began), indent=2))
    return 1 if failures else 0


def _summary(args, totals, failures, began) -> dict:  # type: ignore[no-untyped-def]
    return {
        "fault_rate": args.rate,
        "first_seed": args.start,
        "kill_every": args.kill_every,
        "seconds": round(time.monotonic() - began, 1),
        **dict(totals),
        "failures": failures,
    }


def _report(args, totals, failures, began) -> None:  # type: ignore[no-untyped-def]
    summary = _summary(args, totals, failures, began)
    done = totals["scenarios"] + totals["crashed_scenarios"]
    print(
        f"[{done}/{args.scenarios}] {summary['seconds']} s dup={totals['duplicates']} "
        f"lost={totals['lost_events']} notif={totals['forbidden_notifications']} "
        f"failures={len(failures)}",
        file=sys.stderr,
        flush=True,
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    sys.exit(main())
