from __future__ import annotations

import pytest
from sync_fakes import NOW, Clock, MemorySide

from calsync.sync import Capabilities, InMemoryStore


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def calendar(clock: Clock) -> MemorySide:
    return MemorySide("calendar", Capabilities(), clock)


@pytest.fixture
def crm(clock: Clock) -> MemorySide:
    return MemorySide("crm", Capabilities(), clock)


@pytest.fixture
def store() -> InMemoryStore:
    return InMemoryStore()
