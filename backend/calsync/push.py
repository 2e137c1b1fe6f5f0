"""Push: keeping each calendar's change-notification channel alive, and turning the
notifications it brings into syncs.

A calendar connection with automatic sync on (and connected) has one `PushChannel`: a
Microsoft Graph subscription to the mailbox's events, or a Google `events.watch` channel.
`renew_push_channels` (the scheduler, every 5 minutes) converges every connection on that:
it opens a channel where none exists, renews one that expires within a quarter of its
lifetime (so a failing renewal is retried for hours before anything is lost), opens a new
one when the provider says the old one is gone, and removes the channels of connections
that no longer want them (unsubscribing is best effort: a forgotten subscription only
expires).

A notification (`handle_graph_notification`, `handle_google_notification`, called by
`calsync.api.webhooks`) is matched to its channel by id and authenticated by the channel's
secret (Graph's `clientState`, Google's channel token), compared in constant time; anything
else is counted and ignored. A genuine one queues a "push" sync for the channel's user;
`calsync.enqueue` debounces those (several notifications within seconds give one sync).
Graph's lifecycle notifications are handled too: `reauthorizationRequired` renews the
subscription, `subscriptionRemoved` opens a new one and syncs (changes may have been
missed), `missed` syncs. Work that talks to the provider never runs in the webhook request,
which must answer within seconds: it is queued as `refresh_channel` on the maintenance queue.

Each provider is one `PushProvider` entry in `PROVIDERS`, keyed by the connection's
provider; a calendar provider without push (CalDAV) has no entry and relies on the
scheduled automatic sync alone.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, NamedTuple

import requests
from redis.exceptions import LockError
from rq import Queue
from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError

from calsync import enqueue
from calsync.connections import open_calendar
from calsync.db import transaction
from calsync.models import Connection, PushChannel, utcnow
from calsync.provider_errors import ProviderError
from calsync.runtime import QUEUE_MAINTENANCE, Runtime

log = logging.getLogger(__name__)

GRAPH_WEBHOOK_PATH = "/webhooks/graph"
GOOGLE_WEBHOOK_PATH = "/webhooks/google"
# https://learn.microsoft.com/en-us/graph/api/resources/subscription ("Subscription
# lifetime"): Outlook events, 10,080 minutes (under 7 days).
GRAPH_MAX_MINUTES = 10_080
# https://developers.google.com/calendar/api/guides/push ("Renewing notification
# channels"): Google sets the expiration itself, a week at most in practice; a longer wish
# is simply shortened, and the returned expiration is what is stored.
GOOGLE_MAX_MINUTES = 10_080
# Renewal starts this far ahead of expiry (a quarter of the lifetime), but never less than
# three scheduler rounds, so one failed round never lets a channel lapse.
MIN_RENEWAL_MARGIN = timedelta(minutes=15)
# Long enough for the slowest provider round trip; a crashed holder's lock expires.
LOCK_SECONDS = 300
# A round stops starting work after this long, before the next round (5 minutes) and the
# job's timeout; what is left waits for the next round, most urgent first.
ROUND_BUDGET_SECONDS = 240
# Graph's clientState is at most 128 characters; Google's token 256. 32 bytes is 43.
CLIENT_STATE_BYTES = 32

Action = Literal["create", "renew", "recreate", "remove"]
TRANSIENT = (requests.ConnectionError, requests.Timeout)


class ChannelInfo(NamedTuple):
    """What the provider says about a channel it opened or renewed."""

    channel_id: str
    resource_id: str
    expires_at: datetime


class ChannelRef(NamedTuple):
    channel_id: str
    resource_id: str


@dataclass(frozen=True)
class PushProvider:
    """How one provider's channels are opened, renewed and closed, given its adapter.

    `renew` returns None when the provider no longer knows the channel (open a new one),
    and may return a different channel id (Google channels cannot be extended).
    """

    name: str
    webhook_path: str
    max_minutes: int
    subscribe: Callable[[Any, str, str, int], ChannelInfo]
    renew: Callable[[Any, ChannelRef, str, str, int], ChannelInfo | None]
    unsubscribe: Callable[[Any, ChannelRef], None]


# -- Microsoft Graph -----------------------------------------------------------------------


def _graph_subscribe(adapter: Any, url: str, client_state: str, minutes: int) -> ChannelInfo:
    # Lifecycle notifications go to the same URL: their `lifecycleEvent` tells them apart,
    # and the one route answers Graph's validation for both.
    sub = adapter.subscribe(url, client_state, minutes, lifecycle_url=url)
    return ChannelInfo(sub.id, sub.resource, sub.expires_at)


def _graph_renew(
    adapter: Any, channel: ChannelRef, url: str, client_state: str, minutes: int
) -> ChannelInfo | None:
    sub = adapter.renew(channel.channel_id, minutes)
    return None if sub is None else ChannelInfo(sub.id, sub.resource, sub.expires_at)


def _graph_unsubscribe(adapter: Any, channel: ChannelRef) -> None:
    adapter.unsubscribe(channel.channel_id)


GRAPH = PushProvider(
    name="graph",
    webhook_path=GRAPH_WEBHOOK_PATH,
    max_minutes=GRAPH_MAX_MINUTES,
    subscribe=_graph_subscribe,
    renew=_graph_renew,
    unsubscribe=_graph_unsubscribe,
)


# -- Google Calendar -----------------------------------------------------------------------


def _google_subscribe(adapter: Any, url: str, token: str, minutes: int) -> ChannelInfo:
    channel = adapter.watch(url, token, ttl_seconds=minutes * 60)
    return ChannelInfo(channel.id, channel.resource_id, channel.expiration)


def _google_renew(
    adapter: Any, channel: ChannelRef, url: str, token: str, minutes: int
) -> ChannelInfo | None:
    # A Google channel cannot be extended: the new one is opened before the old one is
    # stopped, so no change falls between them (a change seen by both is debounced).
    fresh = _google_subscribe(adapter, url, token, minutes)
    _best_effort(lambda: _google_unsubscribe(adapter, channel), "stop the old Google channel")
    return fresh


def _google_unsubscribe(adapter: Any, channel: ChannelRef) -> None:
    adapter.stop_channel(channel.channel_id, channel.resource_id)


GOOGLE = PushProvider(
    name="google",
    webhook_path=GOOGLE_WEBHOOK_PATH,
    max_minutes=GOOGLE_MAX_MINUTES,
    subscribe=_google_subscribe,
    renew=_google_renew,
    unsubscribe=_google_unsubscribe,
)

# Connection.provider -> how its channels work. Providers not listed have no push.
# "sandbox-outlook" is the development sandbox's Graph emulator (`calsync sandbox`), which
# validates and notifies BASE_URL like Graph, over plain http (http://localhost:3000) where
# Graph wants https. Production never opens such a connection (`open_calendar` refuses it),
# so no channel can be made for it there.
PROVIDERS: dict[str, PushProvider] = {
    "outlook": GRAPH,
    "office365": GRAPH,
    "google": GOOGLE,
    "sandbox-outlook": GRAPH,
}


# -- keeping channels alive ----------------------------------------------------------------


def lifetime_minutes(rt: Runtime, provider: PushProvider) -> int:
    """The lifetime to ask for: the setting, capped at what the provider allows."""
    return min(rt.config.push_lifetime_minutes, provider.max_minutes)


def renewal_margin(minutes: int) -> timedelta:
    """How long before expiry a channel is renewed."""
    return max(timedelta(minutes=minutes) / 4, MIN_RENEWAL_MARGIN)


def wants_push(connection: Connection) -> bool:
    """Whether this connection should have a channel: a pushing calendar, syncing on its own."""
    return (
        connection.kind == "calendar"
        and connection.provider in PROVIDERS
        and connection.auto_sync_enabled
        and connection.status == "connected"
    )


@dataclass
class RenewalReport:
    """What one round did, by outcome; returned by the job so RQ keeps it."""

    created: int = 0
    renewed: int = 0
    recreated: int = 0
    removed: int = 0
    failed: int = 0
    busy: int = 0  # another process was working on that connection's channel
    unchanged: int = 0  # nothing left to do once the lock was held
    deferred: int = 0  # left for the next round: this one ran out of time

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def renew_push_channels(
    rt: Runtime, *, now: datetime | None = None, budget_seconds: float = ROUND_BUDGET_SECONDS
) -> RenewalReport:
    """Converge every calendar connection's channel: open, renew, reopen or remove it."""
    now = now or utcnow()
    deadline = time.monotonic() + budget_seconds
    report = RenewalReport()
    wanted_provider = Connection.provider.in_(list(PROVIDERS))
    with transaction(rt.sessions) as session:
        rows = session.execute(
            select(Connection, PushChannel)
            .outerjoin(PushChannel, PushChannel.connection_id == Connection.id)
            .where(
                Connection.kind == "calendar",
                or_(
                    PushChannel.id.is_not(None),
                    and_(
                        wanted_provider,
                        Connection.auto_sync_enabled,
                        Connection.status == "connected",
                    ),
                ),
            )
        ).all()
        # The channel closest to lapsing first; new and removed channels can wait a round.
        due = sorted(
            (channel.expires_at if channel else now + timedelta(days=365), connection.id)
            for connection, channel in rows
            if _action(rt, connection, channel, now, force=None) is not None
        )
    for _expiry, connection_id in due:
        if time.monotonic() > deadline:
            report.deferred += 1
            continue
        outcome = _refresh(rt, connection_id, now, force=None, wait=0)
        setattr(report, outcome, getattr(report, outcome) + 1)
    if due:
        log.info("push channels: %s", report.as_dict())
    return report


