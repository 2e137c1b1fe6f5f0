"""Fixtures for the security tests: a real HTTP server on 127.0.0.1, browsers for the API."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

# The API tests' browsers and fixtures (tests/api is not a package: put it on the path).
sys.path.insert(0, str(Path(__file__).parents[1] / "api"))
from api_helpers import admin, app, browser, member, outsider

__all__ = ["admin", "app", "browser", "member", "outsider", "serve"]


@dataclass
class LocalServer:
    """A real HTTP server on 127.0.0.1, recording the requests it received."""

    url: str
    port: int
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[Request], Response]], LocalServer]]:
    """Start a werkzeug server answering with ``handler``; stopped after the test."""
    servers = []

    def start(handler: Callable[[Request], Response]) -> LocalServer:
        record: list[str] = []

        @Request.application
        def app(request: Request) -> Response:
            record.append(request.full_path)
            return handler(request)

        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        servers.append((server, thread))
        return LocalServer(f"http://127.0.0.1:{server.port}", server.port, record)

    yield start
    for server, thread in servers:
        server.shutdown()
        thread.join(5)
