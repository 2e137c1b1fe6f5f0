"""The webhooks answer Graph and Google as they require, and trust only a channel's secret."""

from __future__ import annotations

from datetime import timedelta

import requests

from calsync import push
from calsync.db import transaction
from calsync.models import PushChannel, utcnow

from .conftest import post_json


def notification(subscription_id: str, client_state: str) -> dict:
    return {
        "value": [
            {
                "subscriptionId": subscription_id,
                "clientState": client_state,
                "changeType": "updated",
                "resource": "Users/x/Events/y",
                "resourceData": {"id": "y"},
            }
        ]
    }


def test_the_validation_handshake_echoes_the_token_as_plain_text(webhooks) -> None:  # type: ignore[no-untyped-def]
    token = "Validation: Testing client application reachability for subscription Request-Id: 1"

    reply = requests.post(webhooks, params={"validationToken": token}, timeout=10)

    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    assert reply.text == token
    assert reply.elapsed < timedelta(seconds=10)


def test_a_notification_with_the_wrong_client_state_syncs_nobody(rt, mailbox, webhooks) -> None:  # type: ignore[no-untyped-def]
    push.renew_push_channels(rt)
    channel = mailbox.channel(rt)

    reply = post_json(webhooks, notification(channel.channel_id, "guessed"))

    assert reply.status_code == 202
    assert mailbox.runs(rt) == []


def test_a_notification_for_an_unknown_subscription_is_accepted_and_ignored(
    rt, mailbox, webhooks
) -> None:  # type: ignore[no-untyped-def]
    reply = post_json(webhooks, notification("not-ours", "whatever"))

    assert reply.status_code == 202
    assert mailbox.runs(rt) == []


def test_a_notification_that_is_not_json_is_accepted_and_ignored(webhooks) -> None:  # type: ignore[no-untyped-def]
    reply = requests.post(webhooks, data=b"{not json", timeout=10)

    assert reply.status_code == 202


def test_a_signed_in_session_is_not_a_webhook_credential(rt, mailbox, webhooks, app) -> None:  # type: ignore[no-untyped-def]
    push.renew_push_channels(rt)
    browser = app.test_client()
    browser.post("/api/auth/dev", json={"email": mailbox.address})

    reply = browser.post("/webhooks/graph", json=notification(mailbox.channel(rt).channel_id, ""))

    assert reply.status_code == 202
    assert mailbox.runs(rt) == []


def test_a_body_over_the_cap_is_refused(webhooks) -> None:  # type: ignore[no-untyped-def]
    from calsync.api.webhooks import MAX_BODY_BYTES

    reply = requests.post(
        webhooks,
        data=b"x" * (MAX_BODY_BYTES + 1),
        headers={"Content-Type": "application/json"},
        timeout=10,
    )

    assert reply.status_code == 413


def add_google_channel(rt, mailbox, token: str = "google-secret") -> str:  # type: ignore[no-untyped-def]
    mailbox.update(rt, provider="google")
    with transaction(rt.sessions) as session:
        session.add(
            PushChannel(
                connection_id=mailbox.connection_id,
                provider="google",
                channel_id="channel-1",
                resource_id="resource-1",
                client_state=token,
                expires_at=utcnow() + timedelta(days=1),
            )
        )
    return "channel-1"


def google_headers(channel_id: str, token: str, state: str) -> dict[str, str]:
    return {
        "X-Goog-Channel-ID": channel_id,
        "X-Goog-Channel-Token": token,
        "X-Goog-Resource-ID": "resource-1",
        "X-Goog-Resource-State": state,
        "X-Goog-Message-Number": "2",
    }


def test_a_google_message_with_the_channel_token_queues_a_sync(rt, mailbox, live_server) -> None:  # type: ignore[no-untyped-def]
    channel_id = add_google_channel(rt, mailbox)

    reply = requests.post(
        f"{live_server.url}/webhooks/google",
        headers=google_headers(channel_id, "google-secret", "exists"),
        timeout=10,
    )

    assert reply.status_code == 200
    assert [r.trigger for r in mailbox.runs(rt)] == ["push"]


def test_a_google_sync_handshake_changes_nothing(rt, mailbox, live_server) -> None:  # type: ignore[no-untyped-def]
    channel_id = add_google_channel(rt, mailbox)

    reply = requests.post(
        f"{live_server.url}/webhooks/google",
        headers=google_headers(channel_id, "google-secret", "sync"),
        timeout=10,
    )

    assert reply.status_code == 200
    assert mailbox.runs(rt) == []


def test_a_google_message_with_another_token_syncs_nobody(rt, mailbox, live_server) -> None:  # type: ignore[no-untyped-def]
    channel_id = add_google_channel(rt, mailbox)

    reply = requests.post(
        f"{live_server.url}/webhooks/google",
        headers=google_headers(channel_id, "guessed", "exists"),
        timeout=10,
    )

    assert reply.status_code == 200
    assert mailbox.runs(rt) == []


def test_a_flood_from_one_address_is_answered_429(app, webhooks) -> None:  # type: ignore[no-untyped-def]
    from calsync.api.webhooks import RATE_LIMIT_KEY

    app.config[RATE_LIMIT_KEY] = "2 per minute"

    replies = [post_json(webhooks, {"value": []}).status_code for _ in range(3)]

    assert replies == [202, 202, 429]
