"""The development sandbox: "Sandbox Outlook", "Sandbox CRM" and "Sandbox Dynamics 365"
without any cloud account.

`calsync sandbox` (a child of `calsync up` in development) runs a Graph emulator over TLS,
a SuiteCRM emulator and a Dynamics 365 emulator over TLS, seeded with a few weeks of
realistic meetings, and writes where they listen into ``instance/sandbox.json``. The web
API reads that file, outside production only, to offer "Sandbox Outlook" among the
calendar providers and to connect the organization's "Sandbox CRM" or "Sandbox Dynamics
365". Production never reads it and refuses to start the service (`calsync sandbox` stops
with one line).

What the newcomer finds (dates relative to the day the sandbox starts):

- Outlook: the signed-in user's mailbox is created at the first "Connect" (the emulator
  consents at once) and holds weekly series, all-day events, single meetings whose
  invitees are CRM contacts, internal meetings without invitees, and one meeting imported
  twice (a duplicate for "Run duplicate cleanup").
- CRM: user "demo", password "demo"; contacts whose e-mails match the invitees; meetings
  only the CRM has (they travel to the calendar), one of them entered twice.
- Dynamics 365: "Sign in with Microsoft" walks the emulator's "Permissions requested"
  page (served over plain http, like Outlook's); whoever signs in becomes a system user
  of the organization at that moment, owning the same CRM-only meetings (invitees are
  the same contacts), so every developer finds a populated CRM under their own address.

The emulators' data (mailboxes, meetings, tokens) is saved into
``instance/sandbox-state.pickle`` every half minute and at exit, and the ports are reused,
so a restarted `make run` carries on; ``calsync sandbox --fresh`` (or deleting the file)
starts from the seeded weeks again.

Nobody is ever e-mailed: the emulators log the invitations the real services would have
sent and count every request; a browser reads both over plain http at
``{consent_url}/_sandbox/invitations`` and ``/_sandbox/counters`` (Outlook) and
``{crm_url}/_sandbox/...`` (CRM), the addresses `calsync sandbox` prints.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import pickle
import shutil
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import request
from werkzeug.serving import BaseWSGIServer, make_server

from .dynamics import MASK_REQUIRED, DynamicsEmulator
from .graph import GraphEmulator, GraphMailbox
from .server import _QuietHandler
from .suitecrm import API_V4_1, SuiteCrmEmulator

SANDBOX_FILE = "sandbox.json"
CA_FILE = "sandbox-ca.pem"
DYNAMICS_CA_FILE = "sandbox-dynamics-ca.pem"
# The emulators' data, saved every half minute and at exit, so that a restarted
# `make run` finds the mailboxes, meetings and tokens the stored connections know.
STATE_FILE = "sandbox-state.pickle"
SAVE_EVERY_SECONDS = 30
GRAPH_STATE = ("_mailboxes", "_tokens", "_refresh", "_rounds", "_delta", "_id_rng")
CRM_STATE = (
    "records",
    "relations",
    "passwords",
    "meetings_access",
    "clients",
    "access_tokens",
    "refresh_tokens",
    "sessions",
)
# The Dynamics emulator is a Graph emulator (Microsoft sign-in) plus the Dataverse tables.
DYNAMICS_STATE = (
    *GRAPH_STATE,
    "tables",
    "parties",
    "privileges",
    "_seq",
    "_tombstones",
    "_min_token",
    "_token_scopes",
    "_consents",
)
CRM_USER = "demo"
CRM_PASSWORD = "demo"
CRM_USER_EMAIL = "demo@sandbox.example"
# The emulator accepts any client; these name calsync in its logs.
CLIENT_ID = "calsync-sandbox"
CLIENT_SECRET = "calsync-sandbox-secret"

# name, e-mail: the CRM's contacts, and the invitees of the calendar's meetings.
CONTACTS = (
    ("Anna", "Müller", "anna.mueller@contoso.example"),
    ("Ben", "Okafor", "ben.okafor@fabrikam.example"),
    ("Chloé", "Dubois", "chloe.dubois@northwind.example"),
    ("Dmitri", "Novak", "dmitri.novak@tailspin.example"),
    ("Eva", "Larsen", "eva.larsen@litware.example"),
    ("Farid", "Silva", "farid.silva@adatum.example"),
    ("Grace", "O'Brien", "grace.obrien@woodgrove.example"),
    ("Hiro", "Nakamura", "hiro.nakamura@wingtip.example"),
)
# Someone the CRM does not know (the calendar keeps them; the CRM has no one to relate).
STRANGER = ("Sam Taylor", "sam.taylor@gmail.example")


def _person(index: int) -> tuple[str, str]:
    first, last, email = CONTACTS[index]
    return f"{first} {last}", email


# -- the demo data ------------------------------------------------------------------------------


def _monday(today: dt.date) -> dt.date:
    return today - dt.timedelta(days=today.weekday())


def calendar_events(today: dt.date) -> list[dict[str, Any]]:
    """Graph events for a new sandbox mailbox: last week to three weeks ahead."""
    week = _monday(today)
    zone = "Europe/Berlin"

    def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
        return dt.datetime.combine(week + dt.timedelta(days=day), dt.time(hour, minute))

    def timed(
        subject: str,
        start: dt.datetime,
        minutes: int,
        invitees: tuple[tuple[str, str], ...] = (),
        *,
        location: str = "",
        body: str = "",
    ) -> dict[str, Any]:
        fmt = "%Y-%m-%dT%H:%M:%S"
        return {
            "subject": subject,
            "body": {"contentType": "html", "content": body},
            "start": {"dateTime": start.strftime(fmt), "timeZone": zone},
            "end": {
                "dateTime": (start + dt.timedelta(minutes=minutes)).strftime(fmt),
                "timeZone": zone,
            },
            "isAllDay": False,
            "location": {"displayName": location},
            "attendees": [
                {"emailAddress": {"address": email, "name": name}, "type": "required"}
                for name, email in invitees
            ],
        }

    def all_day(
        subject: str, day: int, days: int, invitees: tuple[tuple[str, str], ...] = ()
    ) -> dict[str, Any]:
        first = week + dt.timedelta(days=day)
        event = timed(subject, dt.datetime.combine(first, dt.time()), 0, invitees)
        event["end"]["dateTime"] = f"{first + dt.timedelta(days=days)}T00:00:00"
        event["isAllDay"] = True
        event["showAs"] = "free"
        return event

    def weekly(event: dict[str, Any], weekday: str, count: int) -> dict[str, Any]:
        event["recurrence"] = {
            "pattern": {
                "type": "weekly",
                "interval": 1,
                "firstDayOfWeek": "monday",
                "daysOfWeek": [weekday],
            },
            "range": {
                "type": "numbered",
                "startDate": event["start"]["dateTime"][:10],
                "numberOfOccurrences": count,
            },
        }
        return event

    anna, ben, chloe, dmitri, eva, farid, grace, hiro = (_person(i) for i in range(8))
    pricing = timed(
        "Pricing discussion \u2013 Contoso",
        at(9, 15),
        45,
        (anna,),
        location="Teams",
        body="Imported twice from an old calendar: a duplicate to clean up.",
    )
    return [
        # Series.
        weekly(timed("Pipeline review", at(-7, 9), 30, location="Room 4.01"), "monday", 5),
        weekly(
            timed("Contoso weekly check-in", at(-4, 14), 30, (anna,), location="Teams"),
            "thursday",
            5,
        ),
        # All-day.
        all_day("Trade fair \u2013 Hannover", 9, 2),
        all_day("Site visit \u2013 Northwind", 16, 1, (chloe,)),
        # Single meetings with customers (their invitees are CRM contacts).
        timed("Demo \u2013 Fabrikam", at(1, 10), 60, (ben,), location="Client office"),
        timed(
            "Contract negotiation \u2013 Tailspin",
            at(2, 16),
            90,
            (dmitri, STRANGER),
            body="<b>Agenda</b>: price, term, <i>SLA</i>.",
        ),
        timed("Renewal call \u2013 Litware", at(-3, 11, 30), 30, (eva,), location="Teams"),
        timed("Kick-off \u2013 Adatum", at(8, 9, 30), 60, (farid, grace), location="Room 2.12"),
        timed("Lunch with Hiro", at(10, 12, 30), 60, (hiro,), location="Café"),
        timed("Security questionnaire \u2013 Woodgrove", at(15, 15), 45, (grace,)),
        # Internal: no invitees (synced only with "Sync all").
        timed("1:1 with manager", at(3, 8, 30), 30),
        timed("Dentist", at(11, 7, 45), 45),
        # The duplicate: the same meeting twice in the calendar.
        pricing,
        json.loads(json.dumps(pricing)),
    ]


@dataclass(frozen=True)
class CrmMeeting:
    """A meeting only the CRM has; its start is UTC (both CRMs store UTC), Berlin office
    hours give or take."""

    name: str
    day: int  # from this week's Monday
    hour: int
    minutes: int
    contacts: tuple[int, ...]  # indexes into CONTACTS: the invitees
    location: str = ""
    description: str = ""

    def start(self, today: dt.date) -> dt.datetime:
        return dt.datetime.combine(_monday(today) + dt.timedelta(days=self.day), dt.time(self.hour))


# Only in the CRM: they travel to the calendar ("Two way" or "One way (CRM to calendar)").
CRM_MEETINGS = (
    CrmMeeting("Quarterly review \u2013 Northwind", 7, 13, 60, (2,), location="Northwind HQ"),
    CrmMeeting("Onboarding call \u2013 Adatum", 4, 14, 30, (5,), description="Entered in the CRM."),
    CrmMeeting("Follow-up \u2013 Wingtip", -2, 15, 30, (7,)),
    # Entered twice in the CRM: a duplicate on the CRM side.
    CrmMeeting("Follow-up \u2013 Litware", 3, 13, 30, (4,)),
    CrmMeeting("Follow-up \u2013 Litware", 3, 13, 30, (4,)),
)


def seed_crm(crm: SuiteCrmEmulator, today: dt.date) -> str:
    """The demo user, the contacts and the CRM's own meetings; returns the user's id."""
    user_id = crm.add_user(
        CRM_USER, CRM_PASSWORD, CRM_USER_EMAIL, first_name="Demo", last_name="User"
    )
    contact_ids = [crm.add_contact(email, first, last) for first, last, email in CONTACTS]
    fmt = "%Y-%m-%d %H:%M:%S"
    for meeting in CRM_MEETINGS:
        start = meeting.start(today)
        extra = {"location": meeting.location, "description": meeting.description}
        meeting_id = crm.add_meeting(
            user_id,
            name=meeting.name,
            date_start=start.strftime(fmt),
            date_end=(start + dt.timedelta(minutes=meeting.minutes)).strftime(fmt),
            **{key: value for key, value in extra.items() if value},
        )
        for index in meeting.contacts:
            crm.relate(meeting_id, "Contacts", contact_ids[index])
    return user_id


def seed_dynamics(dynamics: DynamicsEmulator) -> list[str]:
    """The organization's contacts (the invitees of the calendar's meetings); their ids."""
    return [dynamics.add_contact(email, first, last) for first, last, email in CONTACTS]


def seed_dynamics_user(dynamics: DynamicsEmulator, user_id: str, today: dt.date) -> list[str]:
    """The CRM-only meetings, owned (organized) by system user `user_id`; their ids."""
    by_email = {
        row["emailaddress1"].lower(): contact_id
        for contact_id, row in dynamics.tables["contacts"].items()
    }
    ids = []
    for meeting in CRM_MEETINGS:
        start = meeting.start(today).replace(tzinfo=dt.UTC)
        extra = {"location": meeting.location, "description": meeting.description}
        appointment_id = dynamics.add_appointment(
            user_id,
            meeting.name,
            start,
            start + dt.timedelta(minutes=meeting.minutes),
            **{key: value for key, value in extra.items() if value},
        )
        with dynamics._dv_lock:
            # Required attendees are activity parties (participationtypemask 5), each
            # resolved to the contact with that e-mail, as the app saves them.
            dynamics.parties[appointment_id] += [
                dynamics._party(
                    appointment_id, MASK_REQUIRED, "contact", by_email[CONTACTS[i][2]], None
                )
                for i in meeting.contacts
            ]
        ids.append(appointment_id)
    return ids


class DemoGraphEmulator(GraphEmulator):
    """A Graph emulator whose every new mailbox starts with the demo calendar."""

    def __init__(self, *, today: dt.date | None = None, **kwargs: Any) -> None:
        self.today = today or dt.date.today()
        super().__init__(**kwargs)

    def add_mailbox(self, address: str, display_name: str | None = None) -> GraphMailbox:
        with self._lock:
            new = address.lower() not in self._mailboxes
            mailbox = super().add_mailbox(address, display_name)
            if new:
                self.bulk_insert(address, calendar_events(self.today))
        return mailbox


class DemoDynamicsEmulator(DynamicsEmulator):
    """A Dynamics 365 organization where whoever signs in is a system user already: their
    user (with every activity privilege) and CRM-only meetings are made when their
    browser first reaches the authorize endpoint, before the consent page."""

    def __init__(self, *, today: dt.date | None = None, **kwargs: Any) -> None:
        self.today = today or dt.date.today()
        super().__init__(**kwargs)

    def _authorize_gate(self) -> Any:
        hint = request.args.get("login_hint")
        if hint and request.args.get("client_id") and request.args.get("redirect_uri"):
            self.provision(str(hint))
        return super()._authorize_gate()

    def provision(self, email: str) -> str:
        """The system user of `email`, made (and given the demo meetings) if new."""
        # The Dataverse lock first, then the mailboxes' (add_user): the order `save` takes.
        with self._dv_lock:
            try:
                return self.user_id_for(email)
            except KeyError:
                pass
            user_id = self.add_user(email.lower(), email.split("@")[0])
            seed_dynamics_user(self, user_id, self.today)
            return user_id


# -- where the sandbox listens ------------------------------------------------------------------


def sandbox_file(instance_dir: Path) -> Path:
    return instance_dir / SANDBOX_FILE


def running_sandbox(config: Any) -> dict[str, Any] | None:
    """What a running sandbox wrote into ``instance/sandbox.json``; None in production,
    when there is no such file, or when the process that wrote it is gone."""
    if config.is_production:
        return None
    try:
        info = json.loads(sandbox_file(config.instance_dir).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(info, dict) or not _alive(info.get("pid")):
        return None
    return info


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _previous_ports(path: Path) -> dict[str, int]:
    """The ports of the last run, kept when free, so stored connections find them again."""
    try:
        info = json.loads(path.read_text())
        ports = info.get("ports", {})
        return {k: int(v) for k, v in ports.items() if _port_free("127.0.0.1", int(v))}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


@dataclass
class Sandbox:
    """The emulators, started, with the plain-http consent addresses for the browser."""

    graph: DemoGraphEmulator
    crm: SuiteCrmEmulator
    consent_server: BaseWSGIServer
    info: dict[str, Any]
    path: Path
    _thread: threading.Thread
    dynamics: DemoDynamicsEmulator
    dynamics_consent_server: BaseWSGIServer
    _dynamics_thread: threading.Thread
    _stopped: bool = False

    def save(self) -> None:
        """Write the emulators' data into ``instance/sandbox-state.pickle``."""
        with self.graph._lock, self.crm._lock, self.dynamics._dv_lock, self.dynamics._lock:
            blob = pickle.dumps(
                {
                    "graph": {name: getattr(self.graph, name) for name in GRAPH_STATE},
                    "crm": {name: getattr(self.crm, name) for name in CRM_STATE},
                    "dynamics": {name: getattr(self.dynamics, name) for name in DYNAMICS_STATE},
                }
            )
        target = self.path.with_name(STATE_FILE)
        tmp = target.with_name(f".{STATE_FILE}.{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, target)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(OSError):
            self.save()
        with contextlib.suppress(OSError):
            current = json.loads(self.path.read_text())
            if current.get("pid") == os.getpid():
                # Keep the ports for the next run; mark it stopped.
                self.path.write_text(json.dumps({"ports": current.get("ports", {})}))
        for server, thread in (
            (self.consent_server, self._thread),
            (self.dynamics_consent_server, self._dynamics_thread),
        ):
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
        self.graph.stop()
        self.crm.stop()
        self.dynamics.stop()


def _saved_state(path: Path) -> dict[str, Any] | None:
    # The instance directory is the developer's own (it holds the secret keys too).
    try:
        state = pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, ImportError, AttributeError, ValueError):
        return None
    try:
        usable = set(state["graph"]) == set(GRAPH_STATE) and set(state["crm"]) == set(CRM_STATE)
        # Saved before the sandbox had Dynamics 365: Outlook and the CRM carry on, the
        # Dynamics organization starts from its seed.
        if set(state.get("dynamics") or ()) != set(DYNAMICS_STATE):
            state["dynamics"] = None
    except (TypeError, KeyError, AttributeError):
        return None
    return state if usable else None


