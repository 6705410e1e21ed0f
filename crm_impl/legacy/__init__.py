"""Every assumption about the old CRM, in one place (docs/cutover.md explains each).

The audit describes the old CRM's API, not its database. Where it is silent this package decides,
so a team whose old schema differs changes this package and nothing else:

- `tickets`: `id` UUID. The old CRM took the `ticket_id` the TMA sent with
  `POST /api/v1/support/ticket` as its own ticket's id (the audit: it stored no `external_id`, yet
  its webhooks named the TMA's ticket): a ticket that came from the TMA has the TMA's UUID here.
  An id that came from outside had no unique constraint (indexed only): the audit's "no
  protection against duplicates" means a creation the old TMA retried is stored twice under one
  id, which `migrate --check` reports and `--scrub` merges.
  `subject` TEXT (unbounded), `status`, `project`, `external_url`, `created_at`, `updated_at`
  (timestamps with time zone, UTC). No customer columns: the old body had none, so a converted
  ticket has customer 0 / "-" until `link` copies the Telegram user from the TMA.
- `messages`: `id` UUID (primary key), `ticket_id` (indexed; no foreign key, `tickets.id` being
  no key: a message naming no stored ticket is reported by `migrate --check`), `sender`
  (`local` = an operator's reply written here; `crm` = what arrived through the old integration
  route, i.e. from the TMA: the old code named the route, not the side), `message` TEXT,
  `attachments` JSON, `created_at`. No operator table: old replies have no author.
"""

# ruff: noqa: S608 - the conversion SQL is built from this module's constants, never from input
from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import Uuid

from integration_kit.legacy import LegacyLayout, LegacySide, Step, sender_case, ticket_fields_step

HERE = Path(__file__).parent

LAYOUT = LegacyLayout(
    ticket_subject="subject",
    message_id=Uuid(),
    message_body="message",
    # "local" meant "this side": an operator in the CRM. The same word maps differently on the TMA.
    senders={"local": "crm", "crm": "tma"},
)
UNKNOWN_CUSTOMER_ID = 0  # until `link` copies the ticket's Telegram user from the TMA
UNKNOWN_CUSTOMER_NAME = "-"


def steps(dialect: str) -> list[Step]:
    """How each new table is filled from the old ones (integration_kit.legacy_model.Step).

    Customer placeholders until `link`; messages numbered (`seq`) in the order they were
    written, after those already there (rows written during an online copy come after the
    copied ones, in their own order; an updated message keeps its number); project and
    external_url -> legacy_ticket_fields. The SQL is the same on both databases.
    """
    return [
        Step(
            table="tickets",
            columns=(
                "id",
                "subject",
                "status",
                "status_changed_at",
                "created_at",
                "updated_at",
                "customer_telegram_id",
                "customer_first_name",
            ),
            select="SELECT id, subject, status, updated_at, created_at, updated_at, "
            f"{UNKNOWN_CUSTOMER_ID}, '{UNKNOWN_CUSTOMER_NAME}' FROM {{old_tickets}} "
            "WHERE {where}",
            key="id",
            source_key="id",
            changed="SELECT id FROM {changed_tickets}",
        ),
        Step(
            table="messages",
            columns=("seq", "id", "ticket_id", "sender_type", "body", "attachments", "created_at"),
            select="SELECT row_number() OVER (ORDER BY m.created_at, m.id) + "
            "(SELECT coalesce(max(seq), 0) FROM {new}messages), m.id, m.ticket_id, "
            f"{sender_case(LAYOUT)}, m.message, m.attachments, m.created_at "
            "FROM {old_messages} m WHERE {where} "
            "AND m.ticket_id IN (SELECT id FROM {new}tickets)",
            key="id",
            source_key="m.id",
            changed="SELECT id FROM {changed_messages}",
            keep=("seq",),
        ),
        ticket_fields_step(),
    ]


SIDE = LegacySide(
    name="crm",
    migrations=HERE / "migrations",
    main_migrations=HERE.parent / "migrations",
    baseline="crm_legacy",
    layout=LAYOUT,
    steps=steps,
)


def peer_ticket_id(ticket_id: uuid.UUID) -> uuid.UUID:
    """The old TMA's id of a ticket that came from it: the same UUID, the old CRM took it."""
    return ticket_id
