"""Backfill: the old TMA's follow-ups that never reached the CRM are sent once, in order, through
the outbox; messages both sides have are matched, not sent; no ticket is created twice."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from crm_impl import tables as crm
from integration_kit.backfill import PeerMessage, match
from integration_kit.legacy import migrate
from tests.cutover.legacy_data import SIDES, OldTicket, history, legacy_database, seed
from tests.cutover.test_migrate_cli import commands
from tests.e2e.helpers import run_cli
from tests.support.pair import Pair, wired_pair
from tma_impl import tables as tma


@dataclasses.dataclass
class Old:
    """Two old databases with history, migrated and linked."""

    tma_url: str
    crm_url: str
    tickets: list[OldTicket]
    lost: OldTicket  # its creation never reached the old CRM
    phoned: uuid.UUID  # a CRM ticket that never came from the TMA


@asynccontextmanager
async def migrated_and_linked(kind: str, tmp_path: Path) -> AsyncIterator[Old]:
    tickets = history(3)
    [lost] = [dataclasses.replace(t, id=uuid.uuid4(), user_id=2000) for t in history(1)]
    async with (
        legacy_database(kind, "tma", tmp_path) as tma_url,
        legacy_database(kind, "crm", tmp_path) as crm_url,
    ):
        phoned = await seed(tma_url, crm_url, tickets, tma_only=[lost])
        await asyncio.to_thread(migrate, tma_url, SIDES["tma"])
        await asyncio.to_thread(migrate, crm_url, SIDES["crm"])
        tma_cli, crm_cli = commands("tma", tma_url), commands("crm", crm_url)
        crm_csv, tma_csv = tmp_path / "crm-pairs.csv", tmp_path / "tma-pairs.csv"
        assert await run_cli(tma_cli, ["link"]) == 0
        assert await run_cli(crm_cli, ["link", "--export", str(crm_csv)]) == 0
        assert (
            await run_cli(tma_cli, ["link", "--pairs", str(crm_csv), "--export", str(tma_csv)]) == 0
        )
        assert await run_cli(crm_cli, ["link", "--pairs", str(tma_csv)]) == 0
        yield Old(tma_url, crm_url, tickets, lost, phoned)


async def run_backfill(old: Old, tmp_path: Path) -> list[str]:
    """The three backfill steps of docs/cutover.md; returns the TMA's report."""
    tma_cli, crm_cli = commands("tma", old.tma_url), commands("crm", old.crm_url)
    exported, matched = tmp_path / "crm-messages.csv", tmp_path / "matched.csv"
    assert await run_cli(crm_cli, ["backfill", "--export", str(exported)]) == 0
    argv = ["backfill", "--peer-messages", str(exported), "--write-matched", str(matched)]
    assert await run_cli(tma_cli, argv) == 0
    assert await run_cli(crm_cli, ["backfill", "--record-matched", str(matched)]) == 0
    return []


async def _conversations(pair: Pair, model: Any) -> dict[uuid.UUID, list[tuple[str, str]]]:
    runtime = pair.tma_runtime if model is tma.Message else pair.crm_runtime
    async with runtime.db.sessions() as session:
        rows = (await session.scalars(select(model).order_by(model.seq))).all()
    found: dict[uuid.UUID, list[tuple[str, str]]] = {}
    for message in rows:
        # Linked both ways: each message knows the other side's id of it (but the phoned-in
        # ticket's, which only the CRM has).
        linked = "linked" if message.external_message_id is not None else "only here"
        found.setdefault(message.ticket_id, []).append((linked, message.body))
    return found


