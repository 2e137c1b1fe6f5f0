"""Fixtures of the development sandbox tests: the sandbox service, run in this process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from calsync.sandbox.demo import Sandbox, start_sandbox

# The API tests' browser (tests/api is not a package: put it on the path).
sys.path.insert(0, str(Path(__file__).parents[1] / "api"))


@pytest.fixture
def sandbox(env: dict[str, str]) -> Iterator[Sandbox]:
    """What `calsync sandbox` runs, in this process: instance/sandbox.json names this pid."""
    running = start_sandbox(Path(env["CALSYNC_INSTANCE_DIR"]))
    try:
        yield running
    finally:
        running.stop()
