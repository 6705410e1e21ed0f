"""`make bench`, part 3: the Mini App.

1. Operator reply -> visible on an open Mini App event stream: operators reply through the CRM's
   API while the customers' streams are open on the TMA (plain stream clients, not browsers, so
   chromium does not compete for the cores); p50/p99 from the reply's POST to the line read on
   the stream. Beside it, from the same replies, the API-only delivery latency: POST to the CRM
   recording the TMA's acknowledgement. The difference is what the Mini App's live path adds.
   One browser-measured figure beside them: the same, to the reply drawn in chromium's page.
2. Bytes of the first screen (the tickets list), as transferred by chromium, compressed;
   Telegram's script excluded (it is Telegram's, cached by its clients). Goal: < 100 KB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from run import (
    SQLITE_TIME,
    Backend,
    MiniAppUsers,
    client,
    count,
    free_port,
    percentile,
    running,
    wait_for_count,
)

from tma_impl.miniapp.assets import load_assets
from tma_impl.settings import TmaSettings
from tma_impl.telegram import TelegramUser

ROOT = Path(__file__).resolve().parents[1]


def add_operator(db: Path) -> str:
    env = {**os.environ, "CRM_DATABASE_URL": f"sqlite:///{db}"}
    output = subprocess.run(
        [sys.executable, "-m", "crm_impl", "operators", "add", "Bench operator"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return output.strip().splitlines()[-1].split(": ", 1)[-1]


def crm_ticket_ids(db: Path) -> dict[str, str]:
    """The CRM's id of each TMA ticket (SQLite keeps UUIDs as 32 hex digits)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT id, external_id FROM tickets").fetchall()
    return {str(uuid.UUID(external)): str(uuid.UUID(own)) for own, external in rows}


