"""The Mini App's user API (/api/support): initData auth, privacy between users, idempotent
writes with client ids, and close/reopen reaching the CRM."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from crm_impl import tables as crm
from tests.e2e.helpers import assert_problem, count, http_layer_only, linked_ticket, rows
from tests.support.pair import Pair
from tests.tma_impl.telegram.fake_bot_api import FAKE_BOT_TOKEN
from tma_impl import tables as tma
from tma_impl.telegram import TelegramUser, mint_init_data

UNAUTHORIZED = "urn:tma-crm:problem:unauthorized"
ANNA = TelegramUser(id=4242, first_name="Anna", username="anna_test", language_code="en")


def _tma_header(init_data: str) -> dict[str, str]:
    return {"Authorization": f"tma {init_data}"}


def _new_ticket(**overrides: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "subject": "Payment failed",
        "message": "I paid but the order is unpaid.",
        "message_id": str(uuid.uuid4()),
        "attachments": [],
        **overrides,
    }


@http_layer_only
async def test_missing_forged_or_expired_initdata_is_401(pair: Pair) -> None:
    """Only initData signed with the bot's token and fresh enough opens the API."""
    now = pair.clock.now()
    signed = mint_init_data(bot_token=FAKE_BOT_TOKEN, user=ANNA, auth_date=now)
    as_someone_else = signed.replace("4242", "4243")  # the user changed after signing
    refused: dict[str, dict[str, str]] = {
        "no header": {},
        "empty initData": {"Authorization": "tma "},
        "another scheme": {"Authorization": f"Bearer {signed}"},
        "garbage": _tma_header("user=%7B%7D&hash=00"),
        "another bot": _tma_header(
            mint_init_data(bot_token="999:another-bot-token", user=ANNA, auth_date=now)
        ),
        "tampered": _tma_header(as_someone_else),
        "expired": _tma_header(
            mint_init_data(
                bot_token=FAKE_BOT_TOKEN, user=ANNA, auth_date=now - timedelta(hours=24, seconds=5)
            )
        ),
    }
    for why, headers in refused.items():
        listing = await pair.tma.get("/api/support/tickets", headers=headers)
        assert_problem(listing, 401, UNAUTHORIZED)
        assert listing.headers["www-authenticate"] == "tma", why
        created = await pair.tma.post("/api/support/tickets", json=_new_ticket(), headers=headers)
        assert_problem(created, 401, UNAUTHORIZED)
    assert await count(pair.tma_runtime, tma.Ticket) == 0

    # Just inside the freshness limit still works: the limit, not the signature, refused above.
    fresh_enough = mint_init_data(
        bot_token=FAKE_BOT_TOKEN, user=ANNA, auth_date=now - timedelta(hours=23)
    )
    assert (
        await pair.tma.get("/api/support/tickets", headers=_tma_header(fresh_enough))
    ).is_success


async def test_a_user_cannot_see_or_touch_another_users_ticket(pair: Pair) -> None:
    """Someone else's ticket answers 404, exactly like one that does not exist."""
    ticket = await pair.open_ticket(user_id=4242)
    boris = pair.user_headers(user_id=5151, first_name="Boris")
    base = f"/api/support/tickets/{ticket['id']}"

    assert_problem(await pair.tma.get(base, headers=boris), 404)
    write = {"id": str(uuid.uuid4()), "message": "hijack"}
    assert_problem(await pair.tma.post(f"{base}/messages", json=write, headers=boris), 404)
    close = {"status": "closed"}
    assert_problem(await pair.tma.post(f"{base}/status", json=close, headers=boris), 404)
    assert (await pair.tma.get("/api/support/tickets", headers=boris)).json()["tickets"] == []

    mine = (await pair.tma.get("/api/support/tickets", headers=pair.user_headers())).json()
    assert [t["id"] for t in mine["tickets"]] == [ticket["id"]]
    assert await count(pair.tma_runtime, tma.Message) == 1
    assert (await pair.conversation_in_tma(ticket["id"]))["ticket"]["status"] == "open"


