"""Request rate limits per caller (a Telegram user, an operator, the peer's token), by `limits`.

Counters live in this process by default; with several API processes they live in Redis
(`<PREFIX>RATE_LIMIT_STORAGE_URL=redis://...`) so all of them share one budget per caller.

Strategy: fixed window (`limits`' FixedWindowRateLimiter). Each check is one counter increment
(one Lua call, so one Redis round trip) and one small key per caller and window, whatever the
limit. The moving window is exact but keeps one entry per request: at the integration API's
default (10,000 a second per token) that is a list of up to 10,000 timestamps per caller, walked
on every request. The fixed window's known flaw, up to twice the limit across a window boundary,
is harmless for limits that sit far above real traffic and exist to stop a runaway or abusive
caller. The window opens at a caller's first request, so `Retry-After` is exact: the seconds until
that window closes.

A storage that fails (Redis down, slow, refusing) fails open: the request is served unchecked,
one log line says so (then one a minute while it lasts, with a count), and metrics show it. After
a failure the storage is left alone for `RETRY_STORAGE_SECONDS`, so an outage costs each request
nothing rather than a connection attempt.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger(__name__)

# Scopes: whose budget a request counts against. The console's operators share OPERATOR_SCOPE
# with the operator API: one budget per operator, whichever way they come in.
INTEGRATION_SCOPE = "integration"  # key: a fingerprint of the peer's bearer token
USER_SCOPE = "user"  # key: the Telegram user id
OPERATOR_SCOPE = "operator"  # key: the operator id

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# A rate-limit check must never hold a request up for long: a Redis that does not answer within
# this is treated as down (fail open).
STORAGE_TIMEOUT_SECONDS = 0.5
RETRY_STORAGE_SECONDS = 1.0
OUTAGE_LOG_EVERY_SECONDS = 60.0


def parse_limits(text: str) -> list[RateLimitItem]:
    """Rate strings in `limits`' notation, e.g. "100/second;3000/minute"; "" means no limit.

    Raises ValueError with a readable message for a malformed string.
    """
    if not text.strip():
        return []
    try:
        return list(parse_many(text))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a rate limit; write e.g. '20/second' or '100/second;3000/minute'"
        ) from None


def check_storage_url(url: str) -> str:
    """Accept an empty URL or memory:// (counters in this process), or a Redis URL."""
    if url in ("", "memory://") or url.startswith(REDIS_SCHEMES):
        return url
    raise ValueError("must be empty (in process), memory://, redis://, rediss:// or unix://")


def _storage(url: str, key_prefix: str) -> Storage:
    if url in ("", "memory://"):
        return MemoryStorage()
    # `limits` takes `async+redis://...` and passes the rest to redis-py's from_url.
    return RedisStorage(
        "async+" + url if not url.startswith("unix://") else "async+redis+" + url,
        implementation="redispy",
        key_prefix=key_prefix,
        wrap_exceptions=True,
        socket_timeout=STORAGE_TIMEOUT_SECONDS,
        socket_connect_timeout=STORAGE_TIMEOUT_SECONDS,
        # redis-py retries a failed command three times with backoff by default: seconds per
        # request during an outage. Fail at once instead; the limiter backs off on its own.
        retry=Retry(NoBackoff(), 0),  # type: ignore[arg-type]
    )


@dataclass
class RateLimitStats:
    """What /metrics reports about rate limiting in this process."""

    limited: Counter[str] = field(default_factory=Counter)  # 429s answered, by scope
    # The most requests one caller made in one window, by (scope, limit): how close real
    # traffic comes to each limit.
    peak: dict[tuple[str, str], int] = field(default_factory=dict)
    storage_errors: int = 0  # checks that failed because the storage did
    unchecked: int = 0  # requests served without a check (storage failing or left alone)
    storage_up: bool = True


