"""How the dispatcher delivers under failure (docs/design.md §5): retries and their schedule,
what goes dead, what a dead event holds back, recovery after an outage, per-ticket order, and
leases.

Both backends run in-process over HTTP with a ManualClock; dispatch rounds are run by the test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import Sequence
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from crm_impl.cli import COMMANDS as CRM_COMMANDS
from integration_kit import cli
from integration_kit.problems import IDEMPOTENCY_CONFLICT, TICKET_NOT_KNOWN, VALIDATION
from integration_kit.retry import Failure
from integration_kit.runtime import Runtime
from integration_kit.schema import OutboxState
from tests.integration_kit.outbox_rows import outbox_row, outbox_rows
from tests.integration_kit.scripted_peer import ScriptedPeer, plain, problem
from tests.support.pair import Pair
from tma_impl.cli import COMMANDS as TMA_COMMANDS
from tma_impl.settings import TmaSettings
from tma_impl.tables import Message as TmaMessage

FIRST = "I paid but the order is unpaid."


async def crm_bodies(pair: Pair, tma_ticket_id: str) -> list[str]:
    """The ticket's messages as the CRM's operators see them, in stored order."""
    crm_ticket = await pair.crm_ticket_for(tma_ticket_id)
    conversation = await pair.conversation_in_crm(crm_ticket["id"])
    return [m["body"] for m in conversation["messages"]]


async def message_event(pair: Pair, body: str) -> Any:
    """The TMA's outbox row announcing the message with this body."""
    rows = await outbox_rows(pair.tma_runtime, kind="message")
    matches = [row for row in rows if row.payload["request"]["message"] == body]
    assert len(matches) == 1, f"{len(matches)} message events with body {body!r}"
    return matches[0]


async def open_tickets(pair: Pair, count: int) -> list[str]:
    """Open `count` tickets and deliver them, so later messages have somewhere to go."""
    ids = [(await pair.open_ticket(subject=f"Ticket {n}"))["id"] for n in range(count)]
    await pair.sync()
    return ids


