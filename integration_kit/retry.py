"""What to do after a delivery attempt, and when to try again (docs/design.md §5)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from integration_kit.problems import TICKET_NOT_KNOWN

RETRYABLE_STATUSES = {408, 425, 429}


class Failure:
    """Why an attempt is retried. Only `unavailable` waits are cut short when the peer recovers."""

    unavailable = "unavailable"  # 5xx, timeout, connection error, 408, 425
    throttled = "throttled"  # 429: the peer asked us to slow down; its Retry-After stands
    not_known = "not_known"  # 404 ticket-not-known: the ticket has not reached the peer yet
    # An `unavailable` answer to one event while the peer answered others in the same round: the
    # failure is the event's own, so the peer's recovery does not cut its backoff short.
    failing = "failing"


@dataclass(frozen=True)
class Delivered:
    """The peer stored the event; `result` is its parsed answer."""

    result: Any


@dataclass(frozen=True)
class RetryLater:
    failure: str
    detail: str
    retry_after: float | None = None


@dataclass(frozen=True)
class GiveUp:
    """A permanent refusal: the event is parked as dead with the peer's problem detail."""

    detail: str


@dataclass(frozen=True)
class Dropped:
    """A permanent refusal that must not hold back later events of the stream (a Telegram user who
    blocked the bot): recorded as skipped, with the reason, and never retried."""

    detail: str


Outcome = Delivered | RetryLater | GiveUp | Dropped


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, a cap, and a maximum age after which an event is dead."""

    base_seconds: float = 1.0
    cap_seconds: float = 600.0
    max_age_seconds: float = 72 * 3600.0
    jitter: float = 0.2

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after the `attempts`-th failed attempt (1-based): base * 2^(n-1) plus
        up to `jitter` of it, never more than the cap."""
        exponent = min(max(attempts - 1, 0), 60)
        # Jitter spreads retries of many events so they do not hit a recovering peer together.
        # Near the cap the band moves down, [cap / (1 + jitter), cap], so it still spreads them
        # and the cap stays the longest wait.
        ceiling = min(self.cap_seconds, self.base_seconds * 2.0**exponent * (1 + self.jitter))
        return ceiling / (1 + self.jitter) * (1 + self.jitter * (rng or random).random())

    def next_attempt(
        self,
        *,
        now: datetime,
        attempts: int,
        retry_after: float | None,
        rng: random.Random | None = None,
    ) -> datetime:
        """When to try again: the peer's Retry-After if it gave one, else the backoff."""
        delay = self.delay(attempts, rng)
        if retry_after is not None and retry_after > 0:
            delay = min(retry_after, self.max_age_seconds)
        return now + timedelta(seconds=delay)

    def expired(self, *, now: datetime, created_at: datetime) -> bool:
        return (now - created_at).total_seconds() >= self.max_age_seconds


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # "-0000" dates come back naive; HTTP dates are in UTC
        moment = moment.replace(tzinfo=UTC)
    return max((moment - now).total_seconds(), 0.0)


def _problem(content: bytes) -> tuple[str, str]:
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return "", ""
    if not isinstance(body, dict):
        return "", ""
    problem_type = str(body.get("type", ""))
    if problem_type == "about:blank":  # RFC 9457: no type beyond the status itself
        problem_type = ""
    return problem_type, str(body.get("detail") or body.get("title") or "")


def classify_failure(
    status: int, content: bytes, headers: dict[str, str], *, now: datetime
) -> RetryLater | GiveUp:
    """Map a non-success HTTP answer to retry-later or give-up, per the delivery rules."""
    problem_type, detail = _problem(content)
    summary = (
        f"HTTP {status}"
        + (f" {problem_type}" if problem_type else "")
        + (f": {detail}" if detail else "")
    )
    retry_after = parse_retry_after(headers.get("retry-after"), now=now)
    if status == 404 and problem_type == TICKET_NOT_KNOWN:
        return RetryLater(Failure.not_known, summary)
    if status == 429:
        return RetryLater(Failure.throttled, summary, retry_after)
    if status >= 500 or status in RETRYABLE_STATUSES:
        return RetryLater(Failure.unavailable, summary, retry_after)
    return GiveUp(summary)