def refresh_channel(connection_id: int, action: str) -> str:
    """Job (maintenance queue): renew ("renew") or reopen ("recreate") a connection's
    channel now, because Graph asked for it in a lifecycle notification."""
    from calsync import runtime

    if action not in ("renew", "recreate"):
        raise ValueError(f"unknown channel action {action!r}")
    rt = runtime.current()
    # Waits for a scheduler round holding the lock: Graph's request must not be dropped.
    return _refresh(rt, connection_id, utcnow(), force=action, wait=60)  # type: ignore[arg-type]


def remove_channel(rt: Runtime, connection_id: int) -> bool:
    """Close and forget a connection's channel now (best effort with the provider).

    For the code that deletes a connection: its row's cascade would forget the channel
    too, but only while the credentials still exist can the provider be told to stop.
    """
    return _refresh(rt, connection_id, utcnow(), force="remove", wait=30) == "removed"


def _action(
    rt: Runtime,
    connection: Connection,
    channel: PushChannel | None,
    now: datetime,
    force: Action | None,
) -> Action | None:
    if not wants_push(connection) or force == "remove":
        return "remove" if channel is not None else None
    if channel is None:
        return "create"
    if force is not None:
        return force
    provider = PROVIDERS[connection.provider]
    if channel.provider != provider.name:
        return "recreate"  # the connection moved to another provider
    margin = renewal_margin(lifetime_minutes(rt, provider))
    return "renew" if channel.expires_at - now <= margin else None


