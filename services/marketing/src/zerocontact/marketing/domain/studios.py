"""Per-session statistics of a live studio, folded from its viewer events in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class SessionStats:
    """What a session's viewer events add up to."""

    viewers: set[str] = field(default_factory=set)  # distinct parties who joined
    present: dict[str, datetime] = field(default_factory=dict)  # party -> joined at
    concurrent_peak: int = 0
    watch_seconds: float = 0.0
    comments: int = 0
    card_clicks: int = 0
    clickers: set[str] = field(default_factory=set)
    conversions: int = 0

    def apply(self, kind: str, party_id: str, at: datetime) -> None:
        """Fold one event (kinds: joined, left, commented, card_clicked, converted)."""
        if kind == "joined":
            self.viewers.add(party_id)
            self.present.setdefault(party_id, at)
            self.concurrent_peak = max(self.concurrent_peak, len(self.present))
        elif kind == "left":
            joined = self.present.pop(party_id, None)
            if joined is not None:
                self.watch_seconds += max(0.0, (at - joined).total_seconds())
        elif kind == "commented":
            self.comments += 1
        elif kind == "card_clicked":
            self.card_clicks += 1
            self.clickers.add(party_id)
        elif kind == "converted":
            self.conversions += 1

    def summary(self) -> dict[str, float | int]:
        """The session's statistics (average watch time over viewers who left)."""
        unique = len(self.viewers)
        return {
            "unique_viewers": unique,
            "concurrent_now": len(self.present),
            "concurrent_peak": self.concurrent_peak,
            "comments": self.comments,
            "card_clicks": self.card_clicks,
            "click_through_rate": round(len(self.clickers) / unique, 4) if unique else 0.0,
            "conversions": self.conversions,
            "watch_seconds_total": round(self.watch_seconds, 3),
        }
