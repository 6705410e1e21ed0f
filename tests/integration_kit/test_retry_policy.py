"""The retry schedule on its own: exponential backoff with bounded jitter, a cap, a maximum age,
Retry-After, and which answers are retried (docs/design.md §5)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from crm_impl.app import build_runtime as build_crm
from crm_impl.settings import CrmSettings
from integration_kit.problems import TICKET_NOT_KNOWN, VALIDATION
from integration_kit.retry import (
    Failure,
    GiveUp,
    RetryLater,
    RetryPolicy,
    classify_failure,
    parse_retry_after,
)
from integration_kit.settings import RetrySettings
from tma_impl.settings import TmaSettings

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_backoff_doubles_from_the_base_with_jitter_above_it_within_bounds() -> None:
    """Each delay lies in [base * 2^(n-1), that * (1 + jitter)] and the band is really used."""
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=10_000.0, jitter=0.2)
    rng = random.Random(7)
    for attempts in range(1, 11):
        floor = 2.0 ** (attempts - 1)
        delays = [policy.delay(attempts, rng) for _ in range(200)]
        assert all(floor <= d <= floor * 1.2 for d in delays), (attempts, min(delays), max(delays))
        # Jitter spreads them: not all the same, and both halves of the band are reached.
        assert max(delays) - min(delays) > floor * 0.15


def test_without_jitter_the_schedule_is_exact() -> None:
    policy = RetryPolicy(base_seconds=0.5, cap_seconds=60.0, jitter=0.0)
    assert [policy.delay(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 32, 60, 60]


def test_the_cap_is_the_longest_wait_even_with_jitter() -> None:
    """At the cap, delays stay within [cap / (1 + jitter), cap]: still spread, never longer."""
    policy = RetryPolicy(base_seconds=1.0, cap_seconds=600.0, jitter=0.2)
    rng = random.Random(3)
    delays = [policy.delay(attempts, rng) for attempts in range(10, 200) for _ in range(5)]
    assert max(delays) <= 600.0
    assert min(delays) >= 500.0 - 1e-9
    assert max(delays) - min(delays) > 50  # jitter still spreads retries at the cap
    # Huge attempt counts neither overflow nor pass the cap.
    assert policy.delay(10_000, rng) <= 600.0


def test_next_attempt_uses_the_backoff_or_the_peers_retry_after() -> None:
    policy = RetryPolicy(base_seconds=2.0, cap_seconds=600.0, max_age_seconds=3600.0, jitter=0.0)
    assert policy.next_attempt(now=NOW, attempts=3, retry_after=None) == NOW + timedelta(seconds=8)
    # Retry-After wins over the backoff, longer or shorter ...
    assert policy.next_attempt(now=NOW, attempts=3, retry_after=120) == NOW + timedelta(seconds=120)
    assert policy.next_attempt(now=NOW, attempts=9, retry_after=5) == NOW + timedelta(seconds=5)
    # ... but never pushes an attempt past the maximum age.
    assert policy.next_attempt(now=NOW, attempts=1, retry_after=10**9) == NOW + timedelta(
        seconds=3600
    )


def test_an_event_expires_at_the_maximum_age() -> None:
    policy = RetryPolicy(max_age_seconds=72 * 3600.0)
    created = NOW - timedelta(hours=72)
    assert policy.expired(now=NOW, created_at=created)
    assert not policy.expired(now=NOW - timedelta(seconds=1), created_at=created)


def test_the_defaults_are_the_documented_schedule() -> None:
    """From 1 s, capped at 10 minutes, 72 hours in all (docs/design.md §5, docs/delivery.md)."""
    retry = RetrySettings()
    assert (retry.base_seconds, retry.cap_seconds, retry.max_age_seconds) == (1, 600, 72 * 3600)
    assert 0 < retry.jitter <= 1


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Sun, 01 Mar 2026 12:01:30 GMT", 90.0),
        ("Sun, 01 Mar 2026 12:01:30 -0000", 90.0),
        ("Sun, 01 Mar 2026 11:00:00 GMT", 0.0),  # a date in the past: retry now
        ("soon", None),
        ("-5", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def _problem(type_: str, detail: str) -> bytes:
    return f'{{"type": "{type_}", "title": "t", "status": 0, "detail": "{detail}"}}'.encode()


@pytest.mark.parametrize(
    ("status", "failure"),
    [
        (500, Failure.unavailable),
        (502, Failure.unavailable),
        (503, Failure.unavailable),
        (504, Failure.unavailable),
        (408, Failure.unavailable),
        (425, Failure.unavailable),
        (429, Failure.throttled),
    ],
)
def test_server_errors_timeouts_and_throttling_are_retried(status: int, failure: str) -> None:
    outcome = classify_failure(status, b"", {"retry-after": "30"}, now=NOW)
    assert outcome == RetryLater(failure, f"HTTP {status}", 30.0)


def test_a_ticket_not_known_yet_is_retried() -> None:
    outcome = classify_failure(404, _problem(TICKET_NOT_KNOWN, "No ticket X here."), {}, now=NOW)
    assert isinstance(outcome, RetryLater)
    assert outcome.failure == Failure.not_known
    assert "No ticket X here." in outcome.detail


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 413, 415, 422])
def test_other_client_errors_give_up_with_the_problem_detail(status: int) -> None:
    outcome = classify_failure(status, _problem(VALIDATION, "message too long"), {}, now=NOW)
    assert outcome == GiveUp(f"HTTP {status} {VALIDATION}: message too long")


def test_a_client_error_without_a_problem_body_still_gives_up_readably() -> None:
    assert classify_failure(404, b"<html>nginx</html>", {}, now=NOW) == GiveUp("HTTP 404")


async def test_the_schedule_is_configured_from_each_backends_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """TMA_RETRY__* / CRM_RETRY__* reach the dispatcher's policy; unprefixed names do not."""
    monkeypatch.setenv("TMA_RETRY__BASE_SECONDS", "2.5")
    monkeypatch.setenv("TMA_RETRY__CAP_SECONDS", "90")
    monkeypatch.setenv("TMA_RETRY__MAX_AGE_SECONDS", "86400")
    monkeypatch.setenv("TMA_RETRY__JITTER", "0")
    monkeypatch.setenv("CRM_RETRY__CAP_SECONDS", "30")
    monkeypatch.setenv("CRM_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}")
    # A stray unprefixed variable must not change either backend's schedule.
    monkeypatch.setenv("JITTER", "0.9")
    monkeypatch.setenv("BASE_SECONDS", "99")
    assert TmaSettings().retry == RetrySettings(
        base_seconds=2.5, cap_seconds=90, max_age_seconds=86400, jitter=0
    )
    crm = CrmSettings()
    assert crm.retry == RetrySettings(cap_seconds=30)
    runtime = build_crm(crm)
    try:
        assert runtime.dispatcher.policy == RetryPolicy(
            base_seconds=1.0, cap_seconds=30.0, max_age_seconds=72 * 3600.0, jitter=0.2
        )
    finally:
        await runtime.close()


def test_a_misspelt_retry_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_RETRY__BASE", "5")
    with pytest.raises(ValueError, match=r"retry\.base"):
        CrmSettings()


def test_a_lease_shorter_than_the_peer_timeout_is_refused() -> None:
    """Such a dispatcher would claim events and release them unsent, forever and silently."""
    with pytest.raises(ValueError, match="lease_seconds"):
        CrmSettings(lease_seconds=5, peer_timeout_seconds=10)
    assert CrmSettings(lease_seconds=30, peer_timeout_seconds=10).lease_seconds == 30
