"""The whole conversation across both backends over HTTP: ids linked both ways, nothing lost."""

from __future__ import annotations

from tests.support.pair import Pair


async def test_a_conversation_flows_both_ways_with_ids_linked(pair: Pair) -> None:
    attachment = {
        "url": "https://files.example.com/receipt.png",
        "file_name": "receipt.png",
        "mime_type": "image/png",
        "size": 48213,
    }
    ticket = await pair.open_ticket(attachments=[attachment])
    await pair.sync()
    crm_ticket = await pair.crm_ticket_for(ticket["id"])
    assert crm_ticket["subject"] == "Payment failed"

    reply = await pair.operator_replies(crm_ticket["id"], "We see it, fixing now.")
    await pair.sync()
    await pair.user_writes(ticket["id"], "Thank you!")
    await pair.sync()
    closed = await pair.crm.post(
        f"/api/crm/tickets/{crm_ticket['id']}/status",
        json={"status": "closed"},
        headers=pair.operator_headers,
    )
    assert closed.status_code == 200
    await pair.sync()

    in_tma = await pair.conversation_in_tma(ticket["id"])
    in_crm = await pair.conversation_in_crm(crm_ticket["id"])
    assert (
        [m["body"] for m in in_tma["messages"]]
        == [m["body"] for m in in_crm["messages"]]
        == [
            "I paid but the order is unpaid.",
            "We see it, fixing now.",
            "Thank you!",
        ]
    )
    assert [m["sender_type"] for m in in_crm["messages"]] == ["tma", "crm", "tma"]
    assert in_tma["ticket"]["status"] == in_crm["ticket"]["status"] == "closed"
    assert in_tma["ticket"]["synced"] is True
    assert all(m["delivered"] for m in in_tma["messages"])
    assert in_crm["messages"][0]["attachments"] == [attachment]
    # Linked both ways: every CRM message knows the TMA's id of it.
    assert all(m["external_message_id"] for m in in_crm["messages"])
    assert in_crm["messages"][1]["id"] == reply["id"]
    # The user was told of the reply through the bot, with a button into the Mini App.
    calls = pair.bot.calls_for(4242)
    assert len(calls) == 1
    assert "We see it, fixing now." in calls[0].text