def _refresh(
    rt: Runtime, connection_id: int, now: datetime, *, force: Action | None, wait: float
) -> str:
    """Bring one connection's channel in line, under a lock shared by every process."""
    lock = rt.redis.lock(f"calsync:push:{connection_id}", timeout=LOCK_SECONDS)
    if not lock.acquire(blocking=wait > 0, blocking_timeout=wait or None):
        return "busy"
    try:
        return _refresh_locked(rt, connection_id, now, force)
    finally:
        try:
            lock.release()
        except LockError:  # expired meanwhile: nothing left to release
            log.warning("push lock for connection %s had expired", connection_id)


def _refresh_locked(rt: Runtime, connection_id: int, now: datetime, force: Action | None) -> str:
    # Decided again under the lock: the connection or channel may have changed meanwhile.
    with transaction(rt.sessions) as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            return "removed"  # deleted: its channel row went with it (cascade)
        channel = session.scalar(
            select(PushChannel).where(PushChannel.connection_id == connection_id)
        )
        action = _action(rt, connection, channel, now, force)
        if action is None:
            return "unchanged"  # another process just did it
        pusher = PROVIDERS.get(connection.provider)
        # Only the same provider, with this connection's credentials, can close the channel;
        # one of another provider (the user switched calendars) is left to expire.
        closable = channel is not None and pusher is not None and pusher.name == channel.provider
        ref = ChannelRef(channel.channel_id, channel.resource_id) if closable else None
        old_state = channel.client_state if closable else None
        user_id = connection.user_id
    if action == "remove" and ref is None:
        _delete_channel(rt, connection_id)
        return "removed"
    try:
        opened = open_calendar(connection, rt.config)
    except ProviderError as exc:
        log.warning("push: cannot open the calendar of connection %s: %s", connection_id, exc)
        if action == "remove":
            _delete_channel(rt, connection_id)
            return "removed"
        return "failed"
    adapter = opened.adapter
    try:
        return _apply(rt, connection, adapter, action, ref, old_state, user_id)
    except (ProviderError, *TRANSIENT) as exc:
        # Retried by the next round; the stored channel (if any) still works until it expires.
        log.warning("push: %s for connection %s failed: %s", action, connection_id, exc)
        return "failed"
    finally:
        _save_credentials(rt, connection_id, opened.rotated())
        close = getattr(adapter, "close", None)
        if close is not None:
            close()


