"""Run both emulators for a demo: ``python -m calsync.sandbox [--graph-port 8801] ...``.

Prints the base URLs and ready-to-use access tokens, then serves until interrupted.
"""

from __future__ import annotations

import argparse
import threading

from .google import GoogleEmulator
from .graph import GraphEmulator
from .seed import seed_mailbox


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--graph-port", type=int, default=8801)
    parser.add_argument("--google-port", type=int, default=8802)
    parser.add_argument("--graph-user", default="alice@contoso.com")
    parser.add_argument("--google-user", default="bob@example.com")
    parser.add_argument("--events", type=int, default=200, help="events to seed per mailbox")
    parser.add_argument("--tls", action="store_true", help="serve Graph over https (msal)")
    args = parser.parse_args(argv)

    graph = GraphEmulator(port=args.graph_port, tls=args.tls)
    google = GoogleEmulator(port=args.google_port)
    graph.add_mailbox(args.graph_user)
    google.add_account(args.google_user)
    seed_mailbox(graph, args.graph_user, args.events)
    seed_mailbox(google, args.google_user, args.events)
    graph.start()
    google.start()
    graph_token = graph.issue_token(args.graph_user, 86_400)
    print(f"Graph  {graph.url}/v1.0   token: {graph_token}", flush=True)
    if graph.ca_file:
        print(f"       CA file: {graph.ca_file}")
    print(
        f"Google {google.url}/calendar/v3   token: {google.issue_token(args.google_user, 86_400)}"
    )
    print(
        "Knobs: PUT /_sandbox/config  counters: GET /_sandbox/counters  "
        "invitations: GET /_sandbox/invitations",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        graph.stop()
        google.stop()


if __name__ == "__main__":
    main()