def acknowledged(db: Path) -> dict[str, datetime]:
    """When the CRM recorded each reply as stored by the TMA."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT json_extract(payload, '$.message_id'), delivered_at FROM outbox "
            "WHERE kind = 'message' AND state = 'delivered'"
        ).fetchall()
    return {
        str(uuid.UUID(m)): datetime.strptime(at, SQLITE_TIME).replace(tzinfo=UTC) for m, at in rows
    }


class Streams:
    """One open event stream per ticket; records when each reply's line arrived."""

    def __init__(self, session: aiohttp.ClientSession, url: str, users: MiniAppUsers) -> None:
        self.session, self.url, self.users = session, url, users
        self.seen: dict[str, float] = {}  # body -> wall clock seconds
        self.tasks: list[asyncio.Task[None]] = []
        self.opened = 0
        self.changed = asyncio.Condition()

    async def open(self) -> None:
        for n, ticket in enumerate(self.users.tickets):
            self.tasks.append(asyncio.create_task(self._read(ticket, self.users.headers[n])))
        async with self.changed:
            await self.changed.wait_for(lambda: self.opened == len(self.tasks))

    async def wait_for_replies(self, total: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: len(self.seen) >= total)

    async def _read(self, ticket: str, headers: dict[str, str]) -> None:
        url = f"{self.url}/api/support/tickets/{ticket}/events?after=1"
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with self.session.get(url, headers=headers, timeout=timeout) as response:
            async for raw in response.content:
                now = time.time()
                line = json.loads(raw)
                async with self.changed:
                    if line["kind"] == "open":
                        self.opened += 1
                    elif line["kind"] == "message":
                        self.seen[line["message"]["body"]] = now
                    self.changed.notify_all()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def reply(
    session: aiohttp.ClientSession, crm_url: str, token: str, crm_ticket: str, text: str
) -> str:
    async with session.post(
        f"{crm_url}/api/crm/tickets/{crm_ticket}/messages",
        json={"message": text},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        if response.status != 201:
            raise RuntimeError(f"reply: {response.status} {await response.text()}")
        return str((await response.json())["id"])


async def measure(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    folder = work / "miniapp"
    folder.mkdir(parents=True)
    tma_port, crm_port = free_port(), free_port()
    crm = Backend("crm", crm_port, folder / "crm.db", tma_port)
    tma = Backend("tma", tma_port, folder / "tma.db", crm_port)
    async with client() as session:
        with running(tma, crm):
            await crm.start(session, folder / "crm.log")
            await tma.start(session, folder / "tma.log")
            token = add_operator(crm.db)
            users = MiniAppUsers(session, tma.url, args.miniapp_streams)
            await users.open_tickets(16)
            await wait_for_count(crm.db, "SELECT count(*) FROM tickets", args.miniapp_streams, 60)
            crm_ids = crm_ticket_ids(crm.db)
            streams = Streams(session, tma.url, users)
            await streams.open()

            # Open loop at a modest rate (a helpdesk's replies, not a load test).
            sent: dict[str, tuple[str, float, datetime]] = {}  # body -> (crm id, t, at)
            total, rate = args.miniapp_replies, args.miniapp_rate
            start = time.monotonic()

            async def one(i: int) -> None:
                ticket = users.tickets[i % len(users.tickets)]
                body = f"reply {i} {uuid.uuid4().hex[:6]}"
                at, moment = datetime.now(UTC), time.time()
                message_id = await reply(session, crm.url, token, crm_ids[ticket], body)
                sent[body] = (message_id, moment, at)

            tasks = []
            for i in range(total):
                delay = start + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)
            with contextlib.suppress(TimeoutError):  # a reply never seen is reported as such
                async with asyncio.timeout(60):
                    await streams.wait_for_replies(total)
            await streams.close()
            browser = await browser_figure(session, tma.url, crm.url, token, crm_ids, users)
        acks = acknowledged(crm.db)
    stream_ms = [(streams.seen[b] - t) * 1000 for b, (_, t, _) in sent.items() if b in streams.seen]
    api_ms = [(acks[m] - at).total_seconds() * 1000 for m, _, at in sent.values() if m in acks]
    return {
        "replies": total,
        "rate_per_s": rate,
        "streams": args.miniapp_streams,
        "seen_on_stream": len(stream_ms),
        "stream": {"p50_ms": pct(stream_ms, 50), "p99_ms": pct(stream_ms, 99)},
        "api_only": {"p50_ms": pct(api_ms, 50), "p99_ms": pct(api_ms, 99)},
        "stream_vs_api_p50": round(statistics.median(stream_ms) / statistics.median(api_ms), 2)
        if stream_ms and api_ms
        else None,
        **browser,
        **first_screen_assets(),
    }


def pct(values: list[float], q: float) -> float | None:
    return round(percentile(values, q), 1) if values else None


def first_screen_assets() -> dict[str, Any]:
    """What the first screen loads of our own files, gzip as served and plain (the baseline)."""
    assets = load_assets()
    files = [assets.index, *assets.files.values()]
    return {
        "assets_plain_bytes": sum(len(a.body) for a in files),
        "assets_gzip_bytes": sum(len(a.gzipped) for a in files),
    }


async def browser_figure(
    session: aiohttp.ClientSession,
    tma_url: str,
    crm_url: str,
    token: str,
    crm_ids: dict[str, str],
    users: MiniAppUsers,
) -> dict[str, Any]:
    """In chromium (when there is one): bytes of the first screen, then a few replies timed from
    the POST to the page drawing them."""
    # The browser tests' Telegram double and off-machine guard, so the page loads as in Telegram.
    sys.path.insert(0, str(ROOT))
    try:
        from playwright.async_api import async_playwright

        from tests.browser.miniapp.telegram_double import TelegramLaunch
        from tests.browser.support import PHONE, chromium_path, keep_on_this_machine
    except ImportError as exc:
        return {"browser": f"skipped: {exc}"}
    path = chromium_path()
    if path is None:
        return {"browser": "skipped: no chromium"}
    launch = TelegramLaunch(
        bot_token=TmaSettings().dev_bot_token,
        user=TelegramUser(id=100_000, first_name="User0", language_code="en"),
    )
    ticket = users.tickets[0]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=path, headless=True)
        context = await browser.new_context(viewport=PHONE)
        await keep_on_this_machine(context, telegram_script=launch.script)
        page = await context.new_page()
        requests: list[Any] = []
        page.on("requestfinished", lambda request: requests.append(request))
        await page.goto(f"{tma_url}/app/")
        await page.wait_for_selector("section.list-screen[data-loaded=true]")
        own = [r for r in requests if r.url.startswith(tma_url)]
        sizes = [await r.sizes() for r in own]
        transferred = sum(s["responseBodySize"] + s["responseHeadersSize"] for s in sizes)

        await page.goto(f"{tma_url}/app/?ticket={ticket}")
        await page.wait_for_selector("section.conversation-screen[data-live=true]")
        await page.evaluate(
            """() => { window.__drawn = {};
              new MutationObserver(() => {
                for (const p of document.querySelectorAll('li.message p.body'))
                  window.__drawn[p.textContent] ??= Date.now();
              }).observe(document.body, {childList: true, subtree: true}); }"""
        )
        timings = []
        for i in range(20):
            body = f"browser reply {i}"
            moment = time.time() * 1000
            await reply(session, crm_url, token, crm_ids[ticket], body)
            await page.wait_for_function("(body) => window.__drawn[body]", arg=body)
            timings.append(await page.evaluate("(body) => window.__drawn[body]", body) - moment)
        await browser.close()
    return {
        "first_screen_transferred_bytes": transferred,
        "first_screen_requests": len(own),
        "browser_reply_visible": {"p50_ms": pct(timings, 50), "max_ms": pct(timings, 100)},
    }


def report(results: dict[str, Any]) -> None:
    print("\nMini App: operator reply (CRM API) -> seen by the customer, SQLite, one process each")
    print(
        f"  {results['replies']} replies at {results['rate_per_s']}/s over "
        f"{results['streams']} open streams ({results['seen_on_stream']} seen on a stream)"
    )
    print(
        f"  API-only delivery (CRM -> TMA acknowledged): p50 {results['api_only']['p50_ms']} ms,"
        f" p99 {results['api_only']['p99_ms']} ms"
    )
    print(
        f"  visible on the Mini App's event stream:     p50 {results['stream']['p50_ms']} ms,"
        f" p99 {results['stream']['p99_ms']} ms  (x{results['stream_vs_api_p50']} of API-only"
        " p50)"
    )
    if "browser_reply_visible" in results:
        figure = results["browser_reply_visible"]
        print(
            f"  drawn in chromium's page (20 replies):      p50 {figure['p50_ms']} ms,"
            f" max {figure['max_ms']} ms"
        )
        print(
            f"First screen: {results['first_screen_transferred_bytes']:,} bytes transferred in"
            f" {results['first_screen_requests']} requests (goal < 100 KB; Telegram's script"
            " excluded)"
        )
    else:
        print(f"  browser figures {results.get('browser')}")
    print(
        f"  the page's own files: {results['assets_gzip_bytes']:,} bytes gzip,"
        f" {results['assets_plain_bytes']:,} plain"
    )


__all__ = ["count", "measure", "report"]
