"""Regressions of a black-box run: correctly signed initData whose user lies outside Telegram's
ranges answered 500 on SQLite and PostgreSQL (an id overflowing the BIGINT column; display fields
that made building the contract's Customer raise). Now an impossible id is 401 and odd display
fields are made to fit, so the ticket still reaches the CRM."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from crm_impl import tables as crm
from tests.e2e.helpers import assert_problem, count, rows
from tests.support.pair import Pair
from tests.tma_impl.telegram.fake_bot_api import FAKE_BOT_TOKEN
from tests.tma_impl.telegram.test_initdata import signed_query
from tma_impl import tables as tma

UNAUTHORIZED = "urn:tma-crm:problem:unauthorized"


def signed_header(pair: Pair, user: dict[str, Any]) -> dict[str, str]:
    """initData carrying exactly this user object, correctly signed with the bot's token."""
    fields = {
        "auth_date": str(int(pair.clock.now().timestamp())),
        "user": json.dumps(user),  # ASCII: a lone surrogate travels as a JSON escape
    }
    return {"Authorization": f"tma {signed_query(fields, bot_token=FAKE_BOT_TOKEN)}"}


def new_ticket() -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "subject": "Payment failed",
        "message": "I paid but the order is unpaid.",
        "message_id": str(uuid.uuid4()),
    }


@pytest.mark.parametrize(
    "user_id",
    [
        2**63,  # overflowed SQLite's INTEGER and PostgreSQL's BIGINT: 500 before
        2**53,  # above the contract's Customer maximum: 500 while building createTicket
        2**52,  # above Telegram's documented 52 significant bits
        10**30,
    ],
)
async def test_a_user_id_outside_telegrams_range_is_401(pair: Pair, user_id: int) -> None:
    headers = signed_header(pair, {"id": user_id, "first_name": "Anna"})
    listing = await pair.tma.get("/api/support/tickets", headers=headers)
    problem = assert_problem(listing, 401, UNAUTHORIZED)
    assert problem.detail == (
        "Telegram initData refused: invalid user: id is outside Telegram's range."
    )
    created = await pair.tma.post("/api/support/tickets", json=new_ticket(), headers=headers)
    assert_problem(created, 401, UNAUTHORIZED)
    assert await count(pair.tma_runtime, tma.TelegramUser) == 0


async def test_the_largest_telegram_id_opens_a_ticket_that_reaches_the_crm(pair: Pair) -> None:
    headers = signed_header(pair, {"id": 2**52 - 1, "first_name": "Anna"})
    created = await pair.tma.post("/api/support/tickets", json=new_ticket(), headers=headers)
    assert created.status_code == 201, created.text
    await pair.sync()
    (ticket,) = await rows(pair.crm_runtime, crm.Ticket)
    assert ticket.customer_telegram_id == 2**52 - 1


ODD_USERS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # what initData says -> what the CRM stores of the customer
    "names too long": (
        {"id": 11, "first_name": "Ä" * 300, "last_name": "b" * 65},
        {"customer_first_name": "Ä" * 64, "customer_last_name": "b" * 64},
    ),
    "NUL and lone surrogates": (
        {"id": 12, "first_name": "\x00", "last_name": "x\ud800y\x00"},
        {"customer_first_name": "\ufffd", "customer_last_name": "x\ufffdy\ufffd"},
    ),
    "username not a Telegram username": (
        {"id": 13, "first_name": "A", "username": "anna ivanova!"},
        {"customer_username": None},
    ),
    "username too long": (
        {"id": 14, "first_name": "A", "username": "a" * 33},
        {"customer_username": None},
    ),
    "language code not a language tag": (
        {"id": 15, "first_name": "A", "language_code": "e"},
        {"customer_language": None},
    ),
    "language code too long": (
        {"id": 16, "first_name": "A", "language_code": "en-" + "x" * 33},
        {"customer_language": None},
    ),
    "empty optional fields": (
        {"id": 17, "first_name": "A", "last_name": "", "username": "", "language_code": ""},
        {"customer_last_name": None, "customer_username": None, "customer_language": None},
    ),
}


@pytest.mark.parametrize("case", ODD_USERS, ids=list(ODD_USERS))
async def test_odd_display_fields_are_made_to_fit_and_the_ticket_reaches_the_crm(
    pair: Pair, case: str
) -> None:
    user, stored = ODD_USERS[case]
    headers = signed_header(pair, user)
    created = await pair.tma.post("/api/support/tickets", json=new_ticket(), headers=headers)
    assert created.status_code == 201, created.text
    listing = await pair.tma.get("/api/support/tickets", headers=headers)
    assert listing.status_code == 200
    await pair.sync()
    (ticket,) = await rows(pair.crm_runtime, crm.Ticket)
    assert ticket.customer_telegram_id == user["id"]
    assert {name: getattr(ticket, name) for name in stored} == stored
