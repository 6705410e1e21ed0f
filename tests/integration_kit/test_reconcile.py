"""`reconcile` on SQLite and PostgreSQL: dead events repaired and their tickets released, a side
restored from an earlier copy of its database made whole again, and a run beside live traffic
that changes nothing live delivery would not (docs/design.md §10)."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from crm_impl import tables as crm
from crm_impl.cli import COMMANDS as CRM_COMMANDS
from integration_kit import changelog
from integration_kit.reconcile_loop import EXTRAS_KEY, ReconcileLoop
from integration_kit.schema import Channel, OutboxState
from tests.e2e.helpers import linked_ticket, rows, run_cli
from tests.support.backup import restore_backup, take_backup
from tests.support.pair import Pair, wired_pair
from tma_impl import tables as tma
from tma_impl.cli import COMMANDS as TMA_COMMANDS

PAST_MAX_AGE = 73 * 3600


async def both_sides(pair: Pair) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each side's tickets and messages, named the same way (TMA id, CRM id) on both sides."""
    tma_tickets = await rows(pair.tma_runtime, tma.Ticket)
    crm_tickets = await rows(pair.crm_runtime, crm.Ticket)
    tma_messages = await rows(pair.tma_runtime, tma.Message)
    crm_messages = await rows(pair.crm_runtime, crm.Message)
    seen_tma = {
        "tickets": sorted(
            (str(t.id), str(t.external_id), t.subject, t.status) for t in tma_tickets
        ),
        "messages": sorted(
            (str(m.id), str(m.external_message_id), m.sender_type, m.body)
            if m.sender_type == "tma"
            else (str(m.external_message_id), str(m.id), m.sender_type, m.body)
            for m in tma_messages
        ),
    }
    seen_crm = {
        "tickets": sorted(
            (str(t.external_id), str(t.id), t.subject, t.status) for t in crm_tickets
        ),
        "messages": sorted(
            (str(m.external_message_id), str(m.id), m.sender_type, m.body)
            if m.sender_type == "tma"
            else (str(m.id), str(m.external_message_id), m.sender_type, m.body)
            for m in crm_messages
        ),
    }
    return seen_tma, seen_crm


async def assert_equal_and_single(pair: Pair) -> None:
    seen_tma, seen_crm = await both_sides(pair)
    assert seen_tma == seen_crm
    assert len(set(seen_tma["messages"])) == len(seen_tma["messages"])  # nothing twice
    assert "None" not in str(seen_tma)  # every link known on both sides


async def notified_message_ids(pair: Pair) -> Counter[str]:
    events = await rows(pair.tma_runtime, tma.Outbox, tma.Outbox.channel == Channel.telegram)
    return Counter(str(event.payload["message_id"]) for event in events)


# --- (a) dead events ------------------------------------------------------------------------


async def test_events_dead_after_the_maximum_age_are_repaired_and_release_their_ticket(
    pair: Pair,
) -> None:
    linked = await linked_ticket(pair)
    pair.to_crm.down = True
    await pair.user_writes(linked.tma_id, "lost while the CRM was away")
    await pair.user_writes(linked.tma_id, "waiting behind it")
    await pair.sync()
    pair.clock.advance(PAST_MAX_AGE)
    await pair.sync()
    [dead] = await rows(pair.tma_runtime, tma.Outbox, tma.Outbox.state == OutboxState.dead)
    pair.to_crm.down = False
    await pair.sync()
    # Held back: the CRM has neither message, and the dead event stays dead.
    assert [m.body for m in await rows(pair.crm_runtime, crm.Message)] == [
        "I paid but the order is unpaid."
    ]

    dry = await pair.reconcile("crm", dry_run=True)
    assert dry.counts["message"] == 2, dry
    assert len(await rows(pair.crm_runtime, crm.Message)) == 1  # a dry run changes nothing

    repaired_crm = await pair.reconcile("crm")
    assert repaired_crm.counts["message"] == 2
    repaired_tma = await pair.reconcile("tma")
    assert repaired_tma.counts["dead_resolved"] == 1
    assert repaired_tma.counts["message_link"] == 2
    [resolved] = await rows(pair.tma_runtime, tma.Outbox, tma.Outbox.id == dead.id)
    assert resolved.state == OutboxState.skipped
    assert "resolved by reconcile" in (resolved.resolution or "")

    # The ticket is released: what waited behind the dead event, and what comes next, flows.
    await pair.user_writes(linked.tma_id, "after the repair")
    await pair.sync()
    pending = await rows(
        pair.tma_runtime,
        tma.Outbox,
        tma.Outbox.state.in_([OutboxState.pending, OutboxState.dead]),
    )
    assert pending == []
    await assert_equal_and_single(pair)
    bodies = [m.body for m in await rows(pair.crm_runtime, crm.Message, order_by=crm.Message.seq)]
    assert bodies[1:] == ["lost while the CRM was away", "waiting behind it", "after the repair"]
    # Nothing left to repair on either side: reconcile is idempotent.
    assert (await pair.reconcile("crm", full=True)).total == 0
    assert (await pair.reconcile("tma", full=True)).total == 0


