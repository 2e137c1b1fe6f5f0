"""Fixtures of the calendar provider tests: a real Radicale server and provider harnesses.

Radicale runs as a subprocess for the whole session, on a free 127.0.0.1 port, with its
storage in a temporary folder and plain htpasswd users. Each test gets a calendar of its
own, so tests never see each other's events. Under CI=true a Radicale that cannot start
fails the run; elsewhere (no radicale installed, say) its tests are skipped.

`calendar_provider` is the seam of the contract tests (test_contract.py): a harness giving
a connected adapter plus what only a second client of the same server can do (edit or
delete behind the adapter's back). Other providers join by adding a param and a harness.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from .google_fixtures import GoogleHarness, google_emulator  # noqa: F401 - a fixture
from .graph_fixtures import GraphHarness, graph_emulator  # noqa: F401 - a fixture

IN_CI = os.environ.get("CI", "").lower() == "true"
USER = "alice"
PASSWORD = "alice-secret"
START_TIMEOUT = 20.0


@dataclass(frozen=True)
class RadicaleServer:
    url: str  # ends with "/"
    username: str
    password: str
    log_path: Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def _start_radicale(folder: Path) -> tuple[subprocess.Popen[bytes], RadicaleServer]:
    users = folder / "users"
    users.write_text(f"{USER}:{PASSWORD}\n")
    log_path = folder / "radicale.log"
    port = _free_port()
    argv = [
        sys.executable,
        "-m",
        "radicale",
        "--server-hosts",
        f"127.0.0.1:{port}",
        "--storage-filesystem-folder",
        str(folder / "storage"),
        "--auth-type",
        "htpasswd",
        "--auth-htpasswd-filename",
        str(users),
        "--auth-htpasswd-encryption",
        "plain",
        # Radicale sleeps after a wrong password to slow guessing; tests want no wait.
        "--auth-delay",
        "0",
        "--rights-type",
        "owner_only",
        "--logging-level",
        "warning",
        # No file: the machine's /etc/radicale or ~/.config/radicale must not leak in.
        "--config",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    server = RadicaleServer(f"http://127.0.0.1:{port}/", USER, PASSWORD, log_path)
    return proc, server


def _wait_until_answering(proc: subprocess.Popen[bytes], server: RadicaleServer) -> str | None:
    """None once Radicale answers HTTP, else why it never did."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"Radicale exited with {proc.returncode}"
        try:
            requests.get(server.url, timeout=1, allow_redirects=False)
            return None
        except requests.RequestException:
            time.sleep(0.05)
    return f"Radicale did not answer within {START_TIMEOUT:.0f} s"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="session")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadicaleServer]:
    try:
        import radicale  # noqa: F401 - only whether it is installed
    except ImportError:
        _unavailable("radicale is not installed (pip install radicale)")
    why = "not tried"
    # A free port can be taken by someone else before Radicale binds it: try again.
    for _ in range(3):
        proc, server = _start_radicale(tmp_path_factory.mktemp("radicale"))
        why = _wait_until_answering(proc, server)
        if why is None:
            try:
                yield server
            finally:
                _stop(proc)
            return
        _stop(proc)
        why += ": " + server.log_path.read_text(errors="replace")[-2000:]
    _unavailable(f"Radicale could not start. {why}")


def new_calendar(server: RadicaleServer, name: str = "Work") -> str:
    """Create a fresh calendar as another client would, and return its URL."""
    cal_id = f"cal-{uuid.uuid4().hex[:12]}"
    url = f"{server.url}{server.username}/{cal_id}/"
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
        f"<d:set><d:prop><d:displayname>{name}</d:displayname></d:prop></d:set>"
        "</c:mkcalendar>"
    )
    resp = requests.request(
        "MKCALENDAR", url, data=body, auth=(server.username, server.password), timeout=10
    )
    assert resp.status_code == 201, resp.text
    return url


class CaldavHarness:
    """The CalDAV provider under contract test, with a plain HTTP client beside it."""

    name = "caldav"
    # What the provider itself decides about a written event (see test_contract.as_stored).
    organizer_is_the_owner = False
    keeps_silent_attendees = True

    def __init__(self, server: RadicaleServer) -> None:
        from calsync.calendars.caldav import CaldavCalendar

        self.server = server
        self.calendar_url = new_calendar(server)
        self.adapter = CaldavCalendar(
            server.url, server.username, server.password, self.calendar_url
        )
        self._other = requests.Session()
        self._other.auth = (server.username, server.password)

    def close(self) -> None:
        self.adapter.close()
        self._other.close()

    def with_wrong_password(self) -> object:
        from calsync.calendars.caldav import CaldavCalendar

        return CaldavCalendar(self.server.url, self.server.username, "wrong", self.calendar_url)

    def stale_cursor(self) -> str:
        """A cursor the server no longer accepts (Radicale: an unknown sync token)."""
        return "sync:http://radicale.org/ns/sync/" + "0" * 64

    def _url(self, item_id: str) -> str:
        return self.server.url.rstrip("/") + item_id

    def raw(self, item_id: str) -> str:
        resp = self._other.get(self._url(item_id), timeout=10)
        resp.raise_for_status()
        return resp.text

    def put_raw(self, name: str, ics: str) -> str:
        """Store an item as another client would; returns its item id (href path)."""
        url = self.calendar_url + name
        resp = self._other.put(
            url, data=ics.encode(), headers={"Content-Type": "text/calendar"}, timeout=10
        )
        assert resp.status_code in (201, 204), resp.text
        return url[len(self.server.url.rstrip("/")) :]

    def retitle_behind(self, item_id: str, title: str) -> None:
        """Another client renames the event."""
        text = self.raw(item_id)
        lines = [
            f"SUMMARY:{title}" if line.startswith("SUMMARY") else line for line in text.splitlines()
        ]
        resp = self._other.put(
            self._url(item_id),
            data="\r\n".join(lines).encode(),
            headers={"Content-Type": "text/calendar"},
            timeout=10,
        )
        assert resp.status_code in (201, 204), resp.text

    def delete_behind(self, item_id: str) -> None:
        """Another client deletes the event."""
        resp = self._other.delete(self._url(item_id), timeout=10)
        assert resp.status_code in (200, 204), resp.text

    def invitations_suppressed(self, item_id: str) -> bool:
        """Whether the stored item tells the server not to email its attendees."""
        attendees = [line for line in _unfolded(self.raw(item_id)) if line.startswith("ATTENDEE")]
        return bool(attendees) and all("SCHEDULE-AGENT=CLIENT" in a for a in attendees)


def _unfolded(text: str) -> list[str]:
    return text.replace("\r\n ", "").replace("\n ", "").splitlines()


@pytest.fixture(params=["caldav", "google", "graph"])
def calendar_provider(request: pytest.FixtureRequest) -> Iterator[Any]:
    harness: Any
    if request.param == "caldav":
        harness = CaldavHarness(request.getfixturevalue("radicale"))
    elif request.param == "google":
        harness = GoogleHarness(request.getfixturevalue("google_emulator"))
    elif request.param == "graph":
        harness = GraphHarness(request.getfixturevalue("graph_emulator"))
    else:  # pragma: no cover - future providers add their harness here
        raise AssertionError(request.param)
    with contextlib.closing(harness):
        yield harness


@pytest.fixture
def caldav_harness(radicale: RadicaleServer) -> Iterator[CaldavHarness]:
    with contextlib.closing(CaldavHarness(radicale)) as harness:
        yield harness
