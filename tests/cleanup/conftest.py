"""Fixtures of the cleanup and reset tests.

The engine's in-memory sides come from tests/sync/sync_fakes.py (imported under the same
module name the sync tests use). The real servers come from the shared fixtures: Radicale
(tests/calendars/conftest.py) and, for jobs on a real worker, the end-to-end account
(tests/e2e/conftest.py: a user whose stored connections are that Radicale and the
SuiteCRM emulator, on the `rt` fixture's database).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SYNC_TESTS = str(Path(__file__).resolve().parent.parent / "sync")
if SYNC_TESTS not in sys.path:
    sys.path.append(SYNC_TESTS)

from sync_fakes import NOW, Clock, MemorySide  # noqa: E402

from calendars.conftest import radicale  # noqa: E402, F401 - a fixture, used by name
from calsync.cleanup import InMemoryTrash  # noqa: E402
from calsync.sync import Capabilities, InMemoryStore  # noqa: E402
from e2e.conftest import account, suitecrm, worker_env  # noqa: E402, F401 - fixtures


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def calendar(clock: Clock) -> MemorySide:
    return MemorySide("calendar", Capabilities(), clock)


@pytest.fixture
def crm(clock: Clock) -> MemorySide:
    # Like the CRM connectors: no native series, no invitation emails.
    return MemorySide("crm", Capabilities(recurrence=False, notify=False), clock)


@pytest.fixture
def store() -> InMemoryStore:
    return InMemoryStore()


@pytest.fixture
def trash() -> InMemoryTrash:
    return InMemoryTrash()