async def test_backfill_sends_only_what_the_crm_never_got_once_and_in_order(
    db_kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with migrated_and_linked(db_kind, tmp_path) as old:
        capsys.readouterr()
        await run_backfill(old, tmp_path)
        out = capsys.readouterr().out
        assert (
            "matched 9 message(s) both sides have, queued 4 message(s) the CRM never got, "
            "1 ticket(s) it never got"
        ) in out
        assert "recorded 9 of 9 matched message(s)" in out
        assert f"CRM ticket {old.phoned}: not a ticket of the TMA; left alone" in out

        def databases(_kind: str, side: str, _tmp: Path) -> Any:
            return _given(old.tma_url if side == "tma" else old.crm_url)

        async with wired_pair(db_kind, tmp_path, database=databases) as pair:
            # The commands queued on the real clock; the pair's clock catches up with it.
            pair.clock.set(datetime.now(UTC) + timedelta(seconds=1))
            assert await pair.sync() == 5  # 3 follow-ups, 1 ticket and its follow-up
            in_tma = await _conversations(pair, tma.Message)
            in_crm = await _conversations(pair, crm.Message)
            assert in_crm.pop(old.phoned) == [("only here", "Customer called about a refund")]
            for conversation in [*in_tma.values(), *in_crm.values()]:
                assert {linked for linked, _body in conversation} == {"linked"}
            for ticket in old.tickets:
                bodies = [body for _sender, body, _at in ticket.tma]
                # Both sides have every message once; the follow-up arrived after the replies.
                assert [b for _s, b in in_tma[ticket.id]] == bodies
                assert [b for _s, b in in_crm[ticket.id]] == [
                    bodies[0],
                    bodies[1],
                    bodies[3],
                    bodies[2],
                ]
            async with pair.crm_runtime.db.sessions() as session:
                [lost_here] = (
                    await session.scalars(
                        select(crm.Ticket).where(crm.Ticket.external_id == old.lost.id)
                    )
                ).all()
                tickets = await session.scalar(select(func.count()).select_from(crm.Ticket))
            assert [b for _s, b in in_crm[lost_here.id]] == [b for _s, b, _a in old.lost.tma]
            assert lost_here.customer_telegram_id == old.lost.user_id
            assert tickets == len(old.tickets) + 2  # + the lost one, + the phoned-in one

            # A second run finds nothing to do, and nothing more is sent.
            capsys.readouterr()
            await run_backfill(old, tmp_path)
            out = capsys.readouterr().out
            assert "matched 0 message(s) both sides have, queued 0" in out
            pair.clock.set(datetime.now(UTC) + timedelta(seconds=1))
            assert await pair.sync() == 0


class _given:
    """An async context manager yielding a database URL made beforehand."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def __aenter__(self) -> str:
        return self.url

    async def __aexit__(self, *_exc: object) -> None:
        return None


def _peer(body: str, at: datetime, sender: str = "tma") -> PeerMessage:
    return PeerMessage(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), sender, body, at)


def test_matching_pairs_in_order_within_the_window_and_says_where_it_fails() -> None:
    """Same body twice: paired in order. A copy outside the window or with an edited body is
    not matched: that message would be sent again (the failure docs/cutover.md describes)."""
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    ours = [
        tma.Message(id=uuid.uuid4(), sender_type="tma", body="ok", created_at=t0),
        tma.Message(
            id=uuid.uuid4(), sender_type="tma", body="ok", created_at=t0 + timedelta(minutes=1)
        ),
        tma.Message(id=uuid.uuid4(), sender_type="tma", body="late", created_at=t0),
        tma.Message(id=uuid.uuid4(), sender_type="tma", body="edited ", created_at=t0),
    ]
    theirs = [
        _peer("ok", t0 + timedelta(seconds=70)),
        _peer("ok", t0 + timedelta(seconds=5)),
        _peer("late", t0 + timedelta(minutes=6)),
        _peer("edited", t0),
    ]
    found = match(ours, theirs, window=timedelta(minutes=5))
    assert [(m.body, p.created_at - t0) for m, p in found.pairs] == [
        ("ok", timedelta(seconds=5)),
        ("ok", timedelta(seconds=70)),
    ]
    assert [m.body for m in found.only_here] == ["late", "edited "]
    assert sorted(p.body for p in found.only_there) == ["edited", "late"]
