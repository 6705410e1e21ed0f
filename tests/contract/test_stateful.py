"""Sequences of calls, every schemathesis check on every step, data reset between scenarios.

The CRM: scenarios follow the spec's links, createTicket -> postMessage -> postStatus, so messages
and status changes land on the ticket the scenario created. The TMA serves no operation that
creates a ticket, so its scenarios are messages and status changes on the seeded tickets, chained
by the postMessage -> postStatus link. After each scenario, the database must hold what the
answers said: every acknowledged message, and the status last answered for each ticket.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import FlakyStrategyDefinition

from tests.contract.acceptance import assert_floors, forget
from tests.contract.checks import instant
from tests.contract.harness import (
    Backend,
    Contract,
    examples_per_operation,
    load_contract,
    running_backend,
)
from tests.contract.seeding import SEEDED, pair_ticket_ids

SCENARIOS = max(examples_per_operation(40) // 2, 10)

# The links supply the ticket ids; the hook names the caller as the sender and gives valid steps
# fresh ids and dates near the backend's time, and each valid step names one
# ticket by both ids (`pair_ticket_ids`). Sequences of writes only: a read of the change feed
# changes nothing to check, and its answers carry this database's random epoch, which makes
# Hypothesis see a scenario generated differently when it replays it (FlakyStrategyDefinition).
# The feed has its own tests and is fuzzed statelessly.
crm_links = load_contract(
    "crm", max_examples=SCENARIOS, aim="sender", writes_only=True, suite="stateful"
)
tma_sequences = load_contract(
    "tma", max_examples=SCENARIOS, aim="sender", writes_only=True, suite="stateful"
)

# Generation only, as schemathesis's own stateful phase runs: link values are applied at random
# outside Hypothesis's control, so replaying a scenario to shrink it would not repeat it.
scenario_settings = settings(
    phases=[Phase.generate],
    max_examples=SCENARIOS,
    stateful_step_count=10,
    deadline=None,
    database=None,
    derandomize=True,  # the same scenarios on every run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _operation(case: Any) -> str:
    return str(case.operation.definition.raw["operationId"])


def run_scenarios(contract: Contract, backend: Backend) -> Counter[str]:
    """Run the contract's state machine against `backend`; count what the scenarios reached."""
    reached: Counter[str] = Counter()
    # The tickets a step may name: the seeded ones the backend has linked, then those created.
    seeded = {
        str(ticket.receiver_id): str(ticket.sender_id)
        for ticket in SEEDED[backend.side]
        if ticket.linked
    }

    class Scenario(contract.schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            backend.reset()
            # Every scenario dates its cases the same way: replayed, it sends the same.
            contract.clock.restart()
            self.known = dict(seeded)  # receiver's ticket id -> sender's, as answers taught
            self.created: list[str] = []  # tickets this scenario created, in order
            self.with_message: set[str] = set()  # tickets this scenario stored a message on
            self.stored_messages: set[str] = set()
            # What each ticket holds by the answers so far: (status, changed_at).
            self.held: dict[str, tuple[str, datetime | None]] = {}

        def before_call(self, case: Any) -> None:
            super().before_call(case)
            pair_ticket_ids(case, self.known, self.created)

        def after_call(self, response: Any, case: Any) -> None:
            super().after_call(response, case)
            operation = _operation(case)
            answer = response.json() if response.status_code in (200, 201) else {}
            if operation == "createTicket" and answer:
                self.known[answer["ticket_id"]] = answer["external_ticket_id"]
            if operation == "createTicket" and response.status_code == 201:
                self.created.append(answer["ticket_id"])
            elif operation == "postMessage" and response.status_code == 201:
                self.stored_messages.add(answer["message_id"])
                self.with_message.add(answer["ticket_id"])
                self.reopen_on_customer_message(answer["ticket_id"], case.body)
                reached["message stored"] += 1
                if answer["ticket_id"] in self.created:
                    reached["message on the ticket the scenario created"] += 1
            elif operation == "postStatus" and response.status_code == 200:
                held_since = instant(answer["status_changed_at"])
                self.held[answer["ticket_id"]] = (answer["status"], held_since)
                if answer["applied"]:
                    reached["status applied"] += 1
                    if answer["ticket_id"] in self.with_message:
                        reached["status applied after a message on the same ticket"] += 1
                    if answer["ticket_id"] in self.created:
                        reached["status applied to the ticket the scenario created"] += 1
            reached[f"{operation} {response.status_code}"] += 1

        def reopen_on_customer_message(self, ticket: str, body: dict[str, Any]) -> None:
            # The spec: a message from the TMA on a closed ticket reopens it, if it is newer.
            if body.get("sender") != "tma" or ticket not in self.held:
                return
            status, since = self.held[ticket]
            written = instant(body.get("created_at"))
            if written is None or since is None:
                del self.held[ticket]  # a leap second: cannot tell which is newer here
            elif status == "closed" and written > since:
                self.held[ticket] = ("open", written)

        def teardown(self) -> None:
            # The answers were not only well-formed: the database holds what they acknowledged.
            assert backend.messages_present(self.stored_messages) == len(self.stored_messages)
            held = {ticket: status for ticket, (status, _since) in self.held.items()}
            assert backend.statuses(list(held)) == held
            super().teardown()

    try:
        Scenario.run(settings=scenario_settings)
    except FlakyStrategyDefinition:
        # Seen only in full runs under heavy load: a call answered differently when Hypothesis met
        # the same scenario again (the cause is not found yet). Once more from the start; a
        # second report fails the test.
        reached.clear()
        forget(backend.acceptance, db=backend.db_kind, suite="stateful", side=backend.side)
        Scenario.run(settings=scenario_settings)
    assert_floors(
        backend.acceptance,
        db=backend.db_kind,
        suite="stateful",
        side=backend.side,
        examples=SCENARIOS,
    )
    return reached


def test_crm_follows_the_links_from_a_new_ticket_to_its_messages_and_status(
    db_kind: str, tmp_path: Path
) -> None:
    """createTicket -> postMessage -> postStatus on the created ticket, through the spec's links."""
    with running_backend("crm", db_kind, tmp_path) as backend, crm_links.serving(backend):
        reached = run_scenarios(crm_links, backend)
    assert reached["message on the ticket the scenario created"] > 0, reached
    assert reached["status applied to the ticket the scenario created"] > 0, reached
    assert reached["status applied after a message on the same ticket"] > 0, reached


def test_tma_stores_sequences_of_messages_and_status_changes_on_existing_tickets(
    db_kind: str, tmp_path: Path
) -> None:
    """postMessage and postStatus in sequence on seeded tickets, chained by the spec's link."""
    with running_backend("tma", db_kind, tmp_path) as backend, tma_sequences.serving(backend):
        reached = run_scenarios(tma_sequences, backend)
    assert reached["message stored"] > 0, reached
    assert reached["status applied after a message on the same ticket"] > 0, reached