def _apply(
    rt: Runtime,
    connection: Connection,
    adapter: Any,
    action: Action,
    ref: ChannelRef | None,
    old_state: str | None,
    user_id: int,
) -> str:
    """`ref` is the current channel when this adapter's provider can close it, else None."""
    if action == "remove":
        if ref is not None:
            provider = PROVIDERS[connection.provider]
            _best_effort(lambda: provider.unsubscribe(adapter, ref), "unsubscribe")
        _delete_channel(rt, connection.id)
        return "removed"

    provider = PROVIDERS[connection.provider]
    minutes = lifetime_minutes(rt, provider)
    url = rt.config.base_url + provider.webhook_path
    if action == "renew" and ref is not None and old_state is not None:
        info = provider.renew(adapter, ref, url, old_state, minutes)
        if info is not None:
            _store_channel(rt, connection.id, provider, info, old_state)
            return "renewed"
        action = "recreate"  # the provider forgot it: open a new one below

    client_state = secrets.token_urlsafe(CLIENT_STATE_BYTES)
    info = provider.subscribe(adapter, url, client_state, minutes)
    if ref is not None:
        _best_effort(lambda: provider.unsubscribe(adapter, ref), "unsubscribe the old channel")
    try:
        _store_channel(rt, connection.id, provider, info, client_state)
    except IntegrityError:
        # Only a process ignoring the lock could get here; do not leave a stray channel.
        _best_effort(
            lambda: provider.unsubscribe(adapter, ChannelRef(info.channel_id, info.resource_id)),
            "unsubscribe a duplicate channel",
        )
        raise
    if action == "recreate":
        # Without a channel, changes went unnoticed: a sync picks them up.
        enqueue.enqueue_sync(rt, user_id, "push")
        return "recreated"
    return "created"


def _store_channel(
    rt: Runtime, connection_id: int, provider: PushProvider, info: ChannelInfo, client_state: str
) -> None:
    with transaction(rt.sessions) as session:
        channel = session.scalar(
            select(PushChannel).where(PushChannel.connection_id == connection_id)
        )
        if channel is None:
            channel = PushChannel(connection_id=connection_id)
            session.add(channel)
        channel.provider = provider.name
        channel.channel_id = info.channel_id
        channel.resource_id = info.resource_id
        channel.client_state = client_state
        channel.expires_at = info.expires_at


def _delete_channel(rt: Runtime, connection_id: int) -> None:
    with transaction(rt.sessions) as session:
        channel = session.scalar(
            select(PushChannel).where(PushChannel.connection_id == connection_id)
        )
        if channel is not None:
            session.delete(channel)


def _save_credentials(rt: Runtime, connection_id: int, blob: Mapping[str, Any] | None) -> None:
    # Providers rotate tokens as they are used; only the newest are valid afterwards.
    if blob is None:
        return
    with transaction(rt.sessions) as session:
        connection = session.get(Connection, connection_id)
        if connection is not None:
            connection.secret = dict(blob)


def _best_effort(call: Callable[[], None], what: str) -> None:
    try:
        call()
    except (ProviderError, *TRANSIENT) as exc:
        # The channel expires on its own; its notifications are ignored meanwhile.
        log.info("push: could not %s (%s); it will expire by itself", what, exc)


