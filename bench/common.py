"""What every scenario shares: emulators, connected adapters, a database, meters.

Nothing here is a scenario. A scenario module builds on these helpers and returns a
`Figures` dict; `bench/run.py` puts them beside their targets.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from calsync.calendars.graph import GraphCalendar, GraphOAuth
from calsync.crm.suitecrm import SuiteCrmAdapter
from calsync.sandbox.graph import GraphEmulator
from calsync.sandbox.seed import seed_mailbox
from calsync.sandbox.suitecrm import SuiteCrmEmulator
from calsync.sync import SyncSettings

GRAPH_CLIENT_ID = "calsync-bench-app"
GRAPH_CLIENT_SECRET = "calsync-bench-secret"
REDIRECT = "http://localhost:3000/api/connect/microsoft/callback"
CRM_PASSWORD = "bench password"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")

# The settings every single-user scenario syncs with: both ways, every event, invitees.
SETTINGS = SyncSettings(
    direction="two_way",
    record_option="all",
    sync_invitees=True,
    window_days_back=60,
    window_days_ahead=365,
)


# -- measuring ---------------------------------------------------------------------------


def rss_mb() -> float:
    """Resident set size of this process now, in MB (Linux /proc)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """Samples this process's RSS every 20 ms while active; `.peak` in MB."""

    def __init__(self) -> None:
        self.start = rss_mb()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


@dataclass
class Counted:
    """Requests each emulator answered during a block, per endpoint."""

    graph: dict[str, int] = field(default_factory=dict)
    crm: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def graph_total(self) -> int:
        return sum(self.graph.values())

    @property
    def crm_total(self) -> int:
        # The SuiteCRM emulator also counts each v4_1 call by method ("v4_1 set_entry"),
        # beside the HTTP request itself: those are a breakdown, not extra requests.
        return sum(v for k, v in self.crm.items() if not k.startswith("v4_1 "))

    @property
    def total(self) -> int:
        return self.graph_total + self.crm_total

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.total,
            "graph_requests": self.graph_total,
            "crm_requests": self.crm_total,
            "seconds": round(self.seconds, 3),
            "graph_endpoints": dict(sorted(self.graph.items())),
            "crm_endpoints": dict(sorted(self.crm.items())),
        }


def _api_only(snapshot: dict[str, int]) -> dict[str, int]:
    # Sign-in (token endpoint, discovery) is counted apart from the calendar API itself.
    return {k: v for k, v in snapshot.items() if "/_sandbox" not in k}


@contextmanager
def counting(graph: GraphEmulator, crm: SuiteCrmEmulator) -> Iterator[Counted]:
    graph.counter.reset()
    crm.counter.reset()
    out = Counted()
    started = time.perf_counter()
    try:
        yield out
    finally:
        out.seconds = time.perf_counter() - started
        out.graph = _api_only(graph.counter.snapshot())
        out.crm = _api_only(crm.counter.snapshot())


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# -- emulators and accounts ----------------------------------------------------------------


@dataclass
class Account:
    """One user's pair: a Graph mailbox and a SuiteCRM user, with the credentials calsync
    stores for them."""

    address: str
    crm_user: str
    crm_user_id: str
    graph_blob: dict[str, Any]
    crm_credentials: dict[str, Any]


class World:
    """A Graph emulator (TLS, as msal requires) and a SuiteCRM emulator (v4_1), running."""

    def __init__(self, seed: int = 11) -> None:
        self.graph = GraphEmulator(seed=seed, tls=True).start()
        self.crm = SuiteCrmEmulator(seed=seed).start()
        self.session = self.graph_session()
        self._contacts: set[str] = set()

    def close(self) -> None:
        self.session.close()
        self.graph.stop()
        self.crm.stop()

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def graph_session(self) -> requests.Session:
        http = requests.Session()
        http.verify = self.graph.ca_file
        http.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        return http

    def new_account(self, n_events: int, *, seed: int = 0, name: str | None = None) -> Account:
        """A mailbox seeded with `n_events` (with attendees), connected through the real
        OAuth flow; a CRM user; a CRM contact for every other attendee address."""
        tag = name or uuid.uuid4().hex[:8]
        address = f"{tag}@contoso.example"
        self.graph.add_mailbox(address, tag.title())
        if n_events:
            seed_mailbox(self.graph, address, n_events, seed=seed)
        crm_user = f"u{tag}"
        crm_user_id = self.crm.add_user(crm_user, CRM_PASSWORD, address, last_name=tag)
        self.add_contacts(address)
        blob = self.connect_graph(address)
        conn = SuiteCrmAdapter.connect(self.crm.url, crm_user, CRM_PASSWORD)
        return Account(address, crm_user, crm_user_id, blob, conn.credentials)

    def add_contacts(self, address: str) -> None:
        """Half the attendee addresses are CRM contacts (the rest stay unrelated)."""
        emails = {
            a["emailAddress"]["address"].lower()
            for ev in self.graph.events(address)
            for a in ev.get("attendees") or []
        }
        for email in sorted(emails - self._contacts):
            self._contacts.add(email)
            if hash(email) % 2 == 0:
                self.crm.add_contact(email, "Bench", email.split("@")[0])

    def connect_graph(self, address: str) -> dict[str, Any]:
        oauth = GraphOAuth(
            GRAPH_CLIENT_ID,
            GRAPH_CLIENT_SECRET,
            "office365",
            authority_host=self.graph.url,
            session=self.session,  # type: ignore[arg-type]
        )
        url, flow = oauth.start_auth(REDIRECT, "state-bench", login_hint=address)
        redirect = self.session.get(url, allow_redirects=False, timeout=10)
        location = urllib.parse.urlparse(redirect.headers["Location"])
        blob, _email = oauth.finish_auth(flow, dict(urllib.parse.parse_qsl(location.query)))
        return blob

    def calendar(self, account: Account, session: requests.Session | None = None) -> GraphCalendar:
        return GraphCalendar(
            account.graph_blob,
            client_id=GRAPH_CLIENT_ID,
            client_secret=GRAPH_CLIENT_SECRET,
            authority_host=self.graph.url,
            graph_base=f"{self.graph.url}/v1.0",
            session=session or self.graph_session(),
        )

    def crm_adapter(self, account: Account) -> SuiteCrmAdapter:
        return SuiteCrmAdapter(account.crm_credentials)


