"""Every assumption about the old TMA, in one place (docs/cutover.md explains each).

The audit describes the old TMA's API, not its database. Where it is silent this package decides,
so a team whose old schema differs changes this package and nothing else:

- `tickets`: `id` UUID (the audit: "UUID, local"), `user_id` BIGINT (the Telegram user; the old TMA
  kept no user table), `theme` TEXT (unbounded: over-long ones are found by `migrate --check`),
  `status` (`open|in_progress|closed`), `project`, `external_url`, `created_at`, `updated_at`
  (timestamps with time zone, UTC).
- `messages`: `id` BIGINT auto-increment (the audit allows UUID or INT; the TMA's were integers and
  are mapped to UUIDs by `message_uuid`), `ticket_id`, `sender` (`local` = written in the Mini App,
  `crm` = an operator's reply), `message` TEXT, `attachments` JSON, `created_at`.
- No `external_id`, no `external_message_id` (the audit's first two findings).
- The old CRM gave its ticket the TMA's `ticket_id` as its own id, and its webhooks named the
  ticket by it: the CRM ticket of an old TMA ticket has the same UUID (see crm_impl.legacy).
"""

# ruff: noqa: S608 - the conversion SQL is built from this module's constants, never from input
from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import BigInteger

from integration_kit.legacy import (
    LegacyLayout,
    LegacySide,
    Step,
    legacy_uuid,
    legacy_uuid_sql,
    sender_case,
    ticket_fields_step,
)

HERE = Path(__file__).parent

LAYOUT = LegacyLayout(
    ticket_subject="theme",
    message_id=BigInteger(),
    message_body="message",
    # "local" meant "this side": the Mini App's user on the TMA.
    senders={"local": "tma", "crm": "crm"},
)
MESSAGE_PREFIX = "tma:message:"


def steps(dialect: str) -> list[Step]:
    """How each new table is filled from the old ones (integration_kit.legacy_model.Step).

    A Telegram user per old `user_id` (refreshed from initData on the user's next request);
    theme -> subject; the old integer message id -> `seq` (the conversation's order) and the
    UUID `message_uuid` gives it; project and external_url -> legacy_ticket_fields. A message
    whose ticket is not copied yet (opened during an online copy) waits for the final step.
    """
    new_id, digest = legacy_uuid_sql(MESSAGE_PREFIX, "m.id", dialect)
    return [
        Step(
            table="telegram_users",
            columns=("id", "first_name", "updated_at"),
            select="SELECT user_id, '', max(updated_at) FROM {old_tickets} WHERE {where} "
            "GROUP BY user_id",
            key="id",
            source_key="user_id",
            # The users of the tickets written: as they are now, and as they were copied.
            changed="SELECT user_id FROM {old_tickets} WHERE id IN "
            "(SELECT id FROM {changed_tickets}) UNION SELECT telegram_user_id FROM "
            "{new}tickets WHERE id IN (SELECT id FROM {changed_tickets})",
        ),
        Step(
            table="tickets",
            columns=(
                "id",
                "subject",
                "status",
                "status_changed_at",
                "created_at",
                "updated_at",
                "telegram_user_id",
            ),
            select="SELECT id, theme, status, updated_at, created_at, updated_at, user_id "
            "FROM {old_tickets} WHERE {where}",
            key="id",
            source_key="id",
            changed="SELECT id FROM {changed_tickets}",
        ),
        Step(
            table="messages",
            columns=("seq", "id", "ticket_id", "sender_type", "body", "attachments", "created_at"),
            select=f"SELECT m.id, {new_id}, m.ticket_id, {sender_case(LAYOUT)}, m.message, "
            f"m.attachments, m.created_at FROM {{old_messages}} m{digest} WHERE {{where}} "
            "AND m.ticket_id IN (SELECT id FROM {new}tickets) ORDER BY m.id",
            key="seq",
            source_key="m.id",
            changed="SELECT id FROM {changed_messages}",
        ),
        ticket_fields_step(),
    ]


SIDE = LegacySide(
    name="tma",
    migrations=HERE / "migrations",
    main_migrations=HERE.parent / "migrations",
    baseline="tma_legacy",
    layout=LAYOUT,
    steps=steps,
)


def message_uuid(legacy_id: int) -> uuid.UUID:
    """The new id of an old integer message id (the same on every run and machine)."""
    return legacy_uuid(f"{MESSAGE_PREFIX}{legacy_id}")


def peer_ticket_id(ticket_id: uuid.UUID) -> uuid.UUID:
    """The old CRM's id of a ticket the old TMA sent it: the same UUID (see crm_impl.legacy)."""
    return ticket_id
