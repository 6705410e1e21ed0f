"""Rotating the signing secrets of both directions while messages flow (docs/delivery.md,
"Rotating a signing secret"): nothing is refused for good, nothing lost, nothing duplicated.

Traffic runs between the steps and during them: each burst writes messages on both sides and
runs one dispatcher round per side, so events enqueued under one configuration are sent under the
next. Settings are changed in place, as a restart with the new environment would.
"""

from __future__ import annotations

import base64
from collections import Counter

from integration_kit.schema import OutboxState
from tests.e2e.helpers import Linked, count, crm_messages, linked_ticket, tma_messages
from tests.integration_kit.test_health import metric_values
from tests.support.pair import Pair
from tma_impl import tables as tma

NEW_TO_CRM = "whsec_" + base64.b64encode(b"rotated: the tma signs to the crm with it").decode()
NEW_TO_TMA = "whsec_" + base64.b64encode(b"rotated: the crm signs to the tma with it").decode()


class Traffic:
    """Messages written on both sides in bursts, and what each side must end up holding."""

    def __init__(self, pair: Pair, tickets: list[Linked]) -> None:
        self.pair, self.tickets = pair, tickets
        self.from_users: list[str] = []
        self.from_operators: list[str] = []

    async def burst(self, label: str) -> None:
        """A message each way on every ticket, then one round of each dispatcher (not a drain:
        what is left is sent after the next step)."""
        for n, ticket in enumerate(self.tickets):
            text = f"{label}: user on ticket {n}"
            await self.pair.user_writes(ticket.tma_id, text)
            self.from_users.append(text)
            text = f"{label}: operator on ticket {n}"
            await self.pair.operator_replies(ticket.crm_id, text)
            self.from_operators.append(text)
        await self.pair.tma_runtime.dispatcher.run_once()
        await self.pair.crm_runtime.dispatcher.run_once()
        self.pair.clock.advance(1)

    async def drain(self) -> None:
        """Deliver everything left, waiting out any backoff."""
        for _ in range(10):
            await self.pair.sync()
            self.pair.clock.advance(600)
        await self.pair.sync()

    async def assert_all_delivered_once(self) -> None:
        in_crm = Counter(m.body for m in await crm_messages(self.pair))
        in_tma = Counter(m.body for m in await tma_messages(self.pair))
        assert {text: in_crm[text] for text in self.from_users} == dict.fromkeys(self.from_users, 1)
        assert {text: in_tma[text] for text in self.from_operators} == dict.fromkeys(
            self.from_operators, 1
        )
        # Each operator reply told to the user on Telegram once.
        assert len(self.pair.bot.calls) == len(self.from_operators)
        for text in self.from_operators:
            assert sum(call.text.endswith(text) for call in self.pair.bot.calls) == 1, text
        for runtime in (self.pair.tma_runtime, self.pair.crm_runtime):
            model = runtime.outbox.model
            assert await count(runtime, model, model.state != OutboxState.delivered) == 0


async def _tickets(pair: Pair, n: int) -> list[Linked]:
    return [await linked_ticket(pair, subject=f"Rotation {i}") for i in range(n)]


async def test_a_full_rotation_of_both_directions_while_traffic_flows(pair: Pair) -> None:
    """Old secret; receivers accept new and old; senders switch to new; receivers drop old.
    Done in this order, not a single request is refused."""
    traffic = Traffic(pair, await _tickets(pair, 3))
    tma_settings, crm_settings = pair.tma_runtime.settings, pair.crm_runtime.settings
    old_to_crm, old_to_tma = tma_settings.peer_signing_secret, crm_settings.peer_signing_secret
    await traffic.burst("old secrets")

    crm_settings.inbound_signing_secrets = [NEW_TO_CRM, old_to_crm]
    await traffic.burst("receivers accept both")
    tma_settings.inbound_signing_secrets = [NEW_TO_TMA, old_to_tma]
    await traffic.burst("receivers accept both, both ways")

    tma_settings.peer_signing_secret = NEW_TO_CRM
    await traffic.burst("the tma signs with the new secret")
    crm_settings.peer_signing_secret = NEW_TO_TMA
    await traffic.burst("both sign with the new secrets")

    crm_settings.inbound_signing_secrets = [NEW_TO_CRM]
    tma_settings.inbound_signing_secrets = [NEW_TO_TMA]
    await traffic.burst("old secrets removed")
    await traffic.drain()

    await traffic.assert_all_delivered_once()
    for client in (pair.tma, pair.crm):
        metrics = metric_values((await client.get("/metrics")).text)
        assert metrics["outbox_retried_by_failure_total{failure=signature}"] == 0
        assert metrics["outbox_dead_total"] == 0


async def test_a_sender_switching_too_early_is_refused_retried_and_then_delivered(
    pair: Pair,
) -> None:
    """The slip the procedure guards against: the CRM signs with the new secret before the TMA
    accepts it. Its events are refused and retried, never dead; once the TMA accepts the new
    secret they arrive, each once, in order."""
    traffic = Traffic(pair, await _tickets(pair, 2))
    old_to_tma = pair.crm_runtime.settings.peer_signing_secret
    pair.crm_runtime.settings.peer_signing_secret = NEW_TO_TMA
    await traffic.burst("signed too early")
    await traffic.burst("still too early")
    for _ in range(3):
        await pair.sync()
        pair.clock.advance(30)
    metrics = metric_values((await pair.crm.get("/metrics")).text)
    assert metrics["outbox_retried_by_failure_total{failure=signature}"] > 0
    assert metrics["outbox_dead_total"] == 0

    pair.tma_runtime.settings.inbound_signing_secrets = [NEW_TO_TMA, old_to_tma]
    await traffic.burst("accepted now")
    await traffic.drain()
    await traffic.assert_all_delivered_once()
    for ticket in traffic.tickets:  # in the order they were written
        bodies = [
            m.body
            for m in await tma_messages(pair)
            if str(m.ticket_id) == ticket.tma_id and m.sender_type == "crm"
        ]
        assert bodies == [t for t in traffic.from_operators if t in bodies]
        assert len(bodies) == 3
    assert await count(pair.tma_runtime, tma.Outbox, tma.Outbox.state == OutboxState.dead) == 0
