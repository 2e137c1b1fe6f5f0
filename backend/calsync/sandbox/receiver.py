"""A webhook receiver for tests and the demo: answers the vendors' validation handshakes
and records every notification it gets.

Graph validates a notification URL by POSTing ``?validationToken=...`` and expecting the
token back as text/plain within 10 s
(https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks);
Google's push channels need no handshake but send X-Goog-* headers
(https://developers.google.com/calendar/api/guides/push).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from flask import Flask, Response, request
from requests.structures import CaseInsensitiveDict

from .server import EmulatorServer

__all__ = ["NotificationReceiver"]


class NotificationReceiver(EmulatorServer):
    """Local HTTP endpoint collecting notifications.

    Knobs: ``answer_validation`` (False simulates an endpoint that fails the handshake),
    ``validation_delay`` (seconds to wait before answering the handshake).
    """

    name = "receiver"
    api_prefixes = ("/hook",)

    def __init__(self, *, port: int = 0) -> None:
        self.answer_validation = True
        self.validation_delay = 0.0
        self.received: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        super().__init__(port=port)

    def hook_url(self, name: str = "graph") -> str:
        return f"{self.url}/hook/{name}"

    def register_routes(self, app: Flask) -> None:
        @app.post("/hook/<name>")
        def hook(name: str) -> Response:
            token = request.args.get("validationToken")
            if token is not None:
                time.sleep(self.validation_delay)
                if not self.answer_validation:
                    return Response("nope", status=500)
                return Response(token, status=200, content_type="text/plain; charset=utf-8")
            entry = {
                "hook": name,
                # Case-insensitive, as HTTP header names are (WSGI re-cases them).
                "headers": CaseInsensitiveDict(dict(request.headers.items())),
                "json": request.get_json(silent=True),
            }
            with self._cond:
                self.received.append(entry)
                self._cond.notify_all()
            return Response(status=202)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until at least ``count`` notifications arrived; return them all."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return list(self.received)
