"""The shape of delivery's database work: a dispatch round costs the same few statements for 5
events or 50, and a received message a fixed few. Statements per event were what made a
10,000-event backlog take 50 s to drain; `make bench` measures the time, these keep the shape."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from integration_kit.runtime import Runtime
from tests.support.pair import Pair


@contextmanager
def statements_of(runtime: Runtime) -> Iterator[list[str]]:
    """The SQL statements `runtime`'s database runs meanwhile (an executemany counts once)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    engine = runtime.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


async def new_tickets_with_messages(pair: Pair, tickets: int, messages_each: int) -> None:
    """Tickets the CRM has not heard of yet, each with messages behind its creation: the round
    that delivers them also learns every ticket's link."""
    for n in range(tickets):
        ticket = await pair.open_ticket(subject=f"Ticket {n}")
        for m in range(messages_each):
            await pair.user_writes(ticket["id"], f"{n}.{m}")


async def test_a_round_costs_the_same_statements_for_few_events_or_many(pair: Pair) -> None:
    dispatcher = pair.tma_runtime.dispatcher
    await new_tickets_with_messages(pair, 1, 1)
    await pair.sync()  # the first round after start also wakes backed-off events; not measured

    counts = {}
    for tickets in (1, 10):
        await new_tickets_with_messages(pair, tickets, 4)
        with statements_of(pair.tma_runtime) as seen:
            delivered = await dispatcher.run_once()
        assert delivered == tickets * 5  # the ticket and its four messages, in one round
        counts[delivered] = len(seen)
        await pair.sync()  # the CRM's side of it, outside the count

    assert counts[50] == counts[5], counts
    # Claim: 6. Settle, per kind of event (here two): a savepoint and up to three writes; then
    # one UPDATE marks them all delivered.
    assert counts[50] <= 6 + 2 * 5 + 1, counts


async def test_a_received_message_costs_a_fixed_few_statements(pair: Pair) -> None:
    ticket = await pair.open_ticket()
    await pair.sync()
    for n in range(20):
        await pair.user_writes(ticket["id"], f"message {n}")
    with statements_of(pair.crm_runtime) as seen:
        assert await pair.tma_runtime.dispatcher.run_once() == 20
    # Per message: find the ticket, insert the message (duplicates fall away on its key), its
    # change-log row for the change feed (docs/design.md §10: written in the same transaction,
    # so the feed never misses a stored message), update the ticket. Nothing is read first to
    # find out whether it is a duplicate, and a replay writes no log row.
    assert len(seen) == 20 * 4, seen[:6]
