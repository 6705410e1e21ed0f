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

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import BigInteger

from integration_kit.legacy import LegacyLayout, LegacySide, legacy_uuid

HERE = Path(__file__).parent

LAYOUT = LegacyLayout(
    ticket_subject="theme",
    message_id=BigInteger(),
    message_body="message",
    # "local" meant "this side": the Mini App's user on the TMA.
    senders={"local": "tma", "crm": "crm"},
)
MESSAGE_PREFIX = "tma:message:"

SIDE = LegacySide(
    name="tma",
    migrations=HERE / "migrations",
    main_migrations=HERE.parent / "migrations",
    baseline="tma_legacy",
    layout=LAYOUT,
)


def message_uuid(legacy_id: int) -> uuid.UUID:
    """The new id of an old integer message id (the same on every run and machine)."""
    return legacy_uuid(f"{MESSAGE_PREFIX}{legacy_id}")


def peer_ticket_id(ticket_id: uuid.UUID) -> uuid.UUID:
    """The old CRM's id of a ticket the old TMA sent it: the same UUID (see crm_impl.legacy)."""
    return ticket_id
