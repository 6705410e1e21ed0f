"""The console's side of the operator API: sessions in a cookie with CSRF protection, admin-only
replay and skip, the queue's filters and unread counts, and each reply's delivery state."""

from __future__ import annotations

import hashlib
import re
from contextlib import aclosing
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import delete, update

from crm_impl import tables as crm
from crm_impl.app import build_runtime, create_app
from crm_impl.cli import COMMANDS as CRM_COMMANDS
from crm_impl.cli import add_operator
from crm_impl.settings import CrmSettings
from integration_kit.schema import OutboxState
from tests.e2e.helpers import assert_problem, bearer, linked_ticket, rows, run_cli
from tests.support.pair import Pair

ORIGIN = {"Origin": "http://crm.test"}
FORBIDDEN = "urn:tma-crm:problem:forbidden"
UNAUTHORIZED = "urn:tma-crm:problem:unauthorized"


async def signed_in(pair: Pair, token: str | None = None) -> tuple[httpx.AsyncClient, str]:
    """A client holding a console session cookie, and the page's CSRF token."""
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=pair.crm_app), base_url="http://crm.test"
    )
    response = await client.post(
        "/console/sign-in", data={"token": token or pair.operator_token}, headers=ORIGIN
    )
    assert response.status_code == 303, response.text
    page = await client.get("/console/")
    found = re.search(r'name="csrf-token" content="([0-9a-f]{64})"', page.text)
    assert found is not None, page.text[:500]
    return client, found.group(1)


async def test_sign_in_gives_a_strict_httponly_cookie_whose_id_is_stored_only_hashed(
    pair: Pair,
) -> None:
    client, _csrf = await signed_in(pair)
    async with aclosing(client):
        first = client.cookies["crm_console"]
        response = await client.post(
            "/console/sign-in", data={"token": pair.operator_token}, headers=ORIGIN
        )
        cookie = client.cookies["crm_console"]
        assert cookie != first  # a new id at every sign-in, replacing the old session
        set_cookie = response.headers["set-cookie"]
        assert "HttpOnly" in set_cookie
        assert "SameSite=strict" in set_cookie
        assert "Secure" not in set_cookie  # development serves plain http on loopback
        stored = await rows(pair.crm_runtime, crm.ConsoleSession)
        assert [s.id_hash for s in stored] == [hashlib.sha256(cookie.encode()).hexdigest()]
        me = await client.get("/api/crm/me")
        assert me.json()["name"] == pair.operator_name


async def test_production_cookies_are_secure(pair: Pair) -> None:
    settings = CrmSettings(
        environment="production",
        database_url=pair.crm_runtime.settings.database_url,
        inbound_tokens=["a-real-secret-of-the-tma-side-0123456789"],
        peer_url="https://tma.example.test",
        peer_token="a-real-secret-of-the-crm-side-0123456789",
        inbound_signing_secrets=["whsec_Eijo8qRKcrahpHMOX5fRwR5YIGzKZIRnyBEH1lLUpbw="],
        peer_signing_secret="whsec_7RqFb6AZ1QuZVJCeO6DWIOdLDtUD7DyRrNxIGtD8gas=",
    )
    runtime = build_runtime(settings)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(runtime)), base_url="https://crm.test"
        ) as client:
            response = await client.post(
                "/console/sign-in",
                data={"token": pair.operator_token},
                headers={"Origin": "https://crm.test"},
            )
        assert response.status_code == 303
        assert "Secure" in response.headers["set-cookie"]
    finally:
        await runtime.close()


async def test_sign_in_refuses_wrong_tokens_and_other_origins(pair: Pair) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=pair.crm_app), base_url="http://crm.test"
    ) as client:
        wrong = await client.post("/console/sign-in", data={"token": "op_nope"}, headers=ORIGIN)
        assert wrong.status_code == 401
        assert "not valid" in wrong.text
        for origin in ({"Origin": "https://evil.test"}, {}):
            forged = await client.post(
                "/console/sign-in", data={"token": pair.operator_token}, headers=origin
            )
            assert forged.status_code == 403
            assert "set-cookie" not in forged.headers
        assert await rows(pair.crm_runtime, crm.ConsoleSession) == []


