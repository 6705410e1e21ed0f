"""`migrate --stamp-legacy | --check | --scrub`: the legacy path's commands (docs/cutover.md)."""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from integration_kit import legacy
from integration_kit.backfill import (
    DEFAULT_WINDOW,
    PeerMessage,
    read_matched,
    read_peer_messages,
    record_pairs,
    unlinked_messages,
    write_matched,
    write_peer_messages,
)
from integration_kit.db import Database
from integration_kit.legacy import LegacyRefused, LegacySide, LegacyUnstamped
from integration_kit.link import (
    LinkSide,
    export_pairs,
    link,
    pairs_from_own_data,
    read_pairs,
    write_pairs,
)


class CutoverError(Exception):
    """A cut-over step refused; printed as one line."""


def add_migrate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stamp-legacy",
        action="store_true",
        help="mark an existing old database (no Alembic version yet) as the legacy baseline",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="an old database: list the rows that would break the new model; change nothing",
    )
    parser.add_argument(
        "--prepare",
        action="store_true",
        help="an old PostgreSQL database: copy it into the new model while the old system still "
        "writes; a later `migrate` then blocks writes only for its short last step",
    )
    parser.add_argument(
        "--scrub",
        action="store_true",
        help="an old database: cut over-long subjects and bodies, remove NUL and Telegram file "
        "URL attachments while converting (see `--check` for what)",
    )


def migrate(side: LegacySide, url: str, args: argparse.Namespace) -> int | None:
    """Run `migrate [--check] [--scrub]`; an exit code, or None once upgraded to head."""
    if args.stamp_legacy:
        try:
            legacy.stamp_legacy(url, side)
        except ValueError as exc:
            raise CutoverError(str(exc)) from None
        print(f"{side.name}: stamped as the old database ({side.baseline}); next: migrate --check")
        return 0
    state = legacy.state_of(url, side)
    if args.check:
        if state != "legacy":
            print(f"{side.name}: not an old database (stamped legacy): nothing to check")
            return 0
        findings = legacy.check(url, side)
        for finding in findings:
            print(finding.line())
        print(f"{len(findings)} row(s) would break the new model")
        return 1 if findings else 0
    try:
        if args.prepare:
            if legacy.prepare(url, side, scrub=args.scrub):
                print(f"{side.name}: copied; stop the old system, then run migrate")
            else:
                print(
                    f"{side.name}: SQLite converts in one transaction: stop the old system, "
                    "then run migrate"
                )
            return 0
        legacy.migrate(url, side, scrub=args.scrub)
    except ValueError as exc:
        raise CutoverError(str(exc)) from None
    except LegacyUnstamped as exc:
        raise CutoverError(str(exc)) from None
    except LegacyRefused as exc:
        for finding in exc.findings:
            print(finding.line(), file=sys.stderr)
        raise CutoverError(str(exc)) from None
    return None


def refuse_legacy(side: LegacySide, url: str) -> None:
    """`serve` migrates by itself, but never converts an old database behind an operator's back."""
    state = legacy.state_of(url, side)
    if state == "unstamped":
        raise CutoverError(str(legacy.LegacyUnstamped(side)))
    if state != "main":
        raise CutoverError(
            f"the database is an old {side.name} one: run `python -m {side.name}_impl migrate "
            "--check`, then `migrate`"
        )


def add_link_command(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "link",
        help="record the other side's id of tickets from before the cut-over (idempotent)",
        description="Without --pairs: link from this side's own data. See docs/cutover.md.",
    )
    parser.add_argument("--pairs", type=Path, help="a CSV of pairs exported by the other side")
    parser.add_argument("--export", type=Path, help="write the pairs this side knows to a CSV")


async def run_link(db: Database, side: LinkSide, args: argparse.Namespace) -> int:
    """`link [--pairs FILE] [--export FILE]`."""
    try:
        pairs = read_pairs(args.pairs) if args.pairs else None
    except ValueError as exc:
        raise CutoverError(str(exc)) from None
    try:
        async with db.transaction() as session:
            if pairs is None:
                pairs = await pairs_from_own_data(session, side)
            report = await link(session, side, pairs)
        for line in report.lines():
            print(line)
        if args.export:
            async with db.transaction() as session:
                exported = await export_pairs(session, side)
            count = write_pairs(args.export, exported)
            print(f"wrote {count} pair(s) to {args.export}")
    finally:
        await db.dispose()
    return 0


def add_backfill_command(sub: argparse._SubParsersAction[Any]) -> None:
    parser = sub.add_parser(
        "backfill",
        help="match the messages of before the cut-over with the other side's; send the rest",
        description="The order of the steps is in docs/cutover.md.",
    )
    parser.add_argument(
        "--export", type=Path, help="write this side's messages not yet linked to a CSV"
    )
    parser.add_argument(
        "--peer-messages", type=Path, help="(TMA) the CRM's export: match, and queue the rest"
    )
    parser.add_argument(
        "--write-matched", type=Path, help="(TMA) write the matches for the CRM to a CSV"
    )
    parser.add_argument(
        "--record-matched", type=Path, help="record the other side's matches (its CSV)"
    )
    parser.add_argument(
        "--window-minutes",
        type=float,
        default=DEFAULT_WINDOW.total_seconds() / 60,
        help="how far apart the two copies of one message may be written (default 5)",
    )


# (session, the peer's messages, window, now) -> (report lines, matches as (theirs, ours))
Backfill = Callable[
    [AsyncSession, list[PeerMessage], timedelta, datetime],
    Awaitable[tuple[list[str], list[tuple[uuid.UUID, uuid.UUID]]]],
]


async def run_backfill(
    db: Database,
    link_side: LinkSide,
    args: argparse.Namespace,
    *,
    now: datetime,
    backfill: Backfill | None,
) -> int:
    """`backfill [--export F] [--peer-messages F --write-matched F] [--record-matched F]`."""
    if args.peer_messages is not None and backfill is None:
        raise CutoverError("--peer-messages is the TMA's step: the CRM only exports and records")
    if args.window_minutes <= 0:
        raise CutoverError("--window-minutes must be positive")
    try:
        peers = read_peer_messages(args.peer_messages) if args.peer_messages else None
        matched = read_matched(args.record_matched) if args.record_matched else None
    except ValueError as exc:
        raise CutoverError(str(exc)) from None
    try:
        if matched is not None:
            async with db.transaction() as session:
                count = await record_pairs(session, link_side.message_model, matched)
            print(f"recorded {count} of {len(matched)} matched message(s)")
        if peers is not None and backfill is not None:
            window = timedelta(minutes=args.window_minutes)
            async with db.transaction() as session:
                lines, pairs = await backfill(session, peers, window, now)
            for line in lines:
                print(line)
            if args.write_matched:
                write_matched(args.write_matched, pairs)
                print(f"wrote {len(pairs)} match(es) to {args.write_matched}")
        if args.export:
            async with db.transaction() as session:
                mine = await unlinked_messages(
                    session,
                    link_side.ticket_model,
                    link_side.message_model,
                    side=link_side.name,
                    legacy_peer_id=link_side.legacy_peer_id,
                )
            count = write_peer_messages(args.export, mine)
            print(f"wrote {count} message(s) to {args.export}")
    finally:
        await db.dispose()
    return 0
