"""Exceptions of the sync engine. Every message is a sentence a user can read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from calsync.sync.result import RunResult


class SyncError(Exception):
    """Base class of every error the engine raises on purpose."""


class CursorExpired(SyncError):
    """Raised by an adapter when the saved cursor is no longer accepted.

    The engine answers with a full listing; the user never sees this one.
    """


class SyncAborted(SyncError):
    """The run stopped before writing anything that could do harm.

    `result` holds what the run had gathered so far, so the caller can record it.
    """

    def __init__(self, message: str, result: RunResult | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.result = result


class DirectionNotSupported(SyncAborted, ValueError):
    """Two way sync was asked for a calendar that cannot do it."""


class ListingFailed(SyncAborted):
    """A side could not list its changes; nothing was written."""

    def __init__(
        self, message: str, side: str, cause: BaseException | None = None, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.side = side
        self.cause = cause


class StorageEmpty(SyncAborted):
    """A full listing lost every linked item: an emptied or different calendar/CRM.

    Propagating that as deletes would wipe the other side, so the run stops.
    """

    def __init__(self, message: str, side: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.side = side


class NeedsConfirmation(SyncAborted):
    """The plan is over a safety cap (bulk deletes, bulk invitations); nothing was written.

    `deletes` counts the planned deletions per side, `invitations` the events whose
    invitees would be e-mailed. Run again with `confirmed=True` once the user agrees.
    """

    def __init__(self, message: str, deletes: dict[str, int], invitations: int, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.deletes = deletes
        self.invitations = invitations
