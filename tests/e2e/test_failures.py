"""Delivery under failure: peer down, lost responses, a reply racing the ticket's creation, dead
events replayed or skipped from the command line. Nothing is lost, duplicated or reordered."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from crm_impl import tables as crm
from crm_impl.cli import COMMANDS as CRM_COMMANDS
from integration_kit.schema import OutboxState
from tests.e2e.helpers import (
    count,
    crm_messages,
    linked_ticket,
    record,
    rows,
    run_cli,
    tma_messages,
)
from tests.support.pair import Pair
from tma_impl import tables as tma
from tma_impl.cli import COMMANDS as TMA_COMMANDS

# Longer than any backoff a handful of failed attempts can schedule (1 s doubling, +20% jitter).
PAST_BACKOFF = 60


async def test_peer_down_while_the_user_writes_delivers_in_order_once(pair: Pair) -> None:
    """With the CRM unreachable the Mini App keeps working; once it is back, the ticket and every
    message arrive, in the order written, each stored once."""
    pair.to_crm.down = True
    ticket = await pair.open_ticket(message="first")
    for text in ("second", "third", "fourth"):
        await pair.user_writes(ticket["id"], text)
    for _ in range(3):  # several failed attempts, each backing off further
        await pair.sync()
        pair.clock.advance(PAST_BACKOFF)
    assert pair.to_crm.requests  # it did try
    assert await count(pair.crm_runtime, crm.Ticket) == 0
    [head] = await rows(pair.tma_runtime, tma.Outbox, tma.Outbox.kind == "ticket_created")
    assert (head.attempts, head.state) == (3, OutboxState.pending)

    pair.to_crm.down = False
    pair.clock.advance(PAST_BACKOFF * 20)
    await pair.sync()

    crm_ticket = await pair.crm_ticket_for(ticket["id"])
    bodies = [m["body"] for m in (await pair.conversation_in_crm(crm_ticket["id"]))["messages"]]
    assert bodies == ["first", "second", "third", "fourth"]
    assert await count(pair.crm_runtime, crm.Message) == 4
    assert all(m.external_message_id is not None for m in await tma_messages(pair))
    assert await count(pair.tma_runtime, tma.Outbox, tma.Outbox.state != "delivered") == 0


async def test_mini_app_down_while_the_operator_replies_delivers_in_order_once(
    pair: Pair,
) -> None:
    """The mirror image: replies written while the TMA is unreachable reach it in order, once,
    and the user is notified once per reply."""
    linked = await linked_ticket(pair)
    pair.to_tma.down = True
    for text in ("one", "two", "three"):
        await pair.operator_replies(linked.crm_id, text)
    await pair.sync()
    pair.clock.advance(PAST_BACKOFF)
    await pair.sync()
    assert [m.body for m in await tma_messages(pair)] == ["I paid but the order is unpaid."]

    pair.to_tma.down = False
    pair.clock.advance(PAST_BACKOFF * 20)
    await pair.sync()

    in_tma = await tma_messages(pair)
    assert [m.body for m in in_tma] == ["I paid but the order is unpaid.", "one", "two", "three"]
    assert [m.operator_name for m in in_tma[1:]] == [pair.operator_name] * 3
    assert [call.text.rsplit("\n", 1)[-1] for call in pair.bot.calls_for(4242)] == [
        "one",
        "two",
        "three",
    ]


async def test_lost_response_stores_the_message_once_and_links_it(pair: Pair) -> None:
    """The CRM stored a message but its answer was lost: the retry is recognised, the CRM keeps
    one copy, and the TMA still records the CRM's id of it."""
    linked = await linked_ticket(pair)
    written = await pair.user_writes(linked.tma_id, "Did you get this?")
    pair.to_crm.lose_responses = 1
    await pair.sync()
    assert pair.to_crm.delivered == 2  # createTicket earlier, and this message reached the CRM
    [unacknowledged] = await rows(
        pair.tma_runtime, tma.Message, tma.Message.id == uuid.UUID(written["id"])
    )
    assert unacknowledged.external_message_id is None

    pair.clock.advance(PAST_BACKOFF)
    await pair.sync()

    copies = await rows(
        pair.crm_runtime,
        crm.Message,
        crm.Message.external_message_id == uuid.UUID(written["id"]),
    )
    assert len(copies) == 1
    assert pair.to_crm.delivered == 3  # the message went twice
    [acknowledged] = await rows(
        pair.tma_runtime, tma.Message, tma.Message.id == uuid.UUID(written["id"])
    )
    assert acknowledged.external_message_id == copies[0].id


