"""The Mini App's tickets list: newest activity first, cursor pages, and unread operator replies
counted after the user's read marker."""

from __future__ import annotations

from typing import Any

from tests.e2e.helpers import assert_problem, linked_ticket
from tests.support.pair import Pair

TICKETS = "/api/support/tickets"


async def listing(pair: Pair, **params: Any) -> dict[str, Any]:
    response = await pair.tma.get(TICKETS, params=params, headers=pair.user_headers())
    assert response.status_code == 200, response.text
    return dict(response.json())


async def test_pages_walk_every_ticket_once_newest_activity_first(pair: Pair) -> None:
    opened = []
    for n in range(7):
        opened.append((await pair.open_ticket(subject=f"Ticket {n}"))["id"])
        pair.clock.advance(1)
    await pair.user_writes(opened[2], "news on an old ticket")  # now the newest activity

    seen: list[str] = []
    page = await listing(pair, limit=3)
    while True:
        seen += [t["id"] for t in page["tickets"]]
        if page["next_cursor"] is None:
            break
        page = await listing(pair, limit=3, after=page["next_cursor"])

    expected = [opened[2]] + [t for t in reversed(opened) if t != opened[2]]
    assert seen == expected


async def test_a_cursor_not_made_by_the_api_is_refused(pair: Pair) -> None:
    response = await pair.tma.get(
        TICKETS, params={"after": "not-a-cursor"}, headers=pair.user_headers()
    )
    assert_problem(response, 422, "urn:tma-crm:problem:validation")


async def test_unread_counts_operator_replies_until_the_user_reads_them(pair: Pair) -> None:
    linked = await linked_ticket(pair)
    await pair.operator_replies(linked.crm_id, "Looking into it.")
    await pair.operator_replies(linked.crm_id, "Found it.")
    await pair.sync()
    await pair.user_writes(linked.tma_id, "Thanks")  # the user's own messages are never unread
    [ticket] = (await listing(pair))["tickets"]
    assert ticket["unread"] == 2

    conversation = await pair.conversation_in_tma(linked.tma_id)
    read = f"{TICKETS}/{linked.tma_id}/read"
    after_first_reply = conversation["messages"][1]["seq"]
    answer = await pair.tma.post(read, json={"seq": after_first_reply}, headers=pair.user_headers())
    assert answer.json() == {"seq": after_first_reply}
    assert (await listing(pair))["tickets"][0]["unread"] == 1

    # Past the end is clamped to the last event; backwards never moves the marker back.
    last = conversation["last_seq"]
    answer = await pair.tma.post(read, json={"seq": last + 50}, headers=pair.user_headers())
    assert answer.json() == {"seq": last}
    await pair.tma.post(read, json={"seq": 1}, headers=pair.user_headers())
    assert (await listing(pair))["tickets"][0]["unread"] == 0

    await pair.operator_replies(linked.crm_id, "Fixed.")
    await pair.sync()
    assert (await listing(pair))["tickets"][0]["unread"] == 1
    other = await pair.tma.post(read, json={"seq": last}, headers=pair.user_headers(user_id=7))
    assert_problem(other, 404)


async def test_the_conversation_lists_status_changes_with_their_numbers(pair: Pair) -> None:
    linked = await linked_ticket(pair)
    await pair.crm.post(
        f"/api/crm/tickets/{linked.crm_id}/status",
        json={"status": "in_progress"},
        headers=pair.operator_headers,
    )
    await pair.sync()
    await pair.tma.post(
        f"{TICKETS}/{linked.tma_id}/status", json={"status": "closed"}, headers=pair.user_headers()
    )
    conversation = await pair.conversation_in_tma(linked.tma_id)
    assert [(c["seq"], c["status"]) for c in conversation["status_changes"]] == [
        (2, "in_progress"),
        (3, "closed"),
    ]
    assert conversation["last_seq"] == 3
