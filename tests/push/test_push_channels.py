"""Keeping a Graph mailbox's subscription alive: created, renewed, recreated, removed."""

from __future__ import annotations

from datetime import timedelta

from rq import Queue
from sqlalchemy import text

from calsync import push
from calsync.models import utcnow
from calsync.runtime import QUEUE_SYNC

from .conftest import run_maintenance_jobs

LIFETIME = timedelta(minutes=4230)  # CALSYNC_PUSH_LIFETIME_MINUTES's default


def test_the_first_renewal_round_subscribes_the_mailbox_to_the_webhook(
    rt, mailbox, webhooks
) -> None:  # type: ignore[no-untyped-def]
    report = push.renew_push_channels(rt)

    assert report.created == 1
    [sub] = mailbox.subscriptions()
    channel = mailbox.channel(rt)
    assert channel is not None and channel.channel_id == sub.id
    assert sub.notification_url == webhooks and sub.lifecycle_url == webhooks
    assert sub.client_state == channel.client_state
    assert abs(channel.expires_at - (utcnow() + LIFETIME)) < timedelta(minutes=2)


def test_a_channel_far_from_expiry_is_left_alone(rt, mailbox) -> None:  # type: ignore[no-untyped-def]
    push.renew_push_channels(rt)
    first = mailbox.channel(rt)

    report = push.renew_push_channels(rt)

    assert report.as_dict() == push.RenewalReport().as_dict()
    assert mailbox.channel(rt).expires_at == first.expires_at


def test_a_channel_near_expiry_is_renewed_with_the_same_subscription(
    rt, mailbox, time_passes
) -> None:  # type: ignore[no-untyped-def]
    push.renew_push_channels(rt)
    before = mailbox.channel(rt)
    now = time_passes(LIFETIME - timedelta(hours=2))  # inside the margin (a quarter)

    report = push.renew_push_channels(rt, now=now)

    after = mailbox.channel(rt)
    assert report.renewed == 1
    assert after.channel_id == before.channel_id
    assert after.expires_at > before.expires_at
    [sub] = mailbox.subscriptions()
    assert sub.expiration > before.expires_at


def test_a_renewal_graph_no_longer_knows_subscribes_again(rt, mailbox) -> None:  # type: ignore[no-untyped-def]
    push.renew_push_channels(rt)
    old = mailbox.channel(rt)
    mailbox.emu._subs.pop(old.channel_id)

    report = push.renew_push_channels(rt, now=utcnow() + LIFETIME - timedelta(hours=2))

    assert report.recreated == 1
    [sub] = mailbox.subscriptions()
    assert mailbox.channel(rt).channel_id == sub.id != old.channel_id
    # Changes made while no subscription existed are picked up by a sync.
    assert [r.trigger for r in mailbox.runs(rt)] == ["push"]


def test_a_subscription_graph_removed_is_recreated_and_a_sync_queued(rt, mailbox) -> None:  # type: ignore[no-untyped-def]
    push.renew_push_channels(rt)
    old = mailbox.channel(rt)

    status = mailbox.emu.fire_lifecycle(old.channel_id, "subscriptionRemoved")
    run_maintenance_jobs(rt)

    assert status == 202
    [sub] = mailbox.subscriptions()
    new = mailbox.channel(rt)
    assert new.channel_id == sub.id != old.channel_id
    assert new.client_state != old.client_state
    assert [r.trigger for r in mailbox.runs(rt)] == ["push"]


def test_reauthorization_required_renews_the_subscription_at_once(rt, mailbox, time_passes) -> None:  # type: ignore[no-untyped-def]
    push.renew_push_channels(rt)
    before = mailbox.channel(rt)
    time_passes(timedelta(hours=1))  # so that the renewed expiry is visibly later

    status = mailbox.emu.fire_lifecycle(before.channel_id, "reauthorizationRequired")
    run_maintenance_jobs(rt)

    assert status == 202
    after = mailbox.channel(rt)
    assert after.channel_id == before.channel_id
    assert after.expires_at > before.expires_at
    assert mailbox.runs(rt) == []


def test_a_missed_lifecycle_event_queues_a_sync(rt, mailbox) -> None:  # type: ignore[no-untyped-def]
    push.renew_push_channels(rt)

    mailbox.emu.fire_lifecycle(mailbox.channel(rt).channel_id, "missed")

    assert [r.trigger for r in mailbox.runs(rt)] == ["push"]


def test_turning_automatic_sync_off_removes_the_channel_and_the_subscription(rt, mailbox) -> None:  # type: ignore[no-untyped-def]
    push.renew_push_channels(rt)
    mailbox.update(rt, auto_sync_enabled=False)

    report = push.renew_push_channels(rt)

    assert report.removed == 1
    assert mailbox.channel(rt) is None
    assert mailbox.subscriptions() == []


def test_a_calendar_that_needs_reconnecting_loses_its_channel(rt, mailbox) -> None:  # type: ignore[no-untyped-def]
    push.renew_push_channels(rt)
    mailbox.update(rt, status="needs_reconnect")

    report = push.renew_push_channels(rt)

    assert report.removed == 1
    assert mailbox.channel(rt) is None


def test_a_caldav_calendar_gets_no_channel(rt, mailbox) -> None:  # type: ignore[no-untyped-def]
    mailbox.update(rt, provider="caldav")

    report = push.renew_push_channels(rt)

    assert report.as_dict() == push.RenewalReport().as_dict()
    assert mailbox.channel(rt) is None


def test_the_client_state_is_encrypted_at_rest(rt, mailbox) -> None:  # type: ignore[no-untyped-def]
    push.renew_push_channels(rt)
    secret = mailbox.channel(rt).client_state

    with rt.engine.connect() as connection:
        raw = connection.execute(text("SELECT client_state FROM push_channels")).scalar_one()

    assert secret not in raw


def test_a_notification_queues_one_debounced_sync_for_its_user(rt, mailbox) -> None:  # type: ignore[no-untyped-def]
    push.renew_push_channels(rt)
    event_id = mailbox.emu.put_event(
        mailbox.address,
        {
            "subject": "Call",
            "start": {"dateTime": "2030-01-01T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2030-01-01T11:00:00", "timeZone": "UTC"},
        },
    )

    for _ in range(3):
        mailbox.emu.fire_change(mailbox.address, event_id)
    mailbox.emu.wait_for_notifications()

    assert [r.trigger for r in mailbox.runs(rt)] == ["push"]
    sync = Queue(QUEUE_SYNC, connection=rt.redis)
    assert len(sync) == 0 and sync.scheduled_job_registry.count == 1
    assert [e["status"] for e in mailbox.emu.notification_log[-3:]] == [202, 202, 202]


def test_a_round_out_of_time_leaves_the_rest_for_the_next_round(rt, mailbox) -> None:  # type: ignore[no-untyped-def]
    report = push.renew_push_channels(rt, budget_seconds=-1)

    assert (report.deferred, report.created) == (1, 0)
    assert mailbox.channel(rt) is None


def test_a_calendar_switched_to_caldav_forgets_its_graph_channel(rt, mailbox) -> None:  # type: ignore[no-untyped-def]
    push.renew_push_channels(rt)
    mailbox.update(rt, provider="caldav", details={}, secret={"password": "x"})

    report = push.renew_push_channels(rt)

    assert report.removed == 1
    assert mailbox.channel(rt) is None
