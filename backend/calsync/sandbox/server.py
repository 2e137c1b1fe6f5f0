"""Common base for the local HTTP emulators of the vendors' calendar APIs.

Every emulator is a Flask app served over real HTTP on 127.0.0.1 (a free port) from a
background thread, so that clients exercise their real HTTP stack: timeouts, retries,
connection handling and header parsing are all on the path, not mocked away.

The base gives each emulator the same knobs (all settable from Python and, for the demo,
over ``/_sandbox/...``):

* fault injection, each a probability drawn from a seeded RNG so that a failing run can
  be replayed: 429 with Retry-After, 5xx, slow responses, dropped connections;
* per-mailbox concurrency and rate limits (off by default; Graph's documented Outlook
  limits are 4 concurrent requests and 10,000 requests per 10 minutes per mailbox:
  https://learn.microsoft.com/en-us/graph/throttling-limits#outlook-service-limits );
* a request counter per endpoint (method + route template);
* a log of the invitations the real service would have e-mailed;
* an adjustable clock, so token expiry can be tested without sleeping.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

__all__ = [
    "EmulatorServer",
    "FaultConfig",
    "Invitation",
    "InvitationLog",
    "LimitConfig",
    "RequestCounter",
]


@dataclasses.dataclass
class FaultConfig:
    """Probabilities (0..1) of injected faults on API routes (never on /_sandbox)."""

    rate_429: float = 0.0
    retry_after_seconds: int = 1
    rate_5xx: float = 0.0
    status_5xx: int = 503
    rate_slow: float = 0.0
    slow_seconds: float = 0.5
    rate_drop: float = 0.0


@dataclasses.dataclass
class LimitConfig:
    """Per-mailbox limits; disabled by default because most tests run many requests fast."""

    enabled: bool = False
    max_concurrent: int = 4
    max_requests: int = 10_000
    window_seconds: float = 600.0
    retry_after_seconds: int = 1


@dataclasses.dataclass(frozen=True)
class Invitation:
    """One e-mail the real service would have sent: to whom, about what and why."""

    mailbox: str
    recipient: str
    event_id: str
    reason: str  # "created" | "updated" | "cancelled"
    subject: str
    at: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class InvitationLog:
    """Thread-safe append-only log of invitations; tests read it instead of a mail server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Invitation] = []

    def add(self, item: Invitation) -> None:
        with self._lock:
            self._items.append(item)

    def all(self) -> list[Invitation]:
        with self._lock:
            return list(self._items)

    def for_event(self, event_id: str) -> list[Invitation]:
        return [i for i in self.all() if i.event_id == event_id]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class RequestCounter:
    """Counts requests per "METHOD /route/<template>" so benchmarks can assert call budgets."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    def hit(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def get(self, key: str) -> int:
        with self._lock:
            return self._counts[key]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


class _MailboxLimiter:
    """Concurrency slots and a sliding request window per mailbox."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: collections.Counter[str] = collections.Counter()
        self._recent: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )

    def acquire(self, mailbox: str, cfg: LimitConfig, now: float) -> str | None:
        """Take a slot; return the name of the limit hit instead, if any."""
        with self._lock:
            window = self._recent[mailbox]
            while window and window[0] <= now - cfg.window_seconds:
                window.popleft()
            if self._active[mailbox] >= cfg.max_concurrent:
                return "MailboxConcurrency"
            if len(window) >= cfg.max_requests:
                return "MailboxRequests"
            window.append(now)
            self._active[mailbox] += 1
            return None

    def release(self, mailbox: str) -> None:
        with self._lock:
            self._active[mailbox] -= 1
            if self._active[mailbox] <= 0:
                del self._active[mailbox]

    def reset(self) -> None:
        with self._lock:
            self._recent.clear()