async def test_a_cookie_write_needs_the_csrf_token_and_this_origin(pair: Pair) -> None:
    ticket = await linked_ticket(pair)
    client, csrf = await signed_in(pair)
    url = f"/api/crm/tickets/{ticket.crm_id}/messages"
    async with aclosing(client):
        for headers in (
            ORIGIN,  # no token
            {**ORIGIN, "X-CSRF-Token": "0" * 64},  # a wrong one
            {**ORIGIN, "X-CSRF-Token": csrf[:-1]},  # a prefix of the right one
            {"Origin": "https://evil.test", "X-CSRF-Token": csrf},  # from another site
            {"X-CSRF-Token": csrf},  # no Origin at all
        ):
            refused = await client.post(url, json={"message": "hi"}, headers=headers)
            assert_problem(refused, 403, FORBIDDEN)
        assert [m.body for m in await rows(pair.crm_runtime, crm.Message)] == [
            "I paid but the order is unpaid."
        ]
        sent = await client.post(
            url, json={"message": "hi"}, headers={**ORIGIN, "X-CSRF-Token": csrf}
        )
        assert sent.status_code == 201, sent.text
        # Reading needs no token; a bearer token (no cookie involved) needs none either.
        assert (await client.get(f"/api/crm/tickets/{ticket.crm_id}")).status_code == 200
        by_token = await pair.crm.post(url, json={"message": "hi"}, headers=pair.operator_headers)
        assert by_token.status_code == 201


async def test_another_sessions_csrf_token_does_not_open_this_one(pair: Pair) -> None:
    ticket = await linked_ticket(pair)
    first, _ = await signed_in(pair)
    second, csrf_of_second = await signed_in(pair)
    async with aclosing(first), aclosing(second):
        refused = await first.post(
            f"/api/crm/tickets/{ticket.crm_id}/assign",
            headers={**ORIGIN, "X-CSRF-Token": csrf_of_second},
        )
        assert_problem(refused, 403, FORBIDDEN)


async def test_sign_out_deletes_the_session(pair: Pair) -> None:
    client, csrf = await signed_in(pair)
    async with aclosing(client):
        cookie = client.cookies["crm_console"]
        without_token = await client.post("/console/sign-out", headers=ORIGIN)
        assert_problem(without_token, 403, FORBIDDEN)
        out = await client.post("/console/sign-out", headers={**ORIGIN, "X-CSRF-Token": csrf})
        assert out.status_code == 204
        assert await rows(pair.crm_runtime, crm.ConsoleSession) == []
        kept = await client.get("/api/crm/me", headers={"Cookie": f"crm_console={cookie}"})
        assert_problem(kept, 401, UNAUTHORIZED)
        page = await client.get("/console/", headers={"Cookie": f"crm_console={cookie}"})
        assert 'name="token"' in page.text  # the sign-in form again