# -- notifications -------------------------------------------------------------------------


@dataclass
class Delivery:
    """What one webhook call led to (for logs and tests; never shown to the caller)."""

    synced_users: list[int] = field(default_factory=list)
    refreshes: list[tuple[int, str]] = field(default_factory=list)
    ignored: int = 0  # unknown channel, wrong secret, or a connection that stopped syncing


def _live_channels(
    rt: Runtime, provider: str, channel_ids: Iterable[str]
) -> dict[str, tuple[str, int, int]]:
    """channel id -> (secret, user id, connection id) for channels still wanted."""
    ids = list(dict.fromkeys(channel_ids))
    if not ids:
        return {}
    with transaction(rt.sessions) as session:
        rows = session.execute(
            select(PushChannel, Connection)
            .join(Connection, Connection.id == PushChannel.connection_id)
            .where(PushChannel.provider == provider, PushChannel.channel_id.in_(ids))
        ).all()
        return {
            channel.channel_id: (str(channel.client_state), connection.user_id, connection.id)
            for channel, connection in rows
            if wants_push(connection)
        }


def handle_graph_notification(rt: Runtime, body: Any) -> Delivery:
    """A Graph change or lifecycle notification POST: queue syncs and channel refreshes."""
    from calsync.calendars.graph import parse_notification

    delivery = Delivery()
    items = body.get("value") if isinstance(body, Mapping) else None
    if not isinstance(items, list):
        delivery.ignored += 1
        return delivery
    by_channel: dict[str, list[Any]] = {}
    for item in items:
        sub_id = item.get("subscriptionId") if isinstance(item, Mapping) else None
        if isinstance(sub_id, str):
            by_channel.setdefault(sub_id, []).append(item)
        else:
            delivery.ignored += 1
    known = _live_channels(rt, GRAPH.name, by_channel)
    users: dict[int, None] = {}
    for sub_id, entries in by_channel.items():
        if sub_id not in known:
            delivery.ignored += len(entries)
            continue
        secret, user_id, connection_id = known[sub_id]
        # parse_notification compares each entry's clientState in constant time.
        batch = parse_notification({"value": entries}, secret)
        delivery.ignored += batch.rejected
        if batch.to_sync:
            users[user_id] = None
        if batch.to_recreate:
            delivery.refreshes.append((connection_id, "recreate"))
        elif batch.to_renew:
            delivery.refreshes.append((connection_id, "renew"))
    _dispatch(rt, delivery, users)
    return delivery


def handle_google_notification(rt: Runtime, headers: Mapping[str, str]) -> Delivery:
    """A Google push message (its headers are the whole message): queue a sync."""
    from calsync.calendars.google import parse_notification

    delivery = Delivery()
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    channel_id = lower.get("x-goog-channel-id", "")
    known = _live_channels(rt, GOOGLE.name, [channel_id] if channel_id else [])
    if channel_id not in known:
        delivery.ignored += 1
        return delivery
    secret, user_id, _connection_id = known[channel_id]
    message = parse_notification(headers, secret)
    if message is None:
        delivery.ignored += 1
        return delivery
    users: dict[int, None] = {}
    if message.needs_sync:
        users[user_id] = None
    # "sync" is the handshake a new channel starts with: nothing changed.
    _dispatch(rt, delivery, users)
    return delivery


def _dispatch(rt: Runtime, delivery: Delivery, users: Mapping[int, None]) -> None:
    for user_id in users:
        # Debounced and coalesced by enqueue: a burst of notifications gives one sync.
        enqueue.enqueue_sync(rt, user_id, "push")
        delivery.synced_users.append(user_id)
    if delivery.refreshes:
        queue = Queue(QUEUE_MAINTENANCE, connection=rt.redis)
        for connection_id, action in delivery.refreshes:
            queue.enqueue(
                refresh_channel,
                connection_id,
                action,
                job_timeout=LOCK_SECONDS,
                description=f"{action} push channel of connection {connection_id}",
            )
    if delivery.ignored:
        log.warning("push: ignored %d notification(s) not from a live channel", delivery.ignored)