class RateLimiter:
    """Limits per scope ("user", "operator", "integration") and caller key."""

    def __init__(
        self,
        *,
        limits: Mapping[str, str],
        storage_url: str = "",
        key_prefix: str = "ratelimit",
    ) -> None:
        self.limits = {scope: parse_limits(text) for scope, text in limits.items()}
        self.storage_url = check_storage_url(storage_url)
        self.shared = self.storage_url.startswith(REDIS_SCHEMES)
        self._key_prefix = key_prefix
        # Made at the first check, inside the serving event loop: `limits`' memory storage
        # schedules its expiry task on the loop current when it is made, and `serve` builds the
        # runtime before uvicorn starts its loop (the task would never run, expired keys never
        # leave).
        self._storage: Storage | None = None
        self._strategy: FixedWindowRateLimiter | None = None
        self.stats = RateLimitStats()
        self._left_alone_until = 0.0
        self._outage_logged_at: float | None = None
        self._unchecked_since_log = 0

    async def check(self, scope: str, key: str) -> int | None:
        """Count one request of `key` in `scope`: None when it may go on, else the seconds after
        which it may be retried (for Retry-After)."""
        items = self.limits.get(scope)
        if not items:
            return None
        if time.monotonic() < self._left_alone_until:
            self._served_unchecked()
            return None
        try:
            if self._storage is None or self._strategy is None:
                self._storage = _storage(self.storage_url, self._key_prefix)
                self._strategy = FixedWindowRateLimiter(self._storage)
            for item in items:
                # FixedWindowRateLimiter.hit, keeping the count it compares (same storage call,
                # same key) for the peak metric.
                count = await self._storage.incr(item.key_for(scope, key), item.get_expiry())
                peak = (scope, str(item))
                self.stats.peak[peak] = max(self.stats.peak.get(peak, 0), count)
                if count > item.amount:
                    reset, _remaining = await self._strategy.get_window_stats(item, scope, key)
                    self.stats.limited[scope] += 1
                    return max(1, math.ceil(reset - time.time()))
        except Exception as exc:
            # Fail open on anything the storage raises: a rate limiter that answers 5xx when
            # Redis is gone would turn a Redis outage into an outage of every API.
            self._storage_failed(exc)
            return None
        if not self.stats.storage_up:
            self._storage_back()
        return None

    def _storage_failed(self, exc: Exception) -> None:
        self.stats.storage_errors += 1
        self.stats.storage_up = False
        self._left_alone_until = time.monotonic() + RETRY_STORAGE_SECONDS
        self._served_unchecked()
        if self._outage_logged_at is None:
            cause = exc.storage_error if hasattr(exc, "storage_error") else exc
            # The class only: the error text can carry the storage URL and its password.
            log.warning(
                "rate limits: the storage is unreachable (%s); serving requests without "
                "limits until it answers again",
                type(cause).__name__,
            )
            self._outage_logged_at = time.monotonic()
            self._unchecked_since_log = 0

    def _served_unchecked(self) -> None:
        self.stats.unchecked += 1
        self._unchecked_since_log += 1
        now = time.monotonic()
        if (
            self._outage_logged_at is not None
            and now - self._outage_logged_at >= OUTAGE_LOG_EVERY_SECONDS
        ):
            log.warning(
                "rate limits: the storage is still unreachable; %d requests served without "
                "limits in the last %.0f s",
                self._unchecked_since_log,
                now - self._outage_logged_at,
            )
            self._outage_logged_at = now
            self._unchecked_since_log = 0

    def _storage_back(self) -> None:
        self.stats.storage_up = True
        log.warning(
            "rate limits: the storage answers again (%d requests were served without limits)",
            self._unchecked_since_log,
        )
        self._outage_logged_at = None
        self._unchecked_since_log = 0

    async def close(self) -> None:
        """Close the storage's connections (Redis)."""
        # `limits` has no close; its redis-py bridge keeps the client as `storage`.
        client = getattr(getattr(self._storage, "bridge", None), "storage", None)
        if client is not None:
            await client.aclose()
