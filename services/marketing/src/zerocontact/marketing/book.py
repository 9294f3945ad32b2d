"""In-memory view of what the consumers evaluate per event: approved triggered campaigns and
segment rules. Reloaded every ``cache_seconds`` (and at once after a change in this process),
so the per-event path reads no campaign or segment document."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from zerocontact.marketing.domain.campaigns import Campaign
from zerocontact.marketing.domain.segments import RULE, Rule
from zerocontact.marketing.domain.triggers import TRIGGER, Trigger
from zerocontact.marketing.repository import Repository


@dataclass
class Book:
    """Approved campaigns with triggers and active segment rules."""

    repo: Repository
    cache_seconds: float
    triggered: list[tuple[Campaign, Trigger]] = field(default_factory=list)
    rules: dict[str, Rule] = field(default_factory=dict)
    _loaded_at: float = -1e9
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def invalidate(self) -> None:
        """Reload at the next use."""
        self._loaded_at = -1e9

    async def current(self) -> Book:
        """This book, reloaded if older than ``cache_seconds``."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._loaded_at < self.cache_seconds:
            return self
        async with self._lock:
            if loop.time() - self._loaded_at >= self.cache_seconds:
                await self._load()
                self._loaded_at = loop.time()
        return self

    async def _load(self) -> None:
        # Small collections; a scan is fine here (never per event).
        triggered: list[tuple[Campaign, Trigger]] = []
        async for campaign, trigger in self.repo.triggered_campaigns():
            triggered.append((campaign, TRIGGER.validate_python(trigger)))
        rules: dict[str, Rule] = {}
        async for segment_id, rule in self.repo.segment_rules():
            rules[segment_id] = RULE.validate_python(rule)
        self.triggered, self.rules = triggered, rules

    def campaigns_for(self, kind: str) -> list[tuple[Campaign, Any]]:
        """Approved campaigns whose trigger is of ``kind``."""
        return [(c, t) for c, t in self.triggered if t.kind == kind]