def _self_signed_cert(host: str) -> tuple[str, str]:
    """Write a one-day self-signed certificate for ``host``/localhost; return (cert, key)."""
    import datetime as dt
    import ipaddress
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    # A name of its own: OpenSSL picks an issuer by name, so a CA bundle holding two
    # emulators' certificates under one name would verify one against the other's key.
    unique = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )[1:9]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"calsync sandbox {unique.hex()}")])
    alt: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        alt.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        alt.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tempfile.mkdtemp(prefix="calsync-sandbox-tls-")
    cert_path, key_path = f"{folder}/cert.pem", f"{folder}/key.pem"
    with open(cert_path, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as fh:
        fh.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


class _QuietHandler(WSGIRequestHandler):
    """Request handler without the per-request access log line (benchmarks do 10k+)."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class EmulatorServer:
    """Serves one emulator's Flask app on a free 127.0.0.1 port in a background thread.

    Subclasses register their routes in :meth:`register_routes`, say which paths are
    "API" (subject to faults and limits) in :attr:`api_prefixes`, render errors in the
    vendor's shape in :meth:`error_body`, and map a request to a mailbox in
    :meth:`mailbox_for_request`.
    """

    name = "emulator"
    api_prefixes: tuple[str, ...] = ("/",)
    # Envelope endpoints (e.g. Graph's $batch) whose sub-requests are limited one by one.
    limit_exempt_paths: tuple[str, ...] = ()

    def __init__(
        self, *, seed: int = 0, host: str = "127.0.0.1", port: int = 0, tls: bool = False
    ) -> None:
        self.host = host
        self.port = port
        # msal refuses non-https authorities, so the identity endpoints can be served over
        # TLS with a throwaway self-signed certificate; clients trust ``ca_file``.
        self.tls = tls
        self.ca_file: str | None = None
        self._tls_paths: tuple[str, str] | None = None
        self.faults = FaultConfig()
        self.limits = LimitConfig()
        self.counter = RequestCounter()
        self.invitations = InvitationLog()
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._clock_offset = 0.0
        self._frozen: float | None = None
        self._limiter = _MailboxLimiter()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._in_flight = 0
        self._idle = threading.Condition()
        self.app = Flask(f"calsync.sandbox.{self.name}")
        self.app.config["JSON_SORT_KEYS"] = False
        self.app.json.sort_keys = False  # type: ignore[attr-defined]
        self._install_hooks()
        self._register_admin_routes()
        self.register_routes(self.app)

    # -- lifecycle -------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{self.name} emulator is not started")
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self._server.server_port}"

    def start(self) -> EmulatorServer:
        if self._server is not None:
            return self
        ssl_context = None
        if self.tls:
            if self._tls_paths is None:
                self._tls_paths = _self_signed_cert(self.host)
                self.ca_file = self._tls_paths[0]
            ssl_context = self._tls_paths
        self._server = make_server(
            self.host,
            self.port,
            self._wsgi,
            threaded=True,
            request_handler=_QuietHandler,
            ssl_context=ssl_context,
        )
        # Handler threads must not keep the interpreter alive after tests finish.
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            # A short poll interval keeps stop() (and so every test teardown) fast.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-{self.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- knobs -----------------------------------------------------------------------

    def now(self) -> float:
        """Emulator time (epoch seconds); shifted by :meth:`advance_clock`, or pinned."""
        if self._frozen is not None:
            return self._frozen
        return time.time() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Move emulator time forward, e.g. to expire access tokens without sleeping."""
        if self._frozen is not None:
            self._frozen += seconds
        else:
            self._clock_offset += seconds

    def freeze_clock(self, at: float | None = None) -> float:
        """Pin emulator time (to the current time when `at` is None); returns it."""
        self._frozen = self.now() if at is None else at
        return self._frozen

    def unfreeze_clock(self) -> None:
        if self._frozen is not None:
            # Continue from the frozen instant, so time never runs backwards.
            self._clock_offset = self._frozen - time.time()
            self._frozen = None

    def set_faults(self, **kwargs: Any) -> None:
        """Set fault knobs, e.g. ``set_faults(rate_429=0.2, retry_after_seconds=2)``."""
        for key, value in kwargs.items():
            if not hasattr(self.faults, key):
                raise TypeError(f"unknown fault knob {key!r}")
            setattr(self.faults, key, value)

    def set_limits(self, **kwargs: Any) -> None:
        """Set mailbox limit knobs, e.g. ``set_limits(enabled=True, max_concurrent=4)``."""
        for key, value in kwargs.items():
            if not hasattr(self.limits, key):
                raise TypeError(f"unknown limit knob {key!r}")
            setattr(self.limits, key, value)
        self._limiter.reset()

    def reseed(self, seed: int) -> None:
        with self._rng_lock:
            self._rng.seed(seed)

    def reset_knobs(self) -> None:
        self.faults = FaultConfig()
        self.limits = LimitConfig()
        self._limiter.reset()

    def _roll(self, probability: float) -> bool:
        if probability <= 0:
            return False
        with self._rng_lock:
            return self._rng.random() < probability

    # -- hooks for subclasses ----------------------------------------------------------

    def register_routes(self, app: Flask) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def error_body(
        self, status: int, code: str, message: str, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {"error": {"code": code, "message": message}}

    def error(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Response:
        resp = jsonify(self.error_body(status, code, message, extra))
        resp.status_code = status
        for key, value in (headers or {}).items():
            resp.headers[key] = value
        return resp

    def throttle_response(self, reason: str, retry_after: int) -> Response:
        return self.error(429, "TooManyRequests", reason, headers={"Retry-After": str(retry_after)})

    def server_error_response(self, status: int) -> Response:
        return self.error(status, "ServiceUnavailable", "Injected sandbox server error.")

    def mailbox_for_request(self) -> str | None:
        return None

    # -- request pipeline --------------------------------------------------------------

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no request is being handled (a slow one the client gave up on may
        still be on its way to changing the data); whether that happened in time."""
        with self._idle:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with self._idle:
            self._in_flight += 1
        try:
            return self._handle(environ, start_response)
        finally:
            with self._idle:
                self._in_flight -= 1
                self._idle.notify_all()

    def _handle(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        result = self.app.wsgi_app(environ, start_response)
        if environ.get("calsync.sandbox.drop"):
            # Werkzeug's dev server exposes the client socket; shutting it down before any
            # byte is written makes the client see "remote end closed connection without
            # response", like a load balancer dropping the request.
            sock = environ.get("werkzeug.socket")
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            if hasattr(result, "close"):
                result.close()
            return []
        return result

    def _is_api(self, path: str) -> bool:
        return not path.startswith("/_sandbox") and path.startswith(self.api_prefixes)

    def _install_hooks(self) -> None:
        app = self.app

        @app.before_request
        def _pipeline() -> Response | None:
            rule = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
            # Requests replayed from inside a $batch are counted under their own route too.
            self.counter.hit(f"{request.method} {rule}")
            if not self._is_api(request.path):
                return None
            f = self.faults
            if self._roll(f.rate_drop):
                request.environ["calsync.sandbox.drop"] = True
                return Response(status=500)
            if self._roll(f.rate_429):
                return self.throttle_response("Injected sandbox throttling.", f.retry_after_seconds)
            if self._roll(f.rate_5xx):
                return self.server_error_response(f.status_5xx)
            if self.limits.enabled and request.path not in self.limit_exempt_paths:
                mailbox = self.mailbox_for_request()
                if mailbox is not None:
                    hit = self._limiter.acquire(mailbox, self.limits, self.now())
                    if hit is not None:
                        return self.throttle_response(
                            f"Application is over its {hit} limit.",
                            self.limits.retry_after_seconds,
                        )
                    request.environ["calsync.sandbox.slot"] = mailbox
            # Slowness comes last so a slow request holds its mailbox slot, as a slow
            # request to the real service does.
            if self._roll(f.rate_slow):
                time.sleep(f.slow_seconds)
            return None

        @app.teardown_request
        def _release(_exc: BaseException | None) -> None:
            # Stored on the environ, not on flask.g: $batch sub-requests share the app
            # context of the outer request and must not release its slot.
            mailbox = request.environ.pop("calsync.sandbox.slot", None)
            if mailbox is not None:
                self._limiter.release(mailbox)

        @app.errorhandler(HTTPException)
        def _http_error(exc: HTTPException) -> Response:
            status = exc.code or 500
            code = {404: "NotFound", 405: "MethodNotAllowed"}.get(status, "BadRequest")
            return self.error(status, code, exc.description or exc.name)

    def _register_admin_routes(self) -> None:
        app = self.app

        @app.get("/_sandbox/config")
        def _get_config() -> Response:
            return jsonify(
                faults=dataclasses.asdict(self.faults), limits=dataclasses.asdict(self.limits)
            )

        @app.put("/_sandbox/config")
        def _put_config() -> Response:
            body = request.get_json(force=True) or {}
            try:
                if "seed" in body:
                    self.reseed(int(body["seed"]))
                self.set_faults(**body.get("faults", {}))
                self.set_limits(**body.get("limits", {}))
            except TypeError as exc:
                return self.error(400, "BadRequest", str(exc))
            return _get_config()

        @app.get("/_sandbox/counters")
        def _get_counters() -> Response:
            return jsonify(self.counter.snapshot())

        @app.delete("/_sandbox/counters")
        def _reset_counters() -> Response:
            self.counter.reset()
            return Response(status=204)

        @app.get("/_sandbox/invitations")
        def _get_invitations() -> Response:
            return jsonify([i.as_dict() for i in self.invitations.all()])

        @app.delete("/_sandbox/invitations")
        def _clear_invitations() -> Response:
            self.invitations.clear()
            return Response(status=204)

        @app.post("/_sandbox/seed")
        def _seed() -> Response:
            from .seed import seed_mailbox

            body = request.get_json(force=True) or {}
            opts = {
                k: body[k]
                for k in ("seed", "days", "series_ratio", "all_day_ratio", "max_attendees")
                if k in body
            }
            try:
                ids = seed_mailbox(self, body["user"], int(body.get("count", 100)), **opts)
            except (KeyError, TypeError, ValueError) as exc:
                return self.error(400, "BadRequest", f"bad seed request: {exc}")
            return jsonify(created=len(ids))

        @app.post("/_sandbox/clock")
        def _advance_clock() -> Response:
            body = request.get_json(force=True) or {}
            self.advance_clock(float(body.get("advance_seconds", 0)))
            return jsonify(now=self.now())