async def run_cli(runtime: Runtime, argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the backend's real command line against the runtime's database; returns its output."""
    commands = TMA_COMMANDS if isinstance(runtime.settings, TmaSettings) else CRM_COMMANDS
    backend = dataclasses.replace(commands, load_settings=lambda: runtime.settings)
    # The command line runs its own event loop (asyncio.run), as it does from a shell.
    code = await asyncio.to_thread(cli.main, backend, list(argv))
    out = capsys.readouterr().out
    assert code == 0, out
    return out


# --- retries, backoff and no busy loop ------------------------------------------------------------


async def test_a_day_long_outage_costs_a_bounded_number_of_attempts_and_no_busy_loop(
    pair: Pair,
) -> None:
    """While nothing is due a round sends nothing; attempts back off exponentially to the cap."""
    pair.to_crm.down = True
    await pair.open_ticket()
    dispatcher = pair.tma_runtime.dispatcher
    policy = dispatcher.policy
    waits: list[float] = []
    start = pair.clock.now()
    while pair.clock.now() - start < timedelta(hours=24):
        attempted_at = pair.clock.now()
        assert await dispatcher.run_once() == 1
        # Until the next attempt is due, rounds find nothing and make no request at all.
        sent = len(pair.to_crm.requests)
        assert await dispatcher.run_once() == 0
        assert await dispatcher.run_once() == 0
        assert len(pair.to_crm.requests) == sent
        [row] = await outbox_rows(pair.tma_runtime)
        waits.append((row.next_attempt_at - attempted_at).total_seconds())
        pair.clock.set(row.next_attempt_at)

    # The schedule: 1 s, 2 s, 4 s ... each with at most 20% jitter, then the 10-minute cap.
    for attempt, wait in enumerate(waits, start=1):
        floor = min(policy.base_seconds * 2 ** (attempt - 1), policy.cap_seconds / 1.2)
        assert floor - 0.05 <= wait <= min(floor * 1.2, policy.cap_seconds) + 0.05, (attempt, wait)
    assert max(waits) <= policy.cap_seconds + 0.05
    # About 10 attempts to reach the cap, then one per 500-600 s: bounded, not a busy loop.
    assert 150 <= len(waits) <= 185, len(waits)
    assert len(pair.to_crm.requests) == len(waits)
    [row] = await outbox_rows(pair.tma_runtime)
    assert row.state == OutboxState.pending  # a day is within the 72-hour maximum age
    assert row.attempts == len(waits)
    assert row.last_failure == Failure.unavailable
    assert "ConnectError" in (row.last_error or "")


async def test_one_tickets_failures_do_not_hold_back_other_tickets(pair: Pair) -> None:
    """Only ticket A's requests fail: B's messages are delivered in the same rounds, A's wait."""
    a, b = await open_tickets(pair, 2)
    scripted = ScriptedPeer.install(pair.to_crm)
    failing_a = scripted.answer(a, lambda: httpx.ConnectError)
    for n in (1, 2, 3):
        await pair.user_writes(a, f"a{n}")
        await pair.user_writes(b, f"b{n}")
    await pair.sync()

    assert await crm_bodies(pair, b) == [FIRST, "b1", "b2", "b3"]
    assert await crm_bodies(pair, a) == [FIRST]
    # A's later messages never went before its first: only a1 was tried.
    a1, a2, a3 = [await message_event(pair, f"a{n}") for n in (1, 2, 3)]
    assert (a1.state, a2.state, a3.state) == ("pending", "pending", "pending")
    assert a1.attempts == failing_a.hits >= 1
    assert a2.attempts == a3.attempts == 0
    assert [a2.lease_owner, a3.lease_owner] == [None, None]  # released, not left leased

    scripted.clear()
    pair.clock.advance(policy_wait(pair, a1.attempts))
    await pair.sync()
    assert await crm_bodies(pair, a) == [FIRST, "a1", "a2", "a3"]


def policy_wait(pair: Pair, attempts: int) -> float:
    """Long enough for an event that failed `attempts` times to be due again."""
    policy = pair.tma_runtime.dispatcher.policy
    return policy.delay(attempts) * (1 + policy.jitter) + 1


async def test_a_ticket_the_peer_keeps_failing_keeps_its_backoff_while_others_flow(
    pair: Pair,
) -> None:
    """Deliveries to a healthy peer do not wake one ticket's failing event round after round."""
    a, b = await open_tickets(pair, 2)
    scripted = ScriptedPeer.install(pair.to_crm)
    poisoned = scripted.answer(a, plain(500))
    await pair.user_writes(a, "the peer fails on this one")
    for n in range(10):
        await pair.user_writes(b, f"b{n}")
        assert await pair.tma_runtime.dispatcher.run_once() >= 1
    assert await crm_bodies(pair, b) == [FIRST, *(f"b{n}" for n in range(10))]
    # Ten rounds in which the peer answered others: the failing event waited out its backoff.
    assert poisoned.hits == 1
    row = await message_event(pair, "the peer fails on this one")
    assert row.state == OutboxState.pending
    assert row.next_attempt_at > pair.clock.now()


async def test_when_the_peer_answers_again_waiting_events_are_due_at_once(pair: Pair) -> None:
    """After an outage the first success makes backed-off events due now; a 429's wait stands."""
    a, b, c, d = await open_tickets(pair, 4)
    scripted = ScriptedPeer.install(pair.to_crm)
    scripted.answer(c, plain(429, {"Retry-After": "3600"}))
    await pair.user_writes(c, "c1")
    await pair.sync()
    scripted.clear()

    pair.to_crm.down = True
    await pair.user_writes(a, "a1")
    await pair.user_writes(b, "b1")
    dispatcher = pair.tma_runtime.dispatcher
    for _ in range(9):  # a long outage: both back off to minutes
        waiting = [await message_event(pair, body) for body in ("a1", "b1")]
        pair.clock.set(max(row.next_attempt_at for row in waiting) + timedelta(seconds=1))
        assert await dispatcher.run_once() == 2
    waiting = [await message_event(pair, body) for body in ("a1", "b1")]
    assert all(row.next_attempt_at - pair.clock.now() > timedelta(minutes=2) for row in waiting)

    pair.to_crm.down = False
    # The peer's return is noticed by the next attempt, here a new ticket's message.
    await pair.user_writes(d, "d1")
    assert await dispatcher.run_once() == 1
    # Without moving the clock, the backed-off events go in the very next round.
    assert await dispatcher.run_once() == 2
    assert await crm_bodies(pair, a) == [FIRST, "a1"]
    assert await crm_bodies(pair, b) == [FIRST, "b1"]
    # The throttled event keeps the wait the peer asked for.
    c1 = await message_event(pair, "c1")
    assert c1.state == OutboxState.pending
    assert c1.last_failure == Failure.throttled
    assert c1.next_attempt_at - pair.clock.now() > timedelta(minutes=50)
    assert await dispatcher.run_once() == 0


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_retry_after_is_honoured(pair: Pair, status: int, form: str) -> None:
    """The next attempt waits exactly as long as the peer's Retry-After says, not the backoff."""
    [ticket] = await open_tickets(pair, 1)
    scripted = ScriptedPeer.install(pair.to_crm)

    def answer() -> httpx.Response:
        later = pair.clock.now() + timedelta(seconds=120)
        value = "120" if form == "seconds" else format_datetime(later, usegmt=True)
        return plain(status, {"Retry-After": value})()

    rule = scripted.answer("slow down", answer)
    await pair.user_writes(ticket, "slow down")
    asked_at = pair.clock.now()
    assert await pair.tma_runtime.dispatcher.run_once() == 1
    row = await message_event(pair, "slow down")
    assert abs((row.next_attempt_at - asked_at).total_seconds() - 120) < 1.5
    phrase = "Too Many Requests" if status == 429 else "Service Unavailable"
    assert row.last_error == f"HTTP {status}: {phrase}"

    pair.clock.advance(115)  # far past any backoff, short of Retry-After
    assert await pair.tma_runtime.dispatcher.run_once() == 0
    assert rule.hits == 1
    pair.clock.advance(10)
    scripted.clear()
    assert await pair.tma_runtime.dispatcher.run_once() == 1
    assert await crm_bodies(pair, ticket) == [FIRST, "slow down"]


# --- what is retried and what goes dead -----------------------------------------------------------

RETRIED: list[tuple[str, Any, str]] = [
    ("500", plain(500), Failure.unavailable),
    ("502 from a proxy", plain(502), Failure.unavailable),
    ("503", problem(503, "urn:x", "maintenance"), Failure.unavailable),
    ("504", plain(504), Failure.unavailable),
    ("408", plain(408), Failure.unavailable),
    ("425", plain(425), Failure.unavailable),
    ("429", plain(429), Failure.throttled),
    ("not known yet", problem(404, TICKET_NOT_KNOWN, "no such ticket yet"), Failure.not_known),
    ("connection refused", lambda: httpx.ConnectError, Failure.unavailable),
    ("connection reset", lambda: httpx.RemoteProtocolError, Failure.unavailable),
    ("timeout", lambda: httpx.ReadTimeout, Failure.unavailable),
]
DEAD: list[tuple[str, Any, str]] = [
    ("400", problem(400, "urn:x:malformed", "bad json"), "HTTP 400 urn:x:malformed: bad json"),
    ("401", problem(401, "urn:x:unauthorized", "wrong token"), "wrong token"),
    ("403", problem(403, "urn:x:forbidden-sender", "not yours"), "HTTP 403"),
    ("plain 404", plain(404), "HTTP 404"),
    ("409", problem(409, IDEMPOTENCY_CONFLICT, "other body"), f"{IDEMPOTENCY_CONFLICT}: other"),
    ("413", problem(413, "urn:x:too-large", "too big"), "HTTP 413"),
    ("422", problem(422, VALIDATION, "message too long"), f"HTTP 422 {VALIDATION}: message too"),
]


async def test_retryable_answers_are_retried_and_other_client_errors_go_dead(pair: Pair) -> None:
    """5xx, timeouts, connection errors, 408, 425, 429 and ticket-not-known wait for a retry;
    other 4xx park the event as dead with the peer's problem detail."""
    cases = RETRIED + DEAD
    tickets = await open_tickets(pair, len(cases))
    scripted = ScriptedPeer.install(pair.to_crm)
    for ticket, (name, answer, _) in zip(tickets, cases, strict=True):
        scripted.answer(f"case {name}", answer)
        await pair.user_writes(ticket, f"case {name}")
        await pair.user_writes(ticket, f"after {name}")
    assert await pair.tma_runtime.dispatcher.run_once() == len(cases)

    for name, _, failure in RETRIED:
        row = await message_event(pair, f"case {name}")
        if failure == Failure.unavailable:
            # The peer answered other events in this round, so these failures are the events'
            # own: retried on their backoff, not woken early by the next success.
            failure = Failure.failing
        assert (row.state, row.last_failure, row.attempts) == ("pending", failure, 1), name
        assert row.next_attempt_at > pair.clock.now(), name
    for name, _, detail in DEAD:
        row = await message_event(pair, f"case {name}")
        assert row.state == OutboxState.dead, name
        assert detail in (row.last_error or ""), (name, row.last_error)
    for name, *_ in cases:  # nothing went past the failed event of its ticket
        assert (await message_event(pair, f"after {name}")).attempts == 0, name
    dead = await pair.tma.get("/metrics")
    assert "outbox_dead_total 7.0" in dead.text


async def test_events_past_the_maximum_age_go_dead_are_listed_and_replayed_from_the_cli(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    """After 72 hours of failures the event is dead; `outbox list` shows it, `replay` revives it."""
    pair.to_crm.down = True
    ticket = await pair.open_ticket()
    dispatcher = pair.tma_runtime.dispatcher
    assert await dispatcher.run_once() == 1
    pair.clock.advance(71 * 3600)
    assert await dispatcher.run_once() == 1
    [row] = await outbox_rows(pair.tma_runtime)
    assert row.state == OutboxState.pending  # 71 hours: still retried
    pair.clock.advance(3600)
    assert await dispatcher.run_once() == 1
    [row] = await outbox_rows(pair.tma_runtime)
    assert row.state == OutboxState.dead
    assert (row.last_error or "").startswith("gave up after the maximum age: ConnectError")
    # Dead is final for the dispatcher: no more attempts, however long we wait.
    pair.clock.advance(24 * 3600)
    assert await dispatcher.run_once() == 0

    listing = await run_cli(pair.tma_runtime, ["outbox", "list", "--state", "dead"], capsys)
    _header, line, total = listing.splitlines()
    assert line.split()[:3] == [str(row.id), "dead", "ticket_created"]
    assert ticket["id"] in line
    assert "gave up after the maximum age" in line
    assert total == "1 event(s)"

    pair.to_crm.down = False
    replayed = await run_cli(pair.tma_runtime, ["outbox", "replay", str(row.id)], capsys)
    assert f"event {row.id} replayed" in replayed
    await pair.sync()
    row = await outbox_row(pair.tma_runtime, row.id)
    assert row.state == OutboxState.delivered
    assert "replayed from the command line" in (row.resolution or "")
    assert (await pair.crm_ticket_for(ticket["id"]))["subject"] == "Payment failed"
    empty = await run_cli(pair.tma_runtime, ["outbox", "list", "--state", "dead"], capsys)
    assert "0 event(s)" in empty


async def test_a_dead_event_holds_back_its_ticket_until_replayed(pair: Pair) -> None:
    """Order is never broken silently: later events wait behind the dead one, then follow it."""
    ticket, other = await open_tickets(pair, 2)
    scripted = ScriptedPeer.install(pair.to_crm)
    scripted.answer("refused", problem(422, VALIDATION, "the peer refused it"))
    await pair.user_writes(ticket, "refused")
    await pair.user_writes(ticket, "after it")
    await pair.user_writes(other, "unrelated")
    await pair.sync()
    dead = await message_event(pair, "refused")
    held = await message_event(pair, "after it")
    assert dead.state == OutboxState.dead
    assert (held.state, held.attempts) == ("pending", 0)
    assert await crm_bodies(pair, other) == [FIRST, "unrelated"]  # other tickets flow

    requests = len(pair.to_crm.requests)
    pair.clock.advance(3 * 24 * 3600)
    assert await pair.sync() == 0
    assert len(pair.to_crm.requests) == requests
    assert await crm_bodies(pair, ticket) == [FIRST]

    scripted.clear()  # the peer was fixed
    runtime = pair.tma_runtime
    async with runtime.db.transaction() as session:
        assert await runtime.outbox.replay(
            session, dead.id, now=pair.clock.now(), note="replayed by Maria after the fix\n"
        )
    await pair.sync()
    assert await crm_bodies(pair, ticket) == [FIRST, "refused", "after it"]
    replayed = await outbox_row(runtime, dead.id)
    assert replayed.state == OutboxState.delivered
    assert replayed.resolution == "replayed by Maria after the fix\n"


async def test_a_dead_event_skipped_from_the_cli_releases_its_ticket_and_is_recorded(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    [ticket] = await open_tickets(pair, 1)
    scripted = ScriptedPeer.install(pair.to_crm)
    scripted.answer("refused", problem(422, VALIDATION, "the peer refused it"))
    await pair.user_writes(ticket, "refused")
    await pair.user_writes(ticket, "after it")
    await pair.sync()
    dead = await message_event(pair, "refused")
    assert dead.state == OutboxState.dead

    out = await run_cli(
        pair.tma_runtime,
        ["outbox", "skip", str(dead.id), "--reason", "peer will never take it"],
        capsys,
    )
    assert f"event {dead.id} skipped" in out
    await pair.sync()
    assert await crm_bodies(pair, ticket) == [FIRST, "after it"]
    skipped = await outbox_row(pair.tma_runtime, dead.id)
    assert skipped.state == OutboxState.skipped
    assert "skipped: peer will never take it" in (skipped.resolution or "")
    assert scripted.rules[0].hits == 1  # skipped means never sent again


# --- order and rounds -----------------------------------------------------------------------------


async def test_several_events_per_ticket_go_in_one_round_in_order(pair: Pair) -> None:
    a, b = await open_tickets(pair, 2)
    for n in range(6):
        await pair.user_writes(a, f"a{n}")
        await pair.user_writes(b, f"b{n}")
    assert await pair.tma_runtime.dispatcher.run_once() == 12
    assert await pair.tma_runtime.dispatcher.run_once() == 0
    assert await crm_bodies(pair, a) == [FIRST, *(f"a{n}" for n in range(6))]
    assert await crm_bodies(pair, b) == [FIRST, *(f"b{n}" for n in range(6))]


async def test_a_failure_mid_ticket_stops_the_rest_of_that_ticket_in_the_round(pair: Pair) -> None:
    [ticket] = await open_tickets(pair, 1)
    scripted = ScriptedPeer.install(pair.to_crm)
    scripted.answer("m2", plain(503))
    for n in range(1, 5):
        await pair.user_writes(ticket, f"m{n}")
    assert await pair.tma_runtime.dispatcher.run_once() == 2  # m1 delivered, m2 failed
    m3, m4 = await message_event(pair, "m3"), await message_event(pair, "m4")
    assert m3.attempts == m4.attempts == 0
    assert [m3.lease_owner, m4.lease_owner] == [None, None]
    assert await crm_bodies(pair, ticket) == [FIRST, "m1"]

    scripted.clear()
    pair.clock.advance(policy_wait(pair, 1))
    await pair.sync()
    assert await crm_bodies(pair, ticket) == [FIRST, "m1", "m2", "m3", "m4"]


async def test_an_answer_that_cannot_be_recorded_parks_only_its_event(pair: Pair) -> None:
    """The peer stores m2 but answers with a ticket id contradicting the stored link: the round's
    answers are recorded together, and only m2 goes dead (for an operator), not the whole round."""
    a, b = await open_tickets(pair, 2)
    scripted = ScriptedPeer.install(pair.to_crm)
    wrong = json.dumps(
        {
            "message_id": str(uuid.uuid4()),
            "ticket_id": str(uuid.uuid4()),
            "external_message_id": str(uuid.uuid4()),
        }
    )
    scripted.answer(
        "m2",
        lambda: httpx.Response(
            201, content=wrong.encode(), headers={"content-type": "application/json"}
        ),
    )
    for n in (1, 2, 3):
        await pair.user_writes(a, f"m{n}")
        await pair.user_writes(b, f"b{n}")
    assert await pair.tma_runtime.dispatcher.run_once() == 6

    m2 = await message_event(pair, "m2")
    assert m2.state == OutboxState.dead
    assert "recording the answer failed" in (m2.last_error or "")
    assert "is linked to" in (m2.last_error or "")
    others = [await message_event(pair, body) for body in ("m1", "m3", "b1", "b2", "b3")]
    assert [row.state for row in others] == [OutboxState.delivered] * 5
    # Their peer message ids were stored: each message is linked both ways.
    async with pair.tma_runtime.db.sessions() as session:
        linked = dict(
            (
                await session.execute(
                    select(TmaMessage.body, TmaMessage.external_message_id).where(
                        TmaMessage.body.in_(["m1", "m2", "m3", "b1", "b2", "b3"])
                    )
                )
            ).all()
        )
    assert linked["m2"] is None
    assert all(linked[body] is not None for body in ("m1", "m3", "b1", "b2", "b3"))
    assert await crm_bodies(pair, b) == [FIRST, "b1", "b2", "b3"]


# --- leases ---------------------------------------------------------------------------------------


async def test_an_event_leased_by_a_crashed_dispatcher_waits_for_the_lease_to_expire(
    pair: Pair,
) -> None:
    [ticket] = await open_tickets(pair, 1)
    await pair.user_writes(ticket, "leased")
    runtime = pair.tma_runtime
    # Another worker claims the event and dies before sending it.
    async with runtime.db.transaction() as session:
        claimed = await runtime.outbox.claim(
            session,
            owner="worker-that-crashed",
            now=pair.clock.now(),
            lease_seconds=60,
            limit=10,
            per_stream=20,
            skip_locked=not runtime.db.is_sqlite,
        )
    assert [event.payload["request"]["message"] for event in claimed] == ["leased"]
    sent = len(pair.to_crm.requests)

    assert await runtime.dispatcher.run_once() == 0
    pair.clock.advance(50)
    assert await runtime.dispatcher.run_once() == 0
    assert len(pair.to_crm.requests) == sent  # never sent twice at the same time

    pair.clock.advance(11)  # the lease has expired
    assert await runtime.dispatcher.run_once() == 1
    assert await crm_bodies(pair, ticket) == [FIRST, "leased"]
    row = await message_event(pair, "leased")
    assert (row.state, row.attempts, row.lease_owner) == ("delivered", 1, None)