async def test_a_revoked_operator_is_out_at_the_next_request(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    boris, token = await add_operator(pair.crm_runtime.db, "Boris", now=pair.clock.now())
    client, _ = await signed_in(pair, token)
    async with aclosing(client):
        assert (await client.get("/api/crm/me")).status_code == 200
        # Even with the session row left in place, a revoked operator opens nothing.
        async with pair.crm_runtime.db.transaction() as session:
            await session.execute(
                update(crm.Operator)
                .where(crm.Operator.id == boris.id)
                .values(revoked_at=pair.clock.now())
            )
        assert_problem(await client.get("/api/crm/me"), 401, UNAUTHORIZED)
        # And `operators revoke` deletes their sessions too.
        other, token = await add_operator(pair.crm_runtime.db, "Vera", now=pair.clock.now())
        vera, _ = await signed_in(pair, token)
        async with aclosing(vera):
            monkeypatch.setenv("CRM_DATABASE_URL", pair.crm_runtime.settings.database_url)
            assert await run_cli(CRM_COMMANDS, ["operators", "revoke", str(other.id)]) == 0
            left = await rows(
                pair.crm_runtime, crm.ConsoleSession, crm.ConsoleSession.operator_id == other.id
            )
            assert left == []
            assert_problem(await vera.get("/api/crm/me"), 401, UNAUTHORIZED)


async def test_expired_sessions_open_nothing(pair: Pair) -> None:
    client, _ = await signed_in(pair)
    async with aclosing(client):
        pair.clock.advance(timedelta(hours=12, seconds=1).total_seconds())
        assert_problem(await client.get("/api/crm/me"), 401, UNAUTHORIZED)


async def _dead_reply(pair: Pair, text: str = "Refund sent") -> int:
    ticket = await linked_ticket(pair)
    await pair.crm.post(
        f"/api/crm/tickets/{ticket.crm_id}/status",
        json={"status": "in_progress"},
        headers=pair.operator_headers,
    )
    await pair.sync()
    reply = await pair.operator_replies(ticket.crm_id, text)
    async with pair.crm_runtime.db.transaction() as session:
        await session.execute(
            update(crm.Outbox)
            .where(crm.Outbox.state == OutboxState.pending)
            .values(state=OutboxState.dead, attempts=1, last_error="HTTP 422 refused")
        )
    view = await pair.conversation_in_crm(ticket.crm_id)
    (mine,) = [m for m in view["messages"] if m["id"] == reply["id"]]
    assert mine["delivery"]["state"] == "failing"
    assert mine["delivery"]["dead"] is True
    assert mine["delivery"]["last_error"] == "HTTP 422 refused"
    return int(mine["delivery"]["event_id"])


async def test_only_admins_replay_and_skip(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    event_id = await _dead_reply(pair)
    listed = await pair.crm.get("/api/crm/outbox?state=dead", headers=pair.operator_headers)
    assert [e["id"] for e in listed.json()] == [event_id]
    assert listed.json()[0]["last_error"] == "HTTP 422 refused"
    for action, body in (("replay", None), ("skip", {"reason": "no"})):
        refused = await pair.crm.post(
            f"/api/crm/outbox/{event_id}/{action}", json=body, headers=pair.operator_headers
        )
        assert_problem(refused, 403, FORBIDDEN)
    monkeypatch.setenv("CRM_DATABASE_URL", pair.crm_runtime.settings.database_url)
    (maria,) = await rows(pair.crm_runtime, crm.Operator)
    assert await run_cli(CRM_COMMANDS, ["operators", "grant-admin", str(maria.id)]) == 0
    assert "is an admin" in capsys.readouterr().out
    assert (await pair.crm.get("/api/crm/me", headers=pair.operator_headers)).json()["is_admin"]
    empty = await pair.crm.post(
        f"/api/crm/outbox/{event_id}/skip", json={"reason": "   "}, headers=pair.operator_headers
    )
    assert empty.status_code == 422
    replayed = await pair.crm.post(
        f"/api/crm/outbox/{event_id}/replay", headers=pair.operator_headers
    )
    assert replayed.status_code == 204
    again = await pair.crm.post(f"/api/crm/outbox/{event_id}/replay", headers=pair.operator_headers)
    assert_problem(again, 409, "urn:tma-crm:problem:conflict")
    unknown = await pair.crm.post("/api/crm/outbox/999999/replay", headers=pair.operator_headers)
    assert_problem(unknown, 404, "urn:tma-crm:problem:not-found")
    (event,) = await rows(pair.crm_runtime, crm.Outbox, crm.Outbox.id == event_id)
    assert event.state == OutboxState.pending
    assert f"replayed by operator Maria ({maria.id}) in the console" in (event.resolution or "")
    assert await run_cli(CRM_COMMANDS, ["operators", "revoke-admin", str(maria.id)]) == 0
    assert not (await pair.crm.get("/api/crm/me", headers=pair.operator_headers)).json()["is_admin"]
    assert await run_cli(CRM_COMMANDS, ["operators", "list"]) == 0
    assert re.search(r"active\s+Maria", capsys.readouterr().out)


async def test_an_admin_skip_records_the_reason(pair: Pair) -> None:
    event_id = await _dead_reply(pair)
    _, token = await add_operator(pair.crm_runtime.db, "Ada", now=pair.clock.now(), admin=True)
    skipped = await pair.crm.post(
        f"/api/crm/outbox/{event_id}/skip",
        json={"reason": "answered by phone"},
        headers=bearer(token),
    )
    assert skipped.status_code == 204
    (event,) = await rows(pair.crm_runtime, crm.Outbox, crm.Outbox.id == event_id)
    assert event.state == OutboxState.skipped
    assert "skipped by operator Ada" in (event.resolution or "")
    assert "answered by phone" in (event.resolution or "")


async def test_delivered_comes_from_the_stored_peer_id_and_survives_the_purge(pair: Pair) -> None:
    ticket = await linked_ticket(pair)
    reply = await pair.operator_replies(ticket.crm_id, "On its way")

    async def state() -> str:
        view = await pair.conversation_in_crm(ticket.crm_id)
        (mine,) = [m for m in view["messages"] if m["id"] == reply["id"]]
        return str(mine["delivery"]["state"])

    assert await state() == "pending"
    await pair.sync()
    assert await state() == "delivered"
    async with pair.crm_runtime.db.transaction() as session:
        await session.execute(delete(crm.Outbox))  # what `outbox purge` does after retention
    assert await state() == "delivered"


async def test_queue_filters_search_pages_and_unread_counts(pair: Pair) -> None:
    first = await linked_ticket(pair, subject="Payment failed")
    await linked_ticket(pair, subject="Delivery 100% late")
    await linked_ticket(pair, subject="Something else")
    boris, boris_token = await add_operator(pair.crm_runtime.db, "Boris", now=pair.clock.now())
    await pair.crm.post(f"/api/crm/tickets/{first.crm_id}/assign", headers=bearer(boris_token))

    async def subjects(query: str, headers: dict[str, str] | None = None) -> list[str]:
        response = await pair.crm.get(
            f"/api/crm/queue{query}", headers=headers or pair.operator_headers
        )
        assert response.status_code == 200, response.text
        return [t["subject"] for t in response.json()["items"]]

    # Newest activity first: the assignment did not touch activity, the tickets' creation did.
    assert await subjects("") == ["Something else", "Delivery 100% late", "Payment failed"]
    assert await subjects("?filter=mine", bearer(boris_token)) == ["Payment failed"]
    assert await subjects("?filter=unassigned") == ["Something else", "Delivery 100% late"]
    assert await subjects("?q=PAYMENT") == ["Payment failed"]
    assert await subjects("?q=100%25") == ["Delivery 100% late"]  # % is a character, not a wildcard
    assert await subjects("?q=anna") == await subjects("")  # the customer's name
    assert await subjects("?q=@anna_te") == await subjects("")  # and @username
    assert await subjects("?q=nobody") == []
    assert await subjects("?status=closed") == []
    page = (
        await pair.crm.get("/api/crm/queue?limit=2&offset=2", headers=pair.operator_headers)
    ).json()
    assert (page["total"], [t["subject"] for t in page["items"]]) == (3, ["Payment failed"])

    async def unread(headers: dict[str, str]) -> dict[str, int]:
        items = (await pair.crm.get("/api/crm/queue", headers=headers)).json()["items"]
        return {t["subject"]: t["unread"] for t in items}

    assert (await unread(pair.operator_headers))["Payment failed"] == 1
    await pair.user_writes(first.tma_id, "Any news?")
    await pair.sync()
    assert (await unread(pair.operator_headers))["Payment failed"] == 2
    view = await pair.conversation_in_crm(first.crm_id)
    marked = await pair.crm.post(
        f"/api/crm/tickets/{first.crm_id}/read",
        json={"seq": view["last_seq"]},
        headers=pair.operator_headers,
    )
    assert marked.status_code == 204
    assert (await unread(pair.operator_headers))["Payment failed"] == 0
    # Read markers are per operator: Boris has read nothing yet.
    assert (await unread(bearer(boris_token)))["Payment failed"] == 2
    # A marker never moves back.
    await pair.crm.post(
        f"/api/crm/tickets/{first.crm_id}/read", json={"seq": 0}, headers=pair.operator_headers
    )
    assert (await unread(pair.operator_headers))["Payment failed"] == 0
    assert boris.name == "Boris"


async def test_console_pages_send_a_csp_without_inline_script(pair: Pair) -> None:
    response = await pair.crm.get("/console/")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert "<script>" not in response.text  # module files only, no inline script
    assert response.headers["x-content-type-options"] == "nosniff"
