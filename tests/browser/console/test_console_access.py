"""Who may do what in the console: a revoked operator is out at once; only admins replay and
skip dead events, and the page records what they did."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import httpx
import pytest
from playwright.async_api import expect

from crm_impl import tables as crm
from crm_impl.cli import COMMANDS as CRM_COMMANDS
from crm_impl.cli import add_operator
from integration_kit.schema import OutboxState
from tests.browser.console.conftest import ConsoleStack
from tests.browser.console.support import WAIT_MS, sign_in
from tests.e2e.helpers import rows, run_cli

if TYPE_CHECKING:
    from playwright.async_api import Browser


def refusing_tma(_request: httpx.Request) -> httpx.Response:
    """The Mini App's backend refusing for good (a 4xx): the event goes dead at once."""
    return httpx.Response(
        422,
        json={
            "type": "urn:tma-crm:problem:validation",
            "title": "Validation failed",
            "status": 422,
            "detail": "refused by the test",
        },
        headers={"Content-Type": "application/problem+json"},
    )


async def dead_replies(stack: ConsoleStack, *texts: str) -> list[int]:
    """Operator replies the TMA refuses, one ticket each; returns their dead event ids."""
    pair = stack.pair
    tickets = []
    for text in texts:
        ticket = await pair.open_ticket(subject=f"About {text}")
        await pair.sync()
        crm_ticket = await pair.crm_ticket_for(ticket["id"])
        # Taken in progress first (delivered), so the reply's own event is the one refused.
        taken = await pair.crm.post(
            f"/api/crm/tickets/{crm_ticket['id']}/status",
            json={"status": "in_progress"},
            headers=pair.operator_headers,
        )
        assert taken.status_code == 200, taken.text
        await pair.sync()
        tickets.append(crm_ticket["id"])
    for ticket_id, text in zip(tickets, texts, strict=True):
        await pair.operator_replies(ticket_id, text)
    working, pair.to_tma.inner = pair.to_tma.inner, httpx.MockTransport(refusing_tma)
    try:
        await pair.sync()
    finally:
        pair.to_tma.inner = working
    dead = await rows(pair.crm_runtime, crm.Outbox, crm.Outbox.state == OutboxState.dead)
    return sorted(row.id for row in dead)


async def test_a_revoked_operator_is_out_without_a_reload(
    browser: Browser, stack: ConsoleStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = stack.pair
    operator, token = await add_operator(pair.crm_runtime.db, "Boris", now=pair.clock.now())
    console = await sign_in(browser, stack.base_url, token)
    try:
        monkeypatch.setenv("CRM_DATABASE_URL", pair.crm_runtime.settings.database_url)
        assert await run_cli(CRM_COMMANDS, ["operators", "revoke", str(operator.id)]) == 0
        # The open page's stream notices at its next look and the page goes to the sign-in form.
        await console.wait_for_sign_in_form()
        response = await console.page.request.get(f"{stack.base_url}/api/crm/me")
        assert response.status == 401
    finally:
        await console.close()


async def test_a_non_admin_sees_dead_events_but_cannot_replay_them(
    browser: Browser, stack: ConsoleStack
) -> None:
    pair = stack.pair
    (event_id,) = await dead_replies(stack, "Refund sent")
    console = await sign_in(browser, stack.base_url, pair.operator_token)
    try:
        await console.open_delivery_health()
        row = console.page.locator(f'tr[data-event-id="{event_id}"]')
        await expect(row).to_contain_text("refused by the test")
        await expect(row).to_contain_text("dead")
        await expect(console.page.get_by_role("button", name="Replay")).to_have_count(0)
        await expect(console.page.get_by_role("button", name=re.compile("Skip"))).to_have_count(0)
        # And the API refuses it even when asked directly.
        response = await console.page.request.post(
            f"{stack.base_url}/api/crm/outbox/{event_id}/replay",
            headers={
                "X-CSRF-Token": await console.page.locator('meta[name="csrf-token"]').get_attribute(
                    "content"
                )
                or ""
            },
        )
        assert response.status == 403
        assert response.headers["content-type"] == "application/problem+json"
    finally:
        await console.close()


async def test_an_admin_replays_one_dead_event_and_skips_another_with_a_reason(
    browser: Browser, stack: ConsoleStack
) -> None:
    pair = stack.pair
    replayed, skipped = await dead_replies(stack, "First answer", "Second answer")
    _, token = await add_operator(pair.crm_runtime.db, "Ada", now=pair.clock.now(), admin=True)
    console = await sign_in(browser, stack.base_url, token)
    page = console.page
    try:
        await console.open_delivery_health()
        await expect(page.locator("#health-summary")).to_have_text("2 event(s), 2 dead")
        await (
            page.locator(f'tr[data-event-id="{replayed}"]')
            .get_by_role("button", name="Replay")
            .click()
        )
        await expect(page.locator(f'tr[data-event-id="{replayed}"]')).to_have_attribute(
            "data-state", "pending", timeout=WAIT_MS
        )
        await (
            page.locator(f'tr[data-event-id="{skipped}"]')
            .get_by_role("button", name="Skip…")
            .click()
        )
        await page.get_by_label("Reason (recorded on the event)").fill("customer answered by phone")
        await page.get_by_role("button", name="Skip event").click()
        await expect(page.locator(f'tr[data-event-id="{skipped}"]')).to_have_count(0)
        await pair.sync()  # the replayed event is delivered now
        events = {e.id: e for e in await rows(pair.crm_runtime, crm.Outbox)}
        assert events[replayed].state == OutboxState.delivered
        assert "replayed by operator Ada" in (events[replayed].resolution or "")
        assert events[skipped].state == OutboxState.skipped
        assert "skipped by operator Ada" in (events[skipped].resolution or "")
        assert "customer answered by phone" in (events[skipped].resolution or "")
        await page.get_by_role("button", name="Refresh").click()
        await expect(page.locator("#health-summary")).to_have_text("0 event(s), 0 dead")
        # The conversation shows each reply's fate.
        await page.get_by_role("link", name="Conversations").click()
        await console.open_ticket("About First answer")
        await console.wait_for_delivery("First answer", "delivered")
        await console.open_ticket("About Second answer")
        await console.wait_for_delivery("Second answer", "skipped")
    finally:
        await console.close()
