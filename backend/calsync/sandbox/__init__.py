"""Local, faithful emulators of the vendors' calendar APIs, served over real HTTP.

Quick start::

    from calsync.sandbox import GraphEmulator, GoogleEmulator, seed_mailbox

    with GraphEmulator(seed=1) as graph:            # Microsoft Graph v1.0 + identity
        graph.add_mailbox("alice@contoso.com")
        seed_mailbox(graph, "alice@contoso.com", 10_000)
        token = graph.issue_token("alice@contoso.com")
        ...  # point the client at graph.url (e.g. f"{graph.url}/v1.0")
        graph.set_faults(rate_429=0.1, retry_after_seconds=2)
        graph.counter.snapshot(); graph.invitations.all()

    with GoogleEmulator(seed=1) as google:          # Google Calendar v3 + OAuth
        google.add_account("bob@example.com")
        ...  # base URL f"{google.url}/calendar/v3"

Admin endpoints on every emulator (for the demo): GET/PUT /_sandbox/config,
GET/DELETE /_sandbox/counters, GET/DELETE /_sandbox/invitations, POST /_sandbox/clock,
POST /_sandbox/seed, POST /_sandbox/token, POST /_sandbox/expire-access-tokens, and
POST /_sandbox/expire-delta-tokens (Graph) or /_sandbox/expire-sync-tokens (Google).
"""

from .google import GoogleEmulator
from .graph import GraphEmulator
from .receiver import NotificationReceiver
from .seed import seed_google_calendar, seed_graph_mailbox, seed_mailbox
from .server import EmulatorServer, FaultConfig, Invitation, LimitConfig

__all__ = [
    "EmulatorServer",
    "FaultConfig",
    "GoogleEmulator",
    "GraphEmulator",
    "Invitation",
    "LimitConfig",
    "NotificationReceiver",
    "seed_google_calendar",
    "seed_graph_mailbox",
    "seed_mailbox",
]
