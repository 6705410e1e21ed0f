"""The CRM's operator API (/api/crm): per-operator tokens made and revoked on the command line,
ticket lists and filters, and replies that carry the operator's name to the Mini App."""

from __future__ import annotations

import re
import uuid

import pytest

from crm_impl import tables as crm
from crm_impl.cli import COMMANDS as CRM_COMMANDS
from crm_impl.cli import add_operator
from tests.e2e.helpers import (
    AS_TMA,
    assert_problem,
    bearer,
    count,
    http_layer_only,
    linked_ticket,
    rows,
    run_cli,
)
from tests.support.pair import Pair
from tma_impl import tables as tma

UNAUTHORIZED = "urn:tma-crm:problem:unauthorized"


@pytest.fixture
def crm_cli_env(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point `python -m crm_impl` at the test's CRM database."""
    monkeypatch.setenv("CRM_DATABASE_URL", pair.crm_runtime.settings.database_url)
    monkeypatch.setenv("CRM_ENVIRONMENT", "development")


@http_layer_only
async def test_operator_api_refuses_requests_without_an_operator_token(pair: Pair) -> None:
    """No token, an unknown one, or the TMA's integration token: 401 problem+json."""
    await linked_ticket(pair)
    for headers in ({}, bearer("op_not-a-real-token"), AS_TMA, {"Authorization": "Bearer"}):
        for method, url in (("GET", "/api/crm/tickets"), ("GET", "/api/crm/me")):
            response = await pair.crm.request(method, url, headers=headers)
            assert_problem(response, 401, UNAUTHORIZED)
    assert (await pair.crm.get("/api/crm/me", headers=pair.operator_headers)).json()[
        "name"
    ] == pair.operator_name


@pytest.mark.usefixtures("crm_cli_env")
async def test_operator_tokens_are_made_and_revoked_on_the_command_line(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    """`operators add` prints a token once (stored only hashed); after `operators revoke` it
    opens nothing, while other operators keep working."""
    assert await run_cli(CRM_COMMANDS, ["operators", "add", "Boris"]) == 0
    out = capsys.readouterr().out
    operator_id = re.search(r"id ([0-9a-f-]{36})", out)
    token = re.search(r"token \(shown once, keep it secret\): (\S+)", out)
    assert operator_id is not None
    assert token is not None
    boris = bearer(token.group(1))
    me = await pair.crm.get("/api/crm/me", headers=boris)
    assert me.json() == {"id": operator_id.group(1), "name": "Boris", "is_admin": False}
    [stored] = await rows(pair.crm_runtime, crm.Operator, crm.Operator.name == "Boris")
    assert token.group(1) not in (stored.token_hash, stored.name)

    assert await run_cli(CRM_COMMANDS, ["operators", "revoke", operator_id.group(1)]) == 0
    assert "operator Boris revoked" in capsys.readouterr().out

    assert_problem(await pair.crm.get("/api/crm/me", headers=boris), 401, UNAUTHORIZED)
    assert_problem(await pair.crm.get("/api/crm/tickets", headers=boris), 401, UNAUTHORIZED)
    assert (await pair.crm.get("/api/crm/me", headers=pair.operator_headers)).is_success
    assert await run_cli(CRM_COMMANDS, ["operators", "list"]) == 0
    listing = capsys.readouterr().out
    assert re.search(rf"{operator_id.group(1)}\s+revoked \d{{4}}-\d\d-\d\d\s+Boris", listing)
    assert re.search(r"\sactive\s+Maria", listing)


@pytest.mark.usefixtures("crm_cli_env")
async def test_revoking_an_unknown_operator_is_a_readable_error(
    pair: Pair, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await run_cli(CRM_COMMANDS, ["operators", "revoke", "nobody"]) == 2
    assert capsys.readouterr().err.strip() == ("error: 'nobody' is not an operator id (a UUID)")
    missing = str(uuid.uuid4())
    assert await run_cli(CRM_COMMANDS, ["operators", "revoke", missing]) == 2
    assert capsys.readouterr().err.strip() == f"error: no operator {missing}"


async def test_tickets_are_listed_and_filtered_by_status_and_mine(pair: Pair) -> None:
    """Operators filter by status and by what is theirs; replying or assigning makes it theirs."""
    answered = await linked_ticket(pair, subject="Answered by Maria")
    taken = await linked_ticket(pair, subject="Taken by Boris")
    done = await linked_ticket(pair, subject="Closed")
    await linked_ticket(pair, subject="Nobody yet")
    boris, boris_token = await add_operator(pair.crm_runtime.db, "Boris", now=pair.clock.now())
    as_boris = bearer(boris_token)
    await pair.operator_replies(answered.crm_id, "On it")
    assigned = await pair.crm.post(f"/api/crm/tickets/{taken.crm_id}/assign", headers=as_boris)
    assert assigned.json()["assignee_id"] == str(boris.id)
    closed = await pair.crm.post(
        f"/api/crm/tickets/{done.crm_id}/status",
        json={"status": "closed"},
        headers=pair.operator_headers,
    )
    assert closed.status_code == 200

    async def subjects(query: str, headers: dict[str, str]) -> set[str]:
        response = await pair.crm.get(f"/api/crm/tickets{query}", headers=headers)
        assert response.status_code == 200, response.text
        return {ticket["subject"] for ticket in response.json()}

    maria = pair.operator_headers
    assert await subjects("", maria) == {
        "Answered by Maria",
        "Taken by Boris",
        "Closed",
        "Nobody yet",
    }
    assert await subjects("?status=open", maria) == {"Taken by Boris", "Nobody yet"}
    assert await subjects("?status=in_progress", maria) == {"Answered by Maria"}
    assert await subjects("?status=closed", maria) == {"Closed"}
    assert await subjects("?mine=true", maria) == {"Answered by Maria"}
    assert await subjects("?mine=true", as_boris) == {"Taken by Boris"}
    assert await subjects("?mine=true&status=open", as_boris) == {"Taken by Boris"}
    assert await subjects("?mine=true&status=closed", as_boris) == set()
    page = await pair.crm.get("/api/crm/tickets?limit=2&offset=1", headers=maria)
    assert len(page.json()) == 2
    assert_problem(await pair.crm.get("/api/crm/tickets?status=reopened", headers=maria), 422)


async def test_reply_carries_the_operators_name_to_the_mini_app(pair: Pair) -> None:
    """The Mini App stores and shows who answered: each reply carries its operator's name."""
    linked = await linked_ticket(pair)
    _boris, boris_token = await add_operator(pair.crm_runtime.db, "Boris", now=pair.clock.now())
    await pair.operator_replies(linked.crm_id, "Hello from Maria")
    by_boris = await pair.crm.post(
        f"/api/crm/tickets/{linked.crm_id}/messages",
        json={"message": "And Boris here"},
        headers=bearer(boris_token),
    )
    assert by_boris.status_code == 201
    await pair.sync()

    replies = await rows(
        pair.tma_runtime, tma.Message, tma.Message.sender_type == "crm", order_by=tma.Message.seq
    )
    assert [(m.body, m.operator_name) for m in replies] == [
        ("Hello from Maria", "Maria"),
        ("And Boris here", "Boris"),
    ]
    shown = (await pair.conversation_in_tma(linked.tma_id))["messages"]
    assert [m["operator_name"] for m in shown] == [None, "Maria", "Boris"]
    in_crm = (await pair.conversation_in_crm(linked.crm_id))["messages"]
    assert [m["author_name"] for m in in_crm] == [None, "Maria", "Boris"]
    assert "Boris" in pair.bot.calls_for(4242)[-1].text


async def test_retried_reply_with_a_client_id_is_stored_once(pair: Pair) -> None:
    """An operator reply sent twice with the same id is one reply, delivered once."""
    linked = await linked_ticket(pair)
    body = {"id": str(uuid.uuid4()), "message": "Sent twice"}
    url = f"/api/crm/tickets/{linked.crm_id}/messages"
    first = await pair.crm.post(url, json=body, headers=pair.operator_headers)
    retry = await pair.crm.post(url, json=body, headers=pair.operator_headers)
    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json() == first.json()
    assert await count(pair.crm_runtime, crm.Outbox, crm.Outbox.kind == "message") == 1
    await pair.sync()
    assert [m.body for m in await rows(pair.tma_runtime, tma.Message)].count("Sent twice") == 1


async def test_operator_reopens_a_closed_ticket_and_the_mini_app_follows(pair: Pair) -> None:
    """Status changes made by operators reach the Mini App both ways: closed, then open."""
    linked = await linked_ticket(pair)
    for status in ("closed", "open"):
        changed = await pair.crm.post(
            f"/api/crm/tickets/{linked.crm_id}/status",
            json={"status": status},
            headers=pair.operator_headers,
        )
        assert changed.status_code == 200
        await pair.sync()
        assert (await pair.conversation_in_tma(linked.tma_id))["ticket"]["status"] == status
    assert_problem(
        await pair.crm.post(
            f"/api/crm/tickets/{uuid.uuid4()}/status",
            json={"status": "closed"},
            headers=pair.operator_headers,
        ),
        404,
    )