def _plain_http(app: Callable[..., Any], port: int, name: str) -> tuple[BaseWSGIServer, Any]:
    """`app` served over plain http too: browsers do not trust an emulator's certificate,
    and the consent page is the only page the browser visits."""
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=_QuietHandler)
    server.daemon_threads = True  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=name, daemon=True
    )
    thread.start()
    return server, thread


def start_sandbox(
    instance_dir: Path, *, today: dt.date | None = None, fresh: bool = False
) -> Sandbox:
    """Start, seed (or restore, unless `fresh`) and announce (in ``instance/sandbox.json``)
    both emulators."""
    instance_dir.mkdir(parents=True, exist_ok=True)
    path = sandbox_file(instance_dir)
    ports = _previous_ports(path)
    day = today or dt.date.today()
    # Plain http notification URLs stay allowed: push reaches `calsync web` at BASE_URL,
    # http://localhost:3000 in development (real Graph, and production, want https).
    graph = DemoGraphEmulator(
        today=day, seed=8, tls=True, port=ports.get("graph", 0), require_https_notifications=False
    )
    crm = SuiteCrmEmulator(apis=(API_V4_1,), seed=8, port=ports.get("crm", 0))
    dynamics = DemoDynamicsEmulator(
        today=day, seed=8, tls=True, consent_prompt=True, port=ports.get("dynamics", 0)
    )
    state = None if fresh else _saved_state(instance_dir / STATE_FILE)
    if state is not None:
        for name in GRAPH_STATE:
            setattr(graph, name, state["graph"][name])
        for name in CRM_STATE:
            setattr(crm, name, state["crm"][name])
    else:
        seed_crm(crm, day)
    if state is not None and state["dynamics"] is not None:
        for name in DYNAMICS_STATE:
            setattr(dynamics, name, state["dynamics"][name])
    else:
        seed_dynamics(dynamics)
    graph.start()
    crm.start()
    dynamics.start()
    consent_server, thread = _plain_http(graph._wsgi, ports.get("consent", 0), "sandbox-consent")
    dynamics_consent_server, dynamics_thread = _plain_http(
        dynamics._wsgi, ports.get("dynamics_consent", 0), "sandbox-dynamics-consent"
    )
    assert graph.ca_file is not None and dynamics.ca_file is not None
    ca_file = instance_dir / CA_FILE
    shutil.copyfile(graph.ca_file, ca_file)
    dynamics_ca_file = instance_dir / DYNAMICS_CA_FILE
    shutil.copyfile(dynamics.ca_file, dynamics_ca_file)
    consent_url = f"http://127.0.0.1:{consent_server.server_port}"
    info = {
        "pid": os.getpid(),
        "graph_url": graph.url,
        "consent_url": consent_url,
        "ca_file": str(ca_file),
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "crm_url": crm.url,
        "crm_user": CRM_USER,
        "crm_password": CRM_PASSWORD,
        "dynamics_url": dynamics.url,
        "dynamics_consent_url": f"http://127.0.0.1:{dynamics_consent_server.server_port}",
        "dynamics_ca_file": str(dynamics_ca_file),
        "ports": {
            "graph": int(graph.url.rsplit(":", 1)[1]),
            "crm": int(crm.url.rsplit(":", 1)[1]),
            "consent": consent_server.server_port,
            "dynamics": int(dynamics.url.rsplit(":", 1)[1]),
            "dynamics_consent": dynamics_consent_server.server_port,
        },
    }
    tmp = path.with_name(f".{SANDBOX_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, path)
    return Sandbox(
        graph,
        crm,
        consent_server,
        info,
        path,
        thread,
        dynamics=dynamics,
        dynamics_consent_server=dynamics_consent_server,
        _dynamics_thread=dynamics_thread,
    )


def serve(instance_dir: Path, echo: Callable[[str], None] = print, *, fresh: bool = False) -> None:
    """`calsync sandbox`: start, print where, serve until SIGINT or SIGTERM."""
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    sandbox = start_sandbox(instance_dir, fresh=fresh)
    try:
        info = sandbox.info
        echo(
            "calsync sandbox is up (development only; nobody is ever e-mailed):\n"
            f'  "Sandbox Outlook": {info["graph_url"]} (consent page {info["consent_url"]})\n'
            f'  "Sandbox CRM":     {info["crm_url"]}  user name "{CRM_USER}", '
            f'password "{CRM_PASSWORD}"\n'
            f'  "Sandbox Dynamics 365": {info["dynamics_url"]}  "Sign in with Microsoft" as '
            f"yourself (consent page {info['dynamics_consent_url']})\n"
            "  What the real services would have e-mailed, and the requests they got:\n"
            f"    {info['consent_url']}/_sandbox/invitations  "
            f"{info['consent_url']}/_sandbox/counters\n"
            f"    {info['crm_url']}/_sandbox/invitations  {info['crm_url']}/_sandbox/counters\n"
            f"    {info['dynamics_consent_url']}/_sandbox/invitations  "
            f"{info['dynamics_consent_url']}/_sandbox/counters\n"
            f"  Its data is kept in {instance_dir / STATE_FILE}: delete that file (or run "
            "`calsync sandbox --fresh`) to start from the seeded weeks again."
        )
        while not stop.wait(SAVE_EVERY_SECONDS):
            sandbox.save()
    finally:
        sandbox.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
