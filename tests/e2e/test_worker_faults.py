"""Faults during a sync on a real worker: throttling is retried, a killed worker converges."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections import Counter

from rq import Queue
from rq.registry import StartedJobRegistry

from calsync import enqueue
from calsync.runtime import QUEUE_SYNC
from processes import stop_process

from .conftest import soon


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    # Its own process group: SIGKILL must reach the work horse RQ forks, as a crash would.
    return subprocess.Popen(
        [sys.executable, "-m", "calsync.cli", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def quick_retries(rt):  # type: ignore[no-untyped-def]
    """The runtime of a deployment that retries after 1 s (the policy is set at enqueue)."""
    return dataclasses.replace(rt, config=dataclasses.replace(rt.config, retry_intervals=(1, 1, 1)))


def wait_for(predicate, timeout: float = 60, interval: float = 0.2) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {predicate.__name__}")


def test_a_throttled_crm_is_retried_and_the_sync_succeeds(rt, account, worker_env) -> None:  # type: ignore[no-untyped-def]
    account.put_event("kickoff", "Kickoff", soon(1))
    account.crm.set_faults(rate_429=1.0, retry_after_seconds=1)
    enqueue.enqueue_sync(quick_retries(rt), account.user_id, "manual")
    worker = start_worker(worker_env)
    try:

        def retrying() -> bool:
            return account.runs(rt)[0].status == "retrying"

        wait_for(retrying)
        account.crm.set_faults(rate_429=0.0)

        def succeeded() -> bool:
            return account.runs(rt)[0].status == "succeeded"

        wait_for(succeeded)
    finally:
        output = stop_process(worker)
    [run] = account.runs(rt)
    assert run.status == "succeeded", output[-3000:]
    assert account.meeting_titles() == ["Kickoff"]


def test_a_worker_killed_mid_sync_converges_without_duplicates(rt, account, worker_env) -> None:  # type: ignore[no-untyped-def]
    # More meetings than one batched write holds (100), so the run writes in several.
    titles = [f"Customer call {n:03d}" for n in range(250)]
    for n, title in enumerate(titles):
        account.put_event(f"call-{n}", title, soon(1 + n % 20, hour=8 + n % 9))
    # Slow CRM requests, so the kill lands in the middle of the writing phase.
    account.crm.set_faults(rate_slow=1.0, slow_seconds=0.5)
    queued = enqueue.enqueue_sync(quick_retries(rt), account.user_id, "manual")
    worker = start_worker(worker_env)

    def some_written() -> bool:
        return len(account.crm.live_meetings()) >= 10

    wait_for(some_written)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()
    written_before_crash = len(account.crm.live_meetings())
    assert written_before_crash < len(titles)

    # RQ declares a job abandoned once its heartbeat lapses (about 90 s) at the next
    # registry maintenance; run that maintenance as if the time had passed.
    registry = StartedJobRegistry(queue=Queue(QUEUE_SYNC, connection=rt.redis))
    assert queued.job_id in registry.get_job_ids()
    registry.cleanup(timestamp=time.time() + 3600)
    account.crm.set_faults(rate_slow=0.0)

    worker = start_worker(worker_env)
    try:

        def succeeded() -> bool:
            return account.runs(rt)[0].status == "succeeded"

        wait_for(succeeded)
    finally:
        output = stop_process(worker)

    names = Counter(m["name"] for m in account.crm.live_meetings())
    assert sorted(names) == sorted(titles), output[-3000:]
    assert set(names.values()) == {1}, "a meeting was created twice"