async def test_lost_response_to_a_reply_notifies_the_user_once(pair: Pair) -> None:
    """The TMA stored an operator reply but its answer was lost: one copy, one notification, and
    the CRM records the TMA's id of it after the retry."""
    linked = await linked_ticket(pair)
    await pair.operator_replies(linked.crm_id, "Hello, let me check.")
    await pair.sync()
    reply = await pair.operator_replies(linked.crm_id, "Please restart the app.")
    pair.to_tma.lose_responses = 1
    await pair.sync()
    assert pair.to_tma.delivered == 3  # status change, first reply, this reply (answer lost)
    pair.clock.advance(PAST_BACKOFF)
    await pair.sync()

    copies = await rows(
        pair.tma_runtime, tma.Message, tma.Message.external_message_id == uuid.UUID(reply["id"])
    )
    assert len(copies) == 1
    assert pair.to_tma.delivered == 4  # this reply went twice
    [in_crm] = await rows(pair.crm_runtime, crm.Message, crm.Message.id == uuid.UUID(reply["id"]))
    assert in_crm.external_message_id == copies[0].id
    notified = [call.text for call in pair.bot.calls_for(4242)]
    assert len(notified) == 2
    assert notified[1].endswith("Please restart the app.")


async def test_reply_racing_the_ticket_creation_is_not_lost(pair: Pair) -> None:
    """The CRM has the ticket and the operator's reply reaches the TMA before the TMA has seen
    the createTicket answer: the reply is stored, the link is taken from it, and the late answer
    agrees with it."""
    to_crm = record(pair.to_crm)
    ticket = await pair.open_ticket()
    pair.to_crm.lose_responses = 1
    assert await pair.tma_runtime.dispatcher.run_once() == 1  # created there, answer lost
    [tma_ticket] = await rows(pair.tma_runtime, tma.Ticket)
    assert tma_ticket.external_id is None
    crm_ticket = await pair.crm_ticket_for(ticket["id"])

    reply = await pair.operator_replies(crm_ticket["id"], "We are on it.")
    await pair.crm_runtime.dispatcher.run_once()  # the reply reaches the TMA first

    [tma_ticket] = await rows(pair.tma_runtime, tma.Ticket)
    assert str(tma_ticket.external_id) == crm_ticket["id"]  # learnt from the reply
    assert [m.body for m in await tma_messages(pair)][-1] == "We are on it."

    pair.clock.advance(PAST_BACKOFF)
    await pair.sync()  # now the TMA retries createTicket and gets the answer

    assert [e.status for e in to_crm.to("/api/integration/tickets")] == [201, 200]
    await pair.crm_ticket_for(ticket["id"])  # still exactly one CRM ticket for it
    in_tma, in_crm = await tma_messages(pair), await crm_messages(pair)
    assert [m.body for m in in_tma] == [m.body for m in in_crm]
    assert [m.body for m in in_tma] == ["I paid but the order is unpaid.", "We are on it."]
    for tma_message, crm_message in zip(in_tma, in_crm, strict=True):
        assert tma_message.external_message_id == crm_message.id
        assert crm_message.external_message_id == tma_message.id
    assert in_crm[1].id == uuid.UUID(reply["id"])
    [tma_ticket] = await rows(pair.tma_runtime, tma.Ticket)
    [crm_row] = await rows(pair.crm_runtime, crm.Ticket)
    assert (tma_ticket.external_id, crm_row.external_id) == (crm_row.id, tma_ticket.id)
    assert tma_ticket.status == crm_row.status == "in_progress"
    assert await count(pair.tma_runtime, tma.Outbox, tma.Outbox.state != "delivered") == 0
    assert len(pair.bot.calls_for(4242)) == 1


# --- dead events and the command line --------------------------------------------------------


async def _dead_message(pair: Pair, tma_ticket_id: str, text: str) -> tma.Outbox:
    """A user message the CRM refuses for good (it no longer accepts the TMA's token)."""
    accepted = pair.crm_runtime.settings.inbound_tokens
    pair.crm_runtime.settings.inbound_tokens = ["rotated-without-telling-the-tma"]
    try:
        await pair.user_writes(tma_ticket_id, text)
        await pair.sync()
    finally:
        pair.crm_runtime.settings.inbound_tokens = accepted
    [dead] = await rows(pair.tma_runtime, tma.Outbox, tma.Outbox.state == OutboxState.dead)
    assert "401" in (dead.last_error or "")
    return dead


