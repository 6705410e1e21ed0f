"""Time as a dependency, so retry schedules and leases can be tested without sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to; for tests.

    `tick_seconds` moves it a little on every reading, so that, as on a real clock, two changes
    made one after the other never carry the same timestamp.
    """

    def __init__(self, start: datetime | None = None, *, tick_seconds: float = 0.0) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._tick = timedelta(seconds=tick_seconds)

    def now(self) -> datetime:
        self._now += self._tick
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)

    def set(self, moment: datetime) -> None:
        self._now = moment