# --- (b) restore from a backup --------------------------------------------------------------


async def _status(pair: Pair, crm_id: str, status: str) -> None:
    answer = await pair.crm.post(
        f"/api/crm/tickets/{crm_id}/status", json={"status": status}, headers=pair.operator_headers
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("restored", ["tma", "crm"])
async def test_a_side_restored_from_an_earlier_copy_is_made_whole_by_reconcile(
    pair: Pair, tmp_path: Path, restored: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Before the backup: a conversation both sides hold.
    before = await linked_ticket(pair, subject="Before the backup")
    untouched = await linked_ticket(pair, subject="Written in after the restore")
    await pair.operator_replies(before.crm_id, "first answer")
    await pair.sync()
    # Both sides reconcile now and then: each has a saved cursor in the other's feed.
    assert (await pair.reconcile("tma")).total == 0
    assert (await pair.reconcile("crm")).total == 0
    runtime = pair.tma_runtime if restored == "tma" else pair.crm_runtime
    backup = await take_backup(runtime, tmp_path)

    # After the backup, all delivered: a new ticket, messages both ways, status changes.
    after = await linked_ticket(pair, subject="After the backup")
    await pair.user_writes(before.tma_id, "a follow-up")
    await pair.operator_replies(after.crm_id, "answer to the new one")
    await pair.operator_replies(before.crm_id, "second answer")
    await pair.sync()
    await _status(pair, before.crm_id, "closed")
    await pair.sync()
    # A customer's message after the close reopens the ticket on both sides (no status event):
    # taken back in feed order (the close, then the message), it must reopen it again.
    await pair.user_writes(before.tma_id, "still broken")
    await pair.sync()
    replies_notified = await notified_message_ids(pair)
    assert (await pair.reconcile("tma")).total == 0
    assert (await pair.reconcile("crm")).total == 0

    await restore_backup(runtime, backup)
    commands = TMA_COMMANDS if restored == "tma" else CRM_COMMANDS
    # The operator step after a restore (the CLI reads the same database through settings; here
    # the runtime's own database is the one restored, so the step is taken on it directly).
    async with runtime.db.transaction() as session:
        state = tma.FeedState if restored == "tma" else crm.FeedState
        await changelog.restored(session, state, now=pair.clock.now())
    assert commands.reconcile_side is not None

    # Traffic goes on before anyone reconciles.
    await pair.user_writes(untouched.tma_id, "written after the restore")
    await pair.operator_replies(untouched.crm_id, "reply after the restore")
    await pair.sync()

    this, other = (restored, "crm" if restored == "tma" else "tma")
    first = await pair.reconcile(this)
    second = await pair.reconcile(other)
    assert second.restarted  # the restored side's epoch changed: read again from its start
    await pair.sync()
    assert first.total > 0
    await assert_equal_and_single(pair)
    [reopened] = await rows(pair.tma_runtime, tma.Ticket, tma.Ticket.id == uuid.UUID(before.tma_id))
    assert reopened.status == "open"

    # Notified once each, never again for what had been notified before the restore.
    notified = await notified_message_ids(pair)
    if restored == "tma":
        assert first.counts["message_restored"] >= 3
        assert first.counts["ticket_restored"] == 1
        assert first.counts["notified"] == 0
        assert all(count == 1 for count in notified.values())
        lost = set(replies_notified) - set(notified)
        assert lost  # the restore lost their notification rows, and none was sent again
    else:
        assert first.counts["ticket_restored"] == 1
        assert first.counts["message_restored"] >= 3
        assert notified == replies_notified + Counter(
            {key: 1 for key in notified if key not in replies_notified}
        )
    # Idempotent: a second round on both sides finds nothing.
    assert (await pair.reconcile(this, full=True)).total == 0
    assert (await pair.reconcile(other, full=True)).total == 0
    await assert_equal_and_single(pair)
    capsys.readouterr()


# --- (c) beside live traffic ----------------------------------------------------------------


async def test_reconcile_during_live_traffic_changes_nothing_live_delivery_would_not(
    pair: Pair,
) -> None:
    """Events still in flight when reconcile runs: it may store them first, and live delivery
    then stores nothing twice and notifies nothing twice."""
    linked = await linked_ticket(pair)
    await pair.user_writes(linked.tma_id, "in flight to the CRM")
    reply = await pair.operator_replies(linked.crm_id, "in flight to the Mini App")
    await _status(pair, linked.crm_id, "closed")
    # Nothing delivered yet: reconcile takes the changes from the feeds first.
    repaired_tma = await pair.reconcile("tma")
    repaired_crm = await pair.reconcile("crm")
    assert repaired_tma.counts["message"] == 1
    assert repaired_tma.counts["notified"] == 1
    assert repaired_crm.counts["message"] == 1
    await pair.sync()  # live delivery: every event answered as a replay, none stored again
    await assert_equal_and_single(pair)
    assert (await notified_message_ids(pair))[reply["id"]] == 0  # the CRM's id is not ours
    notified = await notified_message_ids(pair)
    assert sorted(notified.values()) == [1]  # the one reply, told once
    assert len(await pair.bot.wait_for_calls(1)) == 1
    leftover = await rows(
        pair.tma_runtime, tma.Outbox, tma.Outbox.state.in_([OutboxState.pending, OutboxState.dead])
    )
    assert leftover == []
    [tma_ticket] = await rows(pair.tma_runtime, tma.Ticket)
    assert tma_ticket.status == "closed"
    assert (await pair.reconcile("tma")).total == 0
    assert (await pair.reconcile("crm")).total == 0


async def test_a_dry_run_reports_what_a_run_repairs_and_both_end_with_a_summary(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    linked = await linked_ticket(pair)
    await pair.operator_replies(linked.crm_id, "not delivered yet")
    dry = await pair.reconcile("tma", dry_run=True)
    assert dry.render(dry_run=True) == (
        "4 change(s) read; differences found: 3 (message 1, notified 1, status 1)"
    )
    assert await notified_message_ids(pair) == Counter()  # the dry run stored nothing
    real = await pair.reconcile("tma")
    assert real.render(dry_run=False) == dry.render(dry_run=False)
    assert (await pair.reconcile("tma")).render(dry_run=False) == "0 change(s) read; repaired: 0"
    # The command line refuses a time it cannot read in one line.
    with pytest.raises(SystemExit) as refused:
        await run_cli(TMA_COMMANDS, ["reconcile", "--since", "not a time"])
    assert refused.value.code == 2
    assert "not an ISO 8601 time" in capsys.readouterr().err


async def test_a_dry_run_over_many_pages_reports_what_the_run_then_repairs(pair: Pair) -> None:
    """A ticket the CRM never received, read one item a page: the dry run counts its messages on
    later pages too (it keeps its work in one transaction), exactly as the run then repairs."""
    pair.to_crm.down = True
    ticket = await pair.open_ticket()
    await pair.user_writes(ticket["id"], "second")
    dry = await pair.reconcile("crm", dry_run=True, page_size=1)
    assert await rows(pair.crm_runtime, crm.Ticket) == []
    real = await pair.reconcile("crm", page_size=1)
    assert dry.counts == real.counts
    assert real.counts["ticket"] == 1
    assert real.counts["message"] == 1  # the first message came with the ticket
    pair.to_crm.down = False
    await pair.sync()  # the pending createTicket and message are answered as replays
    await assert_equal_and_single(pair)


# --- periodic, inside the delivering process --------------------------------------------------


async def test_periodic_reconcile_repairs_and_counts_in_the_metrics(
    db_kind: str, tmp_path: Path
) -> None:
    async with wired_pair(db_kind, tmp_path, reconcile_interval_seconds=0.01) as pair:
        loop = pair.tma_runtime.extras[EXTRAS_KEY]
        assert isinstance(loop, ReconcileLoop)
        assert loop in pair.tma_runtime.services  # started and stopped with the dispatcher
        linked = await linked_ticket(pair)
        await pair.operator_replies(linked.crm_id, "not delivered yet")
        loop.start()
        try:
            for _ in range(500):  # bounded wait on the condition, not a fixed sleep
                if loop.stats.runs:
                    break
                await asyncio.sleep(0.01)
        finally:
            await loop.stop()
        assert loop.stats.repaired["message"] == 1
        metrics = (await pair.tma.get("/metrics")).text
        assert 'reconcile_repaired_total{kind="message"} 1.0' in metrics
        assert "reconcile_failures_total 0.0" in metrics
        crm_metrics = (await pair.crm.get("/metrics")).text
        assert "reconcile_runs_total 0.0" in crm_metrics  # configured, not started here
