"""The change feed (listChanges): its items, its pages, and the cursor's guarantee that no change
is ever passed over, on SQLite and PostgreSQL (docs/design.md §10)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from generated.models import ChangePage
from integration_kit import changelog
from integration_kit.changelog import Cursor, Position, decode_cursor, log_change
from integration_kit.problems import ProblemError
from integration_kit.schema import ChangeKind
from tests.e2e.helpers import assert_problem, bearer, linked_ticket
from tests.support.pair import CRM_TO_TMA_TOKEN, TMA_TO_CRM_TOKEN, Pair
from tma_impl import tables as tma

AS_CRM = bearer(CRM_TO_TMA_TOKEN)  # the CRM reading the TMA's feed
AS_TMA = bearer(TMA_TO_CRM_TOKEN)
EPOCH = "0123456789abcdef0123456789abcdef"


# --- the cursor ---------------------------------------------------------------------------


def test_a_cursor_reads_back_as_it_was_written() -> None:
    cursor = Cursor(EPOCH, Position(123456, 789))
    assert cursor.encode() == f"1.{EPOCH}.123456.789"
    assert decode_cursor(cursor.encode()) == cursor


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        f"2.{EPOCH}.1.1",  # a version this side does not write
        f"1.{EPOCH[:-1]}.1.1",  # an epoch of the wrong length
        f"1.{EPOCH.upper()}.1.1",
        f"1.{EPOCH}.1",
        f"1.{EPOCH}.1.1.1",
        f"1.{EPOCH}.01.1",  # numbers are written without leading zeros
        f"1.{EPOCH}.1.-1",
        f"1.{EPOCH}.1.{2**63}",  # past a BIGINT
    ],
)
def test_anything_but_a_cursor_is_refused_with_its_own_problem(text: str) -> None:
    with pytest.raises(ProblemError) as refused:
        decode_cursor(text)
    assert refused.value.problem.status == 400
    assert refused.value.problem.type == "urn:tma-crm:problem:cursor-not-valid"


def test_positions_order_by_transaction_then_sequence() -> None:
    # A transaction that took a later seq but has the older xid sorts first: it is the order
    # in which the rows became final, not the order the sequence handed numbers out.
    assert Position(5, 9) < Position(6, 1) < Position(6, 2)


# --- the feed over HTTP ---------------------------------------------------------------------


async def _page(pair: Pair, side: str, after: str | None = None, limit: int = 100) -> ChangePage:
    client, headers = (pair.tma, AS_CRM) if side == "tma" else (pair.crm, AS_TMA)
    params: dict[str, Any] = {"limit": limit}
    if after is not None:
        params["after"] = after
    response = await client.get("/api/integration/changes", params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert "null" not in response.text  # absent optional fields are left out
    return ChangePage.model_validate(response.json())


async def _everything(pair: Pair, side: str, limit: int) -> tuple[list[Any], str]:
    items: list[Any] = []
    cursor = None
    while True:
        page = await _page(pair, side, cursor, limit)
        items += page.items
        cursor = page.next_cursor
        if not page.has_more:
            return items, cursor


async def test_both_feeds_show_what_each_side_holds_with_both_sides_ids(pair: Pair) -> None:
    linked = await linked_ticket(pair, message="first")
    reply = await pair.operator_replies(linked.crm_id, "an answer")
    await pair.sync()
    closed = await pair.crm.post(
        f"/api/crm/tickets/{linked.crm_id}/status",
        json={"status": "closed"},
        headers=pair.operator_headers,
    )
    assert closed.status_code == 200
    await pair.sync()

    tma_items, _ = await _everything(pair, "tma", limit=100)
    kinds = [item.kind.value for item in tma_items]
    # Opened here (ticket and first message), then received: in_progress (the reply's own
    # status event goes before it), the reply, closed.
    assert kinds == ["ticket", "message", "status", "message", "status"]
    ticket = tma_items[0].ticket
    assert str(ticket.external_ticket_id) == linked.tma_id
    assert str(tma_items[0].peer_ticket_id) == linked.crm_id
    assert ticket.customer.telegram_user_id == 4242
    answer = tma_items[3].message
    assert answer.sender.value == "crm"
    assert answer.message == "an answer"
    assert str(tma_items[3].peer_message_id) == reply["id"]  # the CRM's id: the reader's
    assert str(answer.ticket_id) == linked.crm_id
    statuses = [tma_items[2].status, tma_items[4].status]
    assert [status.status.value for status in statuses] == ["in_progress", "closed"]

    crm_items, _ = await _everything(pair, "crm", limit=100)
    assert [item.kind.value for item in crm_items] == kinds
    assert str(crm_items[3].message.external_message_id) == reply["id"]
    assert crm_items[3].message.operator_name == pair.operator_name


async def test_pages_of_one_read_every_change_once_in_order(pair: Pair) -> None:
    ticket = await pair.open_ticket()
    for n in range(4):
        await pair.user_writes(ticket["id"], f"message {n}")
    whole, last = await _everything(pair, "tma", limit=500)
    one_by_one, last_again = await _everything(pair, "tma", limit=1)
    assert [item.position for item in one_by_one] == [item.position for item in whole]
    assert len(whole) == 6  # the ticket, its first message, four more
    assert last == last_again == whole[-1].position
    # Up to date: an empty page that keeps the cursor, until something new is written.
    page = await _page(pair, "tma", last)
    assert (page.items, page.next_cursor, page.has_more) == ([], last, False)
    await pair.user_writes(ticket["id"], "one more")
    page = await _page(pair, "tma", last)
    assert [item.message.message for item in page.items] == ["one more"]


async def test_a_cursor_of_another_epoch_or_past_the_last_change_is_refused(pair: Pair) -> None:
    await pair.open_ticket()
    _, cursor = await _everything(pair, "tma", limit=100)
    foreign = Cursor(uuid.uuid4().hex, decode_cursor(cursor).position).encode()
    response = await pair.tma.get(
        "/api/integration/changes", params={"after": foreign}, headers=AS_CRM
    )
    assert_problem(response, 422, "urn:tma-crm:problem:cursor-epoch-changed")
    # A database restored without `restored`: the peer's cursor lies past what is held.
    ahead = Cursor(decode_cursor(cursor).epoch, Position(2**40, 2**40)).encode()
    response = await pair.tma.get(
        "/api/integration/changes", params={"after": ahead}, headers=AS_CRM
    )
    assert_problem(response, 422, "urn:tma-crm:problem:cursor-epoch-changed")
    response = await pair.tma.get(
        "/api/integration/changes", params={"after": "1.nope.1.1"}, headers=AS_CRM
    )
    assert_problem(response, 400, "urn:tma-crm:problem:cursor-not-valid")
    response = await pair.tma.get("/api/integration/changes", params={"limit": 501}, headers=AS_CRM)
    assert_problem(response, 422, "urn:tma-crm:problem:validation")
    response = await pair.tma.get("/api/integration/changes")
    assert_problem(response, 401, "urn:tma-crm:problem:unauthorized")


async def test_restored_draws_a_new_epoch_so_old_cursors_start_over(pair: Pair) -> None:
    await pair.open_ticket()
    _, cursor = await _everything(pair, "tma", limit=100)
    async with pair.tma_runtime.db.transaction() as session:
        await changelog.write_state(
            session, tma.FeedState, changelog.PEER_CURSOR, "saved", now=pair.clock.now()
        )
        await changelog.restored(session, tma.FeedState, now=pair.clock.now())
    response = await pair.tma.get(
        "/api/integration/changes", params={"after": cursor}, headers=AS_CRM
    )
    assert_problem(response, 422, "urn:tma-crm:problem:cursor-epoch-changed")
    async with pair.tma_runtime.db.transaction() as session:
        assert await changelog.read_state(session, tma.FeedState, changelog.PEER_CURSOR) is None
    restarted, _ = await _everything(pair, "tma", limit=100)
    assert len(restarted) == 2  # everything again, under the new epoch
    assert decode_cursor(restarted[0].position).epoch != decode_cursor(cursor).epoch


async def test_a_transaction_that_commits_out_of_order_is_never_skipped(
    pair: Pair, db_kind: str
) -> None:
    """On PostgreSQL, T1 takes its sequence number first and commits last. A reader that follows
    seq alone would pass T2's later number before T1's row is visible and never see it; the
    feed holds back everything from T1's transaction id on until T1 has ended."""
    if db_kind != "postgresql":
        pytest.skip("SQLite has one writer: commit order is sequence order")
    ticket = await pair.open_ticket()
    ticket_id = uuid.UUID(ticket["id"])
    _, start = await _everything(pair, "tma", limit=100)
    db = pair.tma_runtime.db
    async with db.sessions() as first, db.sessions() as second:
        # T1 writes its log row (taking the lower seq and an xid), T2 then does the same.
        await log_change(first, tma.ChangeLog, kind=ChangeKind.ticket, ticket_id=ticket_id)
        await log_change(second, tma.ChangeLog, kind=ChangeKind.ticket, ticket_id=ticket_id)
        await second.commit()  # T2 commits first

        seqs = (await second.execute(tma.ChangeLog.__table__.select())).all()
        assert len(seqs) == 3  # T2's row is committed and visible (T1's is not)
        page = await _page(pair, "tma", start)
        assert (page.items, page.next_cursor) == ([], start)  # held back, not skipped

        await first.commit()
    page = await _page(pair, "tma", start)
    assert len(page.items) == 2  # both, T1's first: its transaction id is the older one
    positions = [decode_cursor(item.position).position for item in page.items]
    assert positions[0].seq < positions[1].seq
    assert positions == sorted(positions)