async def test_retried_ticket_creation_creates_one_ticket(pair: Pair) -> None:
    """The same client ids sent again (a flaky mobile network) answer 200 with the same ticket:
    one ticket, one message, one event for the CRM; reusing the id for other content is 409."""
    body = _new_ticket()
    first = await pair.tma.post("/api/support/tickets", json=body, headers=pair.user_headers())
    retry = await pair.tma.post("/api/support/tickets", json=body, headers=pair.user_headers())

    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json() == first.json()
    assert await count(pair.tma_runtime, tma.Ticket) == 1
    assert await count(pair.tma_runtime, tma.Message) == 1
    assert await count(pair.tma_runtime, tma.Outbox) == 1
    other = {**body, "subject": "Something else"}
    conflict = await pair.tma.post("/api/support/tickets", json=other, headers=pair.user_headers())
    assert_problem(conflict, 409)

    await pair.sync()
    await pair.crm_ticket_for(body["id"])  # exactly one in the CRM
    assert await count(pair.crm_runtime, crm.Message) == 1


async def test_retried_message_creates_one_message(pair: Pair) -> None:
    """A message sent again with its client id answers 200 with the same message, stored and
    delivered once."""
    linked = await linked_ticket(pair)
    url = f"/api/support/tickets/{linked.tma_id}/messages"
    body = {"id": str(uuid.uuid4()), "message": "Any news?"}
    first = await pair.tma.post(url, json=body, headers=pair.user_headers())
    retry = await pair.tma.post(url, json=body, headers=pair.user_headers())

    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json() == first.json()
    assert await count(pair.tma_runtime, tma.Message) == 2
    assert await count(pair.tma_runtime, tma.Outbox, tma.Outbox.kind == "message") == 1
    changed = {**body, "message": "Different text"}
    assert_problem(await pair.tma.post(url, json=changed, headers=pair.user_headers()), 409)

    await pair.sync()
    bodies = [m["body"] for m in (await pair.conversation_in_crm(linked.crm_id))["messages"]]
    assert bodies == ["I paid but the order is unpaid.", "Any news?"]


async def test_close_and_reopen_from_the_mini_app_reach_the_crm(pair: Pair) -> None:
    """The user closes the ticket, then reopens it; the CRM follows each change."""
    linked = await linked_ticket(pair)
    url = f"/api/support/tickets/{linked.tma_id}/status"
    for status in ("closed", "open"):
        changed = await pair.tma.post(url, json={"status": status}, headers=pair.user_headers())
        assert changed.status_code == 200, changed.text
        assert changed.json()["status"] == status
        await pair.sync()
        assert (await pair.conversation_in_crm(linked.crm_id))["ticket"]["status"] == status
    [tma_ticket] = await rows(pair.tma_runtime, tma.Ticket)
    [crm_ticket] = await rows(pair.crm_runtime, crm.Ticket)
    assert tma_ticket.status_changed_at == crm_ticket.status_changed_at


@http_layer_only
async def test_a_user_may_not_set_in_progress(pair: Pair) -> None:
    """Only support moves a ticket to in_progress: the user API refuses it with 422."""
    ticket = await pair.open_ticket()
    response = await pair.tma.post(
        f"/api/support/tickets/{ticket['id']}/status",
        json={"status": "in_progress"},
        headers=pair.user_headers(),
    )
    assert_problem(response, 422, "urn:tma-crm:problem:validation")


@http_layer_only
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subject", ""),
        ("subject", "s" * 256),
        ("message", "m" * 4097),
        (
            "attachments",
            [
                {
                    "url": "https://api.telegram.org/file/bot123:SECRET/doc.pdf",
                    "file_name": "doc.pdf",
                    "mime_type": "application/pdf",
                    "size": 10,
                }
            ],
        ),
    ],
)
async def test_invalid_ticket_is_422_and_not_stored(pair: Pair, field: str, value: Any) -> None:
    """Bounds of the contract and the Telegram file URL rule hold at the Mini App's door too."""
    response = await pair.tma.post(
        "/api/support/tickets", json=_new_ticket(**{field: value}), headers=pair.user_headers()
    )
    problem = assert_problem(response, 422, "urn:tma-crm:problem:validation")
    assert any(field in error.loc for error in problem.errors or [])
    assert await count(pair.tma_runtime, tma.Ticket) == 0
    assert await count(pair.tma_runtime, tma.Outbox) == 0
