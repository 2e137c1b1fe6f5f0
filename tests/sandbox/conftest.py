"""Fixtures for the emulator fidelity and behaviour tests (tests/sandbox only)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from calsync.sandbox.graph import GraphEmulator
from calsync.sandbox.receiver import NotificationReceiver

ALICE = "alice@contoso.com"


@pytest.fixture
def graph() -> Iterator[GraphEmulator]:
    with GraphEmulator(seed=1234) as emu:
        emu.add_mailbox(ALICE, "Alice Example")
        yield emu


@pytest.fixture
def graph_headers(graph: GraphEmulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {graph.issue_token(ALICE)}"}


@pytest.fixture
def receiver() -> Iterator[NotificationReceiver]:
    with NotificationReceiver() as rec:
        yield rec
