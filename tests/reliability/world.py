"""The emulators and database a batch of scenarios shares, and how one scenario is built.

Used by the pytest suite (conftest.py) and by the soak runner (soak.py) alike, so the soak
runs exactly the scenarios `make test` runs, only more of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rq import Queue
from rq.registry import ScheduledJobRegistry, StartedJobRegistry
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from calendars.google_fixtures import connect as google_connect
from calendars.google_fixtures import google_adapter, google_session, new_account
from calendars.graph_fixtures import CLIENT_ID as GRAPH_CLIENT_ID
from calendars.graph_fixtures import CLIENT_SECRET as GRAPH_CLIENT_SECRET
from calendars.graph_fixtures import connect as graph_connect
from calendars.graph_fixtures import graph_adapter, graph_session, new_mailbox
from calsync import enqueue
from calsync.db import transaction
from calsync.models import Connection, Organization, SyncProfile, SyncRun, User
from calsync.runtime import QUEUE_SYNC
from calsync.sandbox.google import GoogleEmulator
from calsync.sandbox.graph import GraphEmulator
from calsync.sandbox.suitecrm import SuiteCrmEmulator
from calsync.sync import SyncSettings

from .scenario import (
    TIMEOUT,
    CalendarSide,
    CrmSide,
    InProcessSync,
    Outcome,
    Plan,
    Scenario,
    crm_adapter,
    crm_credentials,
    new_crm,
)


class RecordingSleep:
    """The adapters' sleep in process: records each requested delay (Retry-After included)
    and returns at once, so retries cost the suite no seconds."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@dataclass
class World:
    graph: GraphEmulator
    google: GoogleEmulator
    sessions: sessionmaker[Session]

    def new_user(self, email: str, settings: dict[str, Any] | None = None) -> int:
        with transaction(self.sessions) as session:
            org = Organization(
                tenant_id=f"tenant-{uuid.uuid4().hex[:8]}",
                crm_type="suitecrm",
                crm_base_url="http://127.0.0.1",
            )
            org.profiles = [SyncProfile(name="Global", is_global=True, settings=settings or {})]
            user = User(organization=org, external_id=uuid.uuid4().hex, email=email)
            session.add(org)
            session.flush()
            return user.id


@contextlib.contextmanager
def emulators() -> Iterator[tuple[GraphEmulator, GoogleEmulator]]:
    with GraphEmulator(seed=11, tls=True) as graph, GoogleEmulator(seed=7, tls=True) as google:
        yield graph, google


def calendar_for(world: World, kind: str) -> tuple[CalendarSide, Any]:
    """A fresh mailbox/account connected through the real OAuth flow, and an adapter factory."""
    if kind == "graph":
        emu: Any = world.graph
        address = new_mailbox(emu)
        http = graph_session(emu)
        blob = graph_connect(emu, http, address)

        def make(timeout: float = TIMEOUT) -> Any:
            return graph_adapter(emu, http, blob, timeout=timeout, sleep=sleeper, backoff=0.01)

    else:
        emu = world.google
        address = new_account(emu)
        http = google_session(emu)
        blob = google_connect(emu, http, address)

        def make(timeout: float = TIMEOUT) -> Any:
            return google_adapter(emu, http, blob, timeout=timeout, sleep=sleeper)

    sleeper = RecordingSleep()
    side = CalendarSide(kind, emu, http, address)
    side.sleeper = sleeper  # type: ignore[attr-defined]
    return side, make


def run_in_process(world: World, plan: Plan) -> Outcome:
    """One scenario with every sync run in this process (engine + SQL store + adapters)."""
    calendar, make_calendar = calendar_for(world, plan.calendar)
    crm_emu, crm_user = new_crm(plan.seed)
    try:
        user_id = world.new_user(calendar.address)
        credentials = crm_credentials(crm_emu)
        sync = InProcessSync(
            world.sessions,
            user_id,
            make_calendar,
            lambda timeout=TIMEOUT: crm_adapter(credentials, timeout),
            calendar.address,
        )
        scenario = Scenario(
            plan, calendar, CrmSide(crm_emu, crm_user), [calendar.emu, crm_emu], sync
        )
        return scenario.run()
    finally:
        crm_emu.stop()
        calendar.session.close()


# -- scenarios on real worker processes, killed with SIGKILL at random points --------------