class LimitWatch:
    """Wraps the Graph emulator's mailbox limiter to record its peak use."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.peak_concurrent = 0
        self.throttled = 0
        limiter = world.graph._limiter
        self._acquire = limiter.acquire
        watch = self

        def acquire(mailbox: str, cfg: Any, now: float) -> str | None:
            hit = watch._acquire(mailbox, cfg, now)
            if hit is None:
                watch.peak_concurrent = max(watch.peak_concurrent, limiter._active[mailbox])
            else:
                watch.throttled += 1
            return hit

        limiter.acquire = acquire  # type: ignore[method-assign]
        world.graph.set_limits(enabled=True, max_concurrent=4, max_requests=10_000)

    def window_requests(self, mailbox: str) -> int:
        """Requests admitted for the mailbox in the emulator's last 10-minute window."""
        return len(self.world.graph._limiter._recent.get(mailbox.lower(), ()))


# -- a calsync database ----------------------------------------------------------------------


@dataclass
class Database:
    """A migrated calsync database: a temporary SQLite file, or a PostgreSQL schema."""

    url: str
    env: dict[str, str]
    cleanup: Any = None

    def close(self) -> None:
        if self.cleanup is not None:
            self.cleanup()


def sqlite_database(directory: Path | None = None) -> Database:
    from calsync import migrate

    where = Path(directory or tempfile.mkdtemp(prefix="calsync-bench-"))
    url = f"sqlite:///{where / 'calsync.sqlite3'}"
    migrate.upgrade(url)
    return Database(url, process_env(url, where))


def postgres_database(base_url: str) -> Database:
    """A fresh schema in `base_url`'s database, dropped by `close()`."""
    from sqlalchemy import create_engine, text

    from calsync import migrate

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    sa_url = base_url.replace("postgresql://", "postgresql+psycopg://", 1)
    admin = create_engine(sa_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in sa_url else "?"
    url = f"{sa_url}{sep}options={urllib.parse.quote(f'-csearch_path={schema}')}"
    migrate.upgrade(url)

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    where = Path(tempfile.mkdtemp(prefix="calsync-bench-"))
    return Database(url, process_env(url, where), drop)


def process_env(database_url: str, instance: Path) -> dict[str, str]:
    """The environment a calsync process (web, worker) runs with in the benchmark."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CALSYNC_", "DATABASE", "MICROSOFT_", "REDIS_URL"))
    }
    return {
        **base,
        "CALSYNC_ENV": "development",
        "CALSYNC_INSTANCE_DIR": str(instance / "instance"),
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "MICROSOFT_CLIENT_ID": GRAPH_CLIENT_ID,
        "MICROSOFT_CLIENT_SECRET": GRAPH_CLIENT_SECRET,
        # The emulators listen on 127.0.0.1, which the SSRF guard refuses unless named.
        "CALSYNC_URL_ALLOWED_HOSTS": "127.0.0.1",
    }


def runtime_for(db: Database) -> Any:
    from calsync import runtime
    from calsync.config import Config

    rt = runtime.Runtime.from_config(Config.from_env(db.env))
    runtime.install(rt)
    return rt


def provision_user(rt: Any, world: World, account: Account, settings: SyncSettings) -> int:
    """Organization, sync profile, user and both connections rows; returns the user id."""
    from calsync.db import transaction
    from calsync.models import Connection, Organization, SyncProfile, User

    with transaction(rt.sessions) as session:
        org = Organization(
            tenant_id=f"tenant-{uuid.uuid4().hex[:8]}",
            crm_type="suitecrm",
            crm_base_url=world.crm.url,
        )
        org.profiles = [SyncProfile(name="Global", is_global=True, settings=settings.to_dict())]
        user = User(
            organization=org, external_id=account.address, email=account.address, is_admin=True
        )
        user.connections = [
            Connection(
                kind="calendar",
                provider="office365",
                account=account.address,
                details={
                    "authority_host": world.graph.url,
                    "graph_base": f"{world.graph.url}/v1.0",
                    "ca_file": world.graph.ca_file,
                    "account_type": "office365",
                },
                secret=account.graph_blob,
            ),
            Connection(
                kind="crm",
                provider="suitecrm",
                account=account.crm_user,
                secret=account.crm_credentials,
            ),
        ]
        session.add(org)
        session.flush()
        return int(user.id)


def now() -> datetime:
    return datetime.now(UTC)


_RUNTIME: Any = None
_DATABASE: Database | None = None


def bench_runtime() -> Any:
    """The in-process calsync runtime (a temporary SQLite file), built once."""
    global _RUNTIME, _DATABASE
    if _RUNTIME is None:
        _DATABASE = sqlite_database()
        _RUNTIME = runtime_for(_DATABASE)
    return _RUNTIME


def bench_database() -> Database:
    bench_runtime()
    assert _DATABASE is not None
    return _DATABASE
