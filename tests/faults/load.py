"""The load: Mini App users and CRM operators conversing in many tickets at once, through each
backend's public API (initData on the TMA's user API, operator tokens on the CRM's).

Each ticket is one sequential script, so the order in which each side wrote a ticket's messages
is known exactly; many scripts run at once. Every write carries a client-made id, so a request
that failed because a process was killed is simply sent again: it creates nothing twice.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from generated.models import TicketStatus
from tma_impl.telegram import TelegramUser, mint_init_data

USERS = 50
# Past this share of the writes, the load trickles until `gate` opens (the fault schedule's
# traffic-dependent part is done), so that faults always have requests to break.
GATED_SHARE = 0.8
TRICKLE_SECONDS = 0.25
FIRST_USER_ID = 700_000


class LoadError(AssertionError):
    """A public API answered something a correct backend never answers."""


@dataclass
class TicketRecord:
    """What the load wrote in one ticket, in the order it wrote it."""

    index: int
    tma_id: uuid.UUID
    user_id: int
    crm_id: uuid.UUID | None = None
    user_messages: list[uuid.UUID] = field(default_factory=list)  # TMA ids
    operator_messages: list[uuid.UUID] = field(default_factory=list)  # CRM ids
    operator_bodies: list[str] = field(default_factory=list)  # what the user is notified of
    status_changes: int = 0
    found: asyncio.Event = field(default_factory=asyncio.Event)  # its CRM id is known


@dataclass(frozen=True)
class LoadConfig:
    messages: int
    messages_per_ticket: int = 10
    concurrency: int = 20  # tickets in progress at once
    min_seconds: float = 0.0  # spread the writes over at least this long (faults need traffic)
    status_change_rate: float = 0.08
    # The chance that a message follows the previous one at once, so that a ticket often has
    # several events waiting behind each other (the case that per-ticket order is about).
    burst_rate: float = 0.6
    seed: int = 5
    request_timeout_seconds: float = 15.0
    operation_timeout_seconds: float = 120.0  # retrying one write (a side may be down meanwhile)


class Load:
    """Drives the conversation; `records` is the ground truth the databases are checked against."""

    def __init__(
        self,
        config: LoadConfig,
        *,
        tma_urls: list[str],
        crm_urls: list[str],
        operator_tokens: list[str],
        bot_token: str,
    ) -> None:
        self.config = config
        self.tma_urls = tma_urls
        self.crm_urls = crm_urls
        self.operator_tokens = operator_tokens
        self.records: list[TicketRecord] = []
        self.written = 0
        self.client_retries = 0  # requests the load itself had to send again
        self.finished = asyncio.Event()
        self.gate = asyncio.Event()
        self._trickle = asyncio.Lock()
        now = datetime.now(UTC)
        self._user_headers = {
            user_id: {
                "Authorization": "tma "
                + mint_init_data(
                    bot_token=bot_token,
                    user=TelegramUser(
                        id=user_id,
                        first_name=f"User{user_id}",
                        username=f"user{user_id}",
                        language_code="en",
                    ),
                    auth_date=now,
                )
            }
            for user_id in range(FIRST_USER_ID, FIRST_USER_ID + USERS)
        }
        self._by_tma_id: dict[uuid.UUID, TicketRecord] = {}
        self._slot = 0
        self._round_robin = 0
        self._http: aiohttp.ClientSession | None = None
        self.started_monotonic = 0.0
        self.finished_monotonic = 0.0

    # --- the plan ----------------------------------------------------------------------------

    def _plan(self) -> list[int]:
        """Messages per ticket, summing to exactly `messages`."""
        total, per = self.config.messages, self.config.messages_per_ticket
        sizes = [per] * (total // per)
        if total % per:
            sizes.append(total % per)
        return sizes

    async def run(self) -> None:
        sizes = self._plan()
        self.records = [
            TicketRecord(index=i, tma_id=uuid.uuid4(), user_id=FIRST_USER_ID + i % USERS)
            for i in range(len(sizes))
        ]
        self._by_tma_id = {record.tma_id: record for record in self.records}
        self.started_monotonic = time.monotonic()
        limit = asyncio.Semaphore(self.config.concurrency)
        connector = aiohttp.TCPConnector(limit=self.config.concurrency * 2 + 8)
        async with aiohttp.ClientSession(connector=connector) as http:
            self._http = http
            discovery = asyncio.create_task(self._discover(), name="discover CRM tickets")

            async def one(record: TicketRecord, size: int) -> None:
                rng = random.Random(self.config.seed * 1_000_003 + record.index)
                async with limit:
                    await self._ticket(record, size, rng)

            try:
                await asyncio.gather(*(one(r, n) for r, n in zip(self.records, sizes, strict=True)))
            finally:
                discovery.cancel()
                await asyncio.gather(discovery, return_exceptions=True)
                self._http = None
        self.finished_monotonic = time.monotonic()
        self.finished.set()

    async def _pace(self, *, wait: bool = True) -> None:
        """Take the next write slot: writes are spread evenly over `min_seconds` at least."""
        slot, self._slot = self._slot, self._slot + 1
        if slot >= GATED_SHARE * self.config.messages and not self.gate.is_set():
            async with self._trickle:  # one write at a time, a little apart
                if not self.gate.is_set():
                    await asyncio.sleep(TRICKLE_SECONDS)
        if self.config.min_seconds <= 0 or not wait:
            return
        at = self.started_monotonic + slot * self.config.min_seconds / self.config.messages
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _ticket(self, record: TicketRecord, size: int, rng: random.Random) -> None:
        await self._pace()
        await self._open(record)
        for _ in range(size - 1):
            if rng.random() < self.config.status_change_rate:
                # The next message follows at once, racing the change to the other side.
                await self._change_status(record, rng)
                await self._pace(wait=False)
            else:
                await self._pace(wait=rng.random() >= self.config.burst_rate)
            if rng.random() < 0.5:
                await self._operator_replies(record, rng)
            else:
                await self._user_writes(record)
        if rng.random() < 0.3:
            await self._change_status(record, rng)

    # --- the actions -------------------------------------------------------------------------

    async def _open(self, record: TicketRecord) -> None:
        message_id = uuid.uuid4()
        await self._call(
            self.tma_urls,
            "POST",
            "/api/support/tickets",
            headers=self._user_headers[record.user_id],
            body={
                "id": str(record.tma_id),
                "subject": f"Load ticket {record.index}",
                "message": f"ticket {record.index}: first message",
                "message_id": str(message_id),
            },
        )
        record.user_messages.append(message_id)
        self.written += 1

    async def _user_writes(self, record: TicketRecord) -> None:
        message_id = uuid.uuid4()
        n = len(record.user_messages) + len(record.operator_messages)
        await self._call(
            self.tma_urls,
            "POST",
            f"/api/support/tickets/{record.tma_id}/messages",
            headers=self._user_headers[record.user_id],
            body={"id": str(message_id), "message": f"ticket {record.index}: user message {n}"},
        )
        record.user_messages.append(message_id)
        self.written += 1

    async def _operator_replies(self, record: TicketRecord, rng: random.Random) -> None:
        # The operator answers once the ticket shows up in the CRM's list.
        async with asyncio.timeout(self.config.operation_timeout_seconds):
            await record.found.wait()
        reply_id = uuid.uuid4()
        n = len(record.user_messages) + len(record.operator_messages)
        text = f"ticket {record.index}: operator reply {n}"
        await self._call(
            self.crm_urls,
            "POST",
            f"/api/crm/tickets/{record.crm_id}/messages",
            headers=self._operator(rng),
            body={"id": str(reply_id), "message": text},
        )
        record.operator_messages.append(reply_id)
        record.operator_bodies.append(text)
        self.written += 1

    async def _change_status(self, record: TicketRecord, rng: random.Random) -> None:
        if record.crm_id is not None and rng.random() < 0.5:
            status = rng.choice(sorted(TicketStatus))  # sorted: a seed replays the same choices
            await self._call(
                self.crm_urls,
                "POST",
                f"/api/crm/tickets/{record.crm_id}/status",
                headers=self._operator(rng),
                body={"status": status},
            )
        else:
            await self._call(
                self.tma_urls,
                "POST",
                f"/api/support/tickets/{record.tma_id}/status",
                headers=self._user_headers[record.user_id],
                body={"status": rng.choice(["closed", "open"])},
            )
        record.status_changes += 1

    def _operator(self, rng: random.Random) -> dict[str, str]:
        return {"Authorization": f"Bearer {rng.choice(self.operator_tokens)}"}

    async def _discover(self) -> None:
        """Operators find new tickets at the top of their list, as they would in the CRM's UI."""
        for sweep in itertools.count():
            if any(r.crm_id is None and r.user_messages for r in self.records):
                await self._find_crm_tickets(whole_list=sweep % 5 == 0)
            await asyncio.sleep(0.3)

    async def find_crm_tickets(self) -> None:
        """After the run: the CRM id of every ticket the load opened, from the operator API."""
        async with aiohttp.ClientSession() as http:
            self._http = http
            try:
                await self._find_crm_tickets(whole_list=True)
            finally:
                self._http = None

    async def _find_crm_tickets(self, *, whole_list: bool) -> None:
        """Most recently updated first: the first page holds the tickets being written now."""
        headers = {"Authorization": f"Bearer {self.operator_tokens[0]}"}
        offset = 0
        while True:
            page = await self._call(
                self.crm_urls, "GET", f"/api/crm/tickets?limit=200&offset={offset}", headers=headers
            )
            for summary in page:
                record = self._by_tma_id.get(uuid.UUID(summary["external_id"]))
                if record is not None and record.crm_id is None:
                    record.crm_id = uuid.UUID(summary["id"])
                    record.found.set()
            if len(page) < 200 or not whole_list:
                return
            offset += 200

    async def _call(
        self,
        urls: list[str],
        method: str,
        path: str,
        *,
        headers: dict[str, str],
        body: dict[str, Any] | None = None,
    ) -> Any:
        """One API call, sent again on connection errors and 5xx until it succeeds."""
        assert self._http is not None
        deadline = time.monotonic() + self.config.operation_timeout_seconds
        attempt = 0
        last = ""
        while True:
            self._round_robin += 1
            url = urls[self._round_robin % len(urls)] + path
            try:
                async with self._http.request(
                    method,
                    url,
                    json=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.config.request_timeout_seconds),
                ) as response:
                    content = await response.read()
                    if response.status < 300:
                        return json.loads(content)
                    last = f"{response.status} {content[:300]!r}"
                    if response.status < 500 and response.status not in (408, 429):
                        raise LoadError(f"{method} {path} answered {last}")
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            attempt += 1
            self.client_retries += 1
            if time.monotonic() > deadline:
                raise LoadError(f"{method} {path} kept failing for the whole deadline: {last}")
            await asyncio.sleep(min(0.05 * 2 ** min(attempt, 4), 0.5))