class WorkerSync:
    """Each sync is a job on a real `calsync worker` (its own process group); on the rounds
    the plan says, the whole group is SIGKILLed a random moment after the enqueue, RQ's
    registry maintenance is run as if the heartbeat had lapsed, and a new worker starts."""

    def __init__(self, rt: Any, env: dict[str, str], user_id: int, log: Path) -> None:
        self.rt = dataclasses.replace(
            rt, config=dataclasses.replace(rt.config, retry_intervals=(1, 1, 1))
        )
        self.env = env
        self.user_id = user_id
        self.log = log
        self.worker: subprocess.Popen[bytes] | None = None
        self.kills = 0

    def start(self) -> None:
        out = self.log.open("ab")
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "calsync.cli", "worker"],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()

    def stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            os.killpg(self.worker.pid, signal.SIGTERM)
            try:
                self.worker.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.worker.pid, signal.SIGKILL)
                self.worker.wait()
        self.worker = None

    def kill(self) -> None:
        assert self.worker is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.worker.pid, signal.SIGKILL)
        self.worker.wait()
        self.kills += 1
        queue = Queue(QUEUE_SYNC, connection=self.rt.redis)
        StartedJobRegistry(queue=queue).cleanup(timestamp=time.time() + 3600)
        # The dead worker's scheduler lock lapses after about a minute; until then nobody
        # moves its scheduled retries to the queue. Let that minute pass, as above.
        for key in self.rt.redis.scan_iter("rq:scheduler-lock:*"):
            self.rt.redis.delete(key)
        self.start()

    def _idle(self) -> bool:
        queue = Queue(QUEUE_SYNC, connection=self.rt.redis)
        return (
            len(queue) == 0
            and StartedJobRegistry(queue=queue).count == 0
            and ScheduledJobRegistry(queue=queue).count == 0
        )

    def __call__(self, scenario: Scenario, faulty: bool) -> bool:
        queued = enqueue.enqueue_sync(self.rt, self.user_id, "manual")
        # A trigger absorbed by a job still on its way (a killed job's retry, say) is
        # answered by that job's run, as the user would see it in the history.
        run_id = queued.run_id if queued.run_id is not None else self._run_of(queued.job_id)
        if (
            faulty
            and scenario.plan.kill_worker
            and (self.kills == 0 or scenario.rng.random() < 0.5)
        ):
            time.sleep(scenario.rng.uniform(0.0, 1.5))
            self.kill()
            scenario.outcome.worker_kills += 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if self._idle() and self._status(run_id) not in ("queued", "running"):
                break
            if self._idle() and time.monotonic() > deadline - 50:
                # A job whose retries ran out while killed leaves its run "running".
                break
        else:
            raise AssertionError(
                f"seed {scenario.plan.seed}: the worker never went idle: {self._debug(queued)}"
            )
        status = self._status(run_id)
        if not faulty and status != "succeeded":
            scenario.outcome.clean_sync_errors.append(f"clean sync on the worker: {status}")
        return status == "succeeded"

    def _debug(self, queued: Any) -> str:
        queue = Queue(QUEUE_SYNC, connection=self.rt.redis)
        return (
            f"queued={len(queue)} started={StartedJobRegistry(queue=queue).get_job_ids()} "
            f"scheduled={ScheduledJobRegistry(queue=queue).get_job_ids()} "
            f"job={queued.job_id} run={self._status(queued.run_id)} "
            f"keys={sorted(k.decode() for k in self.rt.redis.keys('*rate*'))[:10]}"
        )

    def _run_of(self, job_id: str) -> int | None:
        with transaction(self.rt.sessions) as session:
            return session.scalar(
                select(SyncRun.id).where(SyncRun.job_id == job_id).order_by(SyncRun.id.desc())
            )

    def _status(self, run_id: int | None) -> str | None:
        if run_id is None:
            return None
        with transaction(self.rt.sessions) as session:
            run = session.get(SyncRun, run_id)
            return None if run is None else run.status


@dataclass
class WorkerUser:
    """A user stored as the connect pages store one: Graph calendar and SuiteCRM."""

    calendar: CalendarSide
    crm: CrmSide
    crm_emu: SuiteCrmEmulator
    user_id: int
    env: dict[str, str]

    def close(self) -> None:
        self.crm_emu.stop()
        self.calendar.session.close()


def worker_user(
    world: World, rt: Any, env: dict[str, str], settings: dict[str, Any], seed: int = 0
) -> WorkerUser:
    calendar, _make = calendar_for(world, "graph")
    crm_emu, crm_user = new_crm(seed)
    env = {
        **env,
        "CALSYNC_URL_ALLOWED_HOSTS": "127.0.0.1",
        "MICROSOFT_CLIENT_ID": GRAPH_CLIENT_ID,
        "MICROSOFT_CLIENT_SECRET": GRAPH_CLIENT_SECRET,
    }
    blob = graph_connect(world.graph, calendar.session, calendar.address)
    with transaction(rt.sessions) as session:
        org = Organization(
            tenant_id=f"tenant-{uuid.uuid4().hex[:8]}",
            crm_type="suitecrm",
            crm_base_url=crm_emu.url,
        )
        org.profiles = [SyncProfile(name="Global", is_global=True, settings=settings)]
        user = User(organization=org, external_id=uuid.uuid4().hex, email=calendar.address)
        user.connections = [
            Connection(
                kind="calendar",
                provider="office365",
                account=calendar.address,
                details={
                    "authority_host": world.graph.url,
                    "graph_base": f"{world.graph.url}/v1.0",
                    "ca_file": world.graph.ca_file,
                },
                secret=blob,
            ),
            Connection(
                kind="crm", provider="suitecrm", account="alice", secret=crm_credentials(crm_emu)
            ),
        ]
        session.add(org)
        session.flush()
        user_id = user.id
    return WorkerUser(calendar, CrmSide(crm_emu, crm_user), crm_emu, user_id, env)


def run_on_worker(world: World, plan: Plan, rt: Any, env: dict[str, str], log: Path) -> Outcome:
    """One scenario (Graph + SuiteCRM) whose syncs run on a real worker that gets killed."""
    settings = {"direction": plan.direction, "record_option": "all", "invitations": "never"}
    who = worker_user(world, rt, env, settings, plan.seed)
    sync = WorkerSync(rt, who.env, who.user_id, log)
    sync.start()
    try:
        scenario = Scenario(plan, who.calendar, who.crm, [who.calendar.emu, who.crm_emu], sync)
        scenario.settings = SyncSettings(**settings)
        return scenario.run()
    finally:
        sync.stop()
        who.close()
