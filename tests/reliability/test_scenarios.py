"""The randomized fault scenarios of `make test` (50); `make soak` runs 1,000 of the same.

Scenario n is `plan_for(n)`. Nine in ten run every sync in this process, exactly as
`jobs.sync_user` runs it (the engine, the SQL store, the real adapters over HTTP to the
emulators); every tenth runs its syncs as jobs on real `calsync worker` processes and
SIGKILLs the worker's process group at a random moment. A failure prints the seed and
what differed; `-k seed_N]` replays it.
"""

from __future__ import annotations

import pytest

from .scenario import plan_for
from .world import run_in_process, run_on_worker

SCENARIOS = 50
IN_PROCESS = [s for s in range(SCENARIOS) if not plan_for(s).kill_worker]
ON_WORKERS = [s for s in range(SCENARIOS) if plan_for(s).kill_worker]


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed_{s}") for s in IN_PROCESS])
def test_a_faulty_scenario_ends_converged_with_nothing_lost_doubled_or_emailed(
    world, seed: int
) -> None:  # type: ignore[no-untyped-def]
    outcome = run_in_process(world, plan_for(seed))
    assert outcome.ok, outcome.describe()


@pytest.mark.parametrize("seed", [pytest.param(s, id=f"seed_{s}") for s in ON_WORKERS])
def test_a_scenario_whose_worker_is_killed_ends_converged_with_nothing_lost_or_doubled(
    world, rt, env, tmp_path, seed: int
) -> None:  # type: ignore[no-untyped-def]
    outcome = run_on_worker(world, plan_for(seed), rt, env, tmp_path / "worker.log")
    log = (tmp_path / "worker.log").read_text(errors="replace")[-3000:]
    assert outcome.ok, f"{outcome.describe()}\n--- worker log ---\n{log}"
    assert outcome.worker_kills >= 1, outcome.describe()
