"""What a run did, in a shape the UI and the database can keep."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from calsync.sync.model import Side


@dataclass
class SideCounts:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    linked: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "created": self.created,
            "updated": self.updated,
            "deleted": self.deleted,
            "linked": self.linked,
        }


@dataclass
class RunResult:
    started_at: datetime | None = None
    finished_at: datetime | None = None
    calendar: SideCounts = field(default_factory=SideCounts)
    crm: SideCounts = field(default_factory=SideCounts)
    skipped: Counter[str] = field(default_factory=Counter)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    notes: Counter[str] = field(default_factory=Counter)
    full_listing: dict[str, bool] = field(default_factory=dict)
    aborted: str | None = None  # the sentence the run stopped with, if it stopped

    def side(self, side: Side) -> SideCounts:
        return self.calendar if side == "calendar" else self.crm

    @property
    def ok(self) -> bool:
        return self.aborted is None and not self.errors

    @property
    def writes(self) -> int:
        return sum(c.created + c.updated + c.deleted for c in (self.calendar, self.crm))

    def to_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "calendar": self.calendar.to_dict(),
            "crm": self.crm.to_dict(),
            "skipped": dict(sorted(self.skipped.items())),
            "conflicts": list(self.conflicts),
            "errors": list(self.errors),
            "notes": dict(sorted(self.notes.items())),
            "full_listing": dict(self.full_listing),
            "aborted": self.aborted,
        }
