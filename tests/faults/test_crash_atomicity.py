"""A delivery whose request fails after its first write leaves nothing behind, on SQLite too, so
the sender's retry stores the message together with everything that belongs to it.

Found by the fault harness: an operator reply reached the TMA while its API process was killed
mid-request. SQLite had committed the message on its own (the driver began no transaction before
the savepoint around the insert, so releasing the savepoint committed it), the notification
that belonged in the same transaction never was, and the CRM's retry found the message stored:
the user was never told of the reply.
"""

from __future__ import annotations

import pytest

from tests.support.pair import Pair
from tma_impl.integration import endpoints as tma_endpoints


async def test_a_reply_whose_request_failed_midway_is_stored_and_notified_once_on_retry(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticket = await pair.open_ticket()
    await pair.sync()
    crm_ticket = await pair.crm_ticket_for(ticket["id"])
    await pair.operator_replies(crm_ticket["id"], "We are on it.")

    def crash(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the process died here (injected)")

    # The TMA's request fails after the message is inserted, before its notification is.
    monkeypatch.setattr(tma_endpoints, "enqueue_reply_notification", crash)
    await pair.crm_runtime.dispatcher.run_once()
    bodies = [m["body"] for m in (await pair.conversation_in_tma(ticket["id"]))["messages"]]
    assert bodies == ["I paid but the order is unpaid."]

    monkeypatch.undo()
    pair.clock.advance(60)  # the retry is due
    await pair.sync()
    bodies = [m["body"] for m in (await pair.conversation_in_tma(ticket["id"]))["messages"]]
    assert bodies == ["I paid but the order is unpaid.", "We are on it."]
    assert len(pair.bot.calls_for(4242)) == 1