async def test_a_sequence_number_taken_later_by_an_older_transaction_is_not_skipped(
    pair: Pair, db_kind: str
) -> None:
    """The other interleaving: T1 has the older transaction id but takes the later seq. Ordered
    by (xid, seq) below the oldest open transaction, its row still comes after the cursor."""
    if db_kind != "postgresql":
        pytest.skip("SQLite has one writer: commit order is sequence order")
    ticket = await pair.open_ticket()
    ticket_id = uuid.UUID(ticket["id"])
    _, start = await _everything(pair, "tma", limit=100)
    db = pair.tma_runtime.db
    async with db.sessions() as first, db.sessions() as second:
        await changelog.write_state(first, tma.FeedState, "probe", "x", now=pair.clock.now())
        await log_change(second, tma.ChangeLog, kind=ChangeKind.ticket, ticket_id=ticket_id)
        await second.commit()
        page = await _page(pair, "tma", start)
        assert page.items == []  # T2's row waits behind T1, which is still open
        await log_change(first, tma.ChangeLog, kind=ChangeKind.ticket, ticket_id=ticket_id)
        await first.commit()
    page = await _page(pair, "tma", start)
    positions = [decode_cursor(item.position).position for item in page.items]
    assert len(positions) == 2
    assert positions[0].seq > positions[1].seq  # T1's row, with the later seq, comes first