@pytest.fixture
def tma_cli_env(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point `python -m tma_impl` at the test's TMA database."""
    monkeypatch.setenv("TMA_DATABASE_URL", pair.tma_runtime.settings.database_url)
    monkeypatch.setenv("TMA_ENVIRONMENT", "development")


def _catch_up_with_the_wall_clock(pair: Pair) -> None:
    # The command line stamps events with the real time; the pair's manual clock must reach it
    # before an event made due "now" by the command is due for the pair's dispatcher.
    pair.clock.set(max(pair.clock.now(), datetime.now(UTC)) + timedelta(seconds=1))


@pytest.mark.usefixtures("tma_cli_env")
async def test_dead_event_replayed_from_the_command_line_is_delivered(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    """A message the CRM refused is parked dead, listed by `outbox list`, and delivered after
    `outbox replay ID`."""
    linked = await linked_ticket(pair)
    dead = await _dead_message(pair, linked.tma_id, "Refused at first")
    assert await count(pair.crm_runtime, crm.Message) == 1

    assert await run_cli(TMA_COMMANDS, ["outbox", "list", "--state", "dead"]) == 0
    listing = capsys.readouterr().out
    assert f"{dead.id:>8}  dead" in listing
    assert "1 event(s)" in listing

    assert await run_cli(TMA_COMMANDS, ["outbox", "replay", str(dead.id)]) == 0
    assert f"event {dead.id} replayed" in capsys.readouterr().out
    _catch_up_with_the_wall_clock(pair)
    await pair.sync()

    assert [m["body"] for m in (await pair.conversation_in_crm(linked.crm_id))["messages"]] == [
        "I paid but the order is unpaid.",
        "Refused at first",
    ]
    [event] = await rows(pair.tma_runtime, tma.Outbox, tma.Outbox.id == dead.id)
    assert event.state == OutboxState.delivered
    assert "replayed from the command line" in (event.resolution or "")


@pytest.mark.usefixtures("tma_cli_env")
async def test_dead_event_holds_back_its_ticket_until_replayed(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    """Later messages of a ticket wait behind its dead event (order is never broken silently);
    other tickets are not held back; a replay delivers all in order."""
    linked = await linked_ticket(pair)
    other = await linked_ticket(pair, subject="Another problem")
    dead = await _dead_message(pair, linked.tma_id, "one")
    await pair.user_writes(linked.tma_id, "two")
    await pair.user_writes(other.tma_id, "elsewhere")
    pair.clock.advance(PAST_BACKOFF)
    await pair.sync()

    in_crm = [m["body"] for m in (await pair.conversation_in_crm(linked.crm_id))["messages"]]
    assert in_crm == ["I paid but the order is unpaid."]
    other_in_crm = (await pair.conversation_in_crm(other.crm_id))["messages"]
    assert other_in_crm[-1]["body"] == "elsewhere"

    assert await run_cli(TMA_COMMANDS, ["outbox", "replay", str(dead.id)]) == 0
    capsys.readouterr()
    _catch_up_with_the_wall_clock(pair)
    await pair.sync()

    in_crm = [m["body"] for m in (await pair.conversation_in_crm(linked.crm_id))["messages"]]
    assert in_crm == ["I paid but the order is unpaid.", "one", "two"]


@pytest.mark.usefixtures("tma_cli_env")
async def test_skipping_a_dead_event_releases_its_ticket(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    """`outbox skip ID --reason ...` gives up on the dead event, on the record, and the events
    behind it go; the skipped one is never sent."""
    linked = await linked_ticket(pair)
    dead = await _dead_message(pair, linked.tma_id, "one")
    await pair.user_writes(linked.tma_id, "two")
    await pair.sync()
    assert len((await pair.conversation_in_crm(linked.crm_id))["messages"]) == 1

    code = await run_cli(
        TMA_COMMANDS, ["outbox", "skip", str(dead.id), "--reason", "customer resent it"]
    )
    assert code == 0
    assert f"event {dead.id} skipped" in capsys.readouterr().out
    await pair.sync()

    in_crm = [m["body"] for m in (await pair.conversation_in_crm(linked.crm_id))["messages"]]
    assert in_crm == ["I paid but the order is unpaid.", "two"]
    [event] = await rows(pair.tma_runtime, tma.Outbox, tma.Outbox.id == dead.id)
    assert event.state == OutboxState.skipped
    assert "skipped: customer resent it" in (event.resolution or "")


@pytest.mark.usefixtures("tma_cli_env")
async def test_replaying_an_event_that_is_not_dead_is_refused(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command line refuses, with one readable line and exit 2, to replay a delivered event
    or one that does not exist."""
    await linked_ticket(pair)
    [delivered] = await rows(pair.tma_runtime, tma.Outbox)

    assert await run_cli(TMA_COMMANDS, ["outbox", "replay", str(delivered.id)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: event {delivered.id} is delivered, not dead: only dead events can be replayed"
    )
    assert await run_cli(TMA_COMMANDS, ["outbox", "skip", "999999", "--reason", "x"]) == 2
    assert capsys.readouterr().err.strip() == "error: no outbox event 999999"


async def test_dead_crm_event_replayed_from_the_crm_command_line(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same repair works on the CRM side: a reply the TMA refused is replayed and arrives."""
    linked = await linked_ticket(pair)
    accepted = pair.tma_runtime.settings.inbound_tokens
    pair.tma_runtime.settings.inbound_tokens = ["rotated-without-telling-the-crm"]
    await pair.operator_replies(linked.crm_id, "Refused at first")
    await pair.sync()
    pair.tma_runtime.settings.inbound_tokens = accepted
    [dead] = await rows(pair.crm_runtime, crm.Outbox, crm.Outbox.state == OutboxState.dead)
    monkeypatch.setenv("CRM_DATABASE_URL", pair.crm_runtime.settings.database_url)
    monkeypatch.setenv("CRM_ENVIRONMENT", "development")

    assert await run_cli(CRM_COMMANDS, ["outbox", "replay", str(dead.id)]) == 0
    assert f"event {dead.id} replayed" in capsys.readouterr().out
    _catch_up_with_the_wall_clock(pair)
    await pair.sync()

    assert [m.body for m in await tma_messages(pair)][-1] == "Refused at first"
    assert await count(pair.crm_runtime, crm.Outbox, crm.Outbox.state != "delivered") == 0
