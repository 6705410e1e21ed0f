"""A lean reference relay: the product's delivery path, same semantics, on aiohttp and sqlite3.

`make bench` serves it beside the product (bench/run.py) and reports every relay figure as
product / lean, so "how fast could this path be on this machine" is measured, not guessed. It is
a yardstick, never imported by the product. One process per side, as the product's `serve`:

    python bench/lean_relay.py tma|crm --port P --db FILE --peer-url URL

Secrets come from the environment (LEAN_BOT_TOKEN, LEAN_PEER_TOKEN, LEAN_INBOUND_TOKENS,
LEAN_SIGNING_SECRET, LEAN_ACCEPTED_SECRETS), which the bench fills with the product's
development values, and the contract version it announces from LEAN_CONTRACT_VERSION.

What it does, as the product does (docs/design.md §5, docs/delivery.md):
- the same database: the bench migrates it with the product's own Alembic migrations, so the same
  tables, columns, constraints and indexes are written (and the bench's queries read both alike);
- the TMA's user API (`POST /api/support/tickets`, `.../tickets/{id}/messages`): the Telegram
  initData HMAC check (the secret key derived from the bot token once, at start-up), its age and
  user checks, the user's rate limit, the body read strictly (JSON types, lengths, no NUL, the
  client's UUID ids; unknown fields ignored, as the product's tolerant reader does); then one
  transaction storing the message (insert-on-conflict on the client's id), the ticket's update
  (reopening a closed ticket), the change-log row, the Mini App's `ticket_events` row (numbered
  inside the transaction) and the outbox row. Opening a ticket also stores the user and both
  change-log rows, as the product does;
- the dispatcher: rounds of claim (due stream heads ordered, none behind an earlier undelivered
  event of its ticket, a lease per row, up to `per_stream` followers per ticket), send (streams in
  parallel up to `concurrency`, each stream in order, stopping at its first failure), settle in one
  transaction (receivers' message ids in one executemany, ticket links, one UPDATE marking the
  round delivered, failures backed off or made dead as the product classifies them);
- every request signed the Standard Webhooks way (HMAC-SHA256 over "id.timestamp.body"), with the
  bearer token and the `Contract-Version` header; the version each side's peer announces (on its
  requests, on its answers) is recorded, and every integration answer announces its own;
- the CRM's receiver (`POST /api/integration/tickets`, `/messages`): bearer token compared in
  constant time against each accepted token, signature headers parsed strictly and checked within
  the 5-minute window in constant time, the caller's rate limit, the contract's body read strictly
  (RFC 3339 date-times, hyphenated UUIDs, sender must be the caller), the link check (our ticket id
  must belong to the sender's ticket id), insert-on-conflict dedupe on (sender, external id) with
  the 200/409 replay rules, the change-log row and the ticket's update, in one transaction.

What it leaves out, and why that does not flatter it:
- no CRM-to-TMA direction, status changes, change feed reads, console or Mini App pages: not on
  the measured path (the bench never calls them on either relay);
- no metrics (/metrics counters and histograms), request ids or structured logs: the product's
  observability is part of its cost, so the ratio shows it as overhead. That is deliberate: the
  lean shows what the path itself costs;
- the rate limits are a fixed-window count in a dict, where the product uses the `limits`
  package's moving window in process: a few microseconds either way;
- no retry of a busy SQLite write lock with asyncio sleeps: the relay has one writer per file;
- attachments are validated but never sent by the bench (none in the relay's messages).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import sqlite3
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web

# --- shared: time, ids, validation ---------------------------------------------------------------

SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how the product's UTCDateTime stores a moment in SQLite
UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
URL_RE = re.compile(
    "^https://[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+$"
)
MIME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")
USERNAME = re.compile(r"[A-Za-z0-9_]{1,32}")
LANGUAGE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]+)*")
TELEGRAM_FILES = "https://api.telegram.org/file/"
CONTRACT_VERSION = "contract-version"
MAX_USER_ID = 2**52 - 1


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(SQLITE_TIME)


def moment(text: str) -> datetime:
    return datetime.strptime(text, SQLITE_TIME).replace(tzinfo=UTC)


class Invalid(Exception):
    """A request refused: status and a one-line reason (answered as problem+json)."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.headers = headers or {}


def problem(error: Invalid) -> web.Response:
    body = {"type": "about:blank", "title": "Refused", "status": error.status, "detail": str(error)}
    return web.Response(
        status=error.status,
        body=json.dumps(body).encode(),
        content_type="application/problem+json",
        headers=error.headers,
    )


def announcing(version: str) -> Any:
    """Every answer under /api/integration, refusals included, carries our contract version."""

    @web.middleware
    async def announce(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        if request.path.startswith("/api/integration"):
            response.headers[CONTRACT_VERSION] = version
        return response

    return announce


@web.middleware
async def problems(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A refused request answers problem+json."""
    try:
        return await handler(request)
    except Invalid as error:
        return problem(error)


def text(body: dict[str, Any], name: str, low: int, high: int, *, required: bool = True) -> Any:
    value = body.get(name)
    if value is None:
        if name in body:  # no property of the contract is nullable
            raise Invalid(422, f"{name} must not be null")
        if required:
            raise Invalid(422, f"{name} is required")
        return None
    if type(value) is not str or not low <= len(value) <= high or "\x00" in value:
        raise Invalid(422, f"{name} must be a string of {low} to {high} characters, no NUL")
    return value


def maybe_uuid(body: dict[str, Any], name: str) -> uuid.UUID | None:
    value = body.get(name)
    if value is None:
        if name in body:
            raise Invalid(422, f"{name} must not be null")
        return None
    if type(value) is not str or not UUID_RE.fullmatch(value):
        raise Invalid(422, f"{name} must be a hyphenated UUID")
    return uuid.UUID(value)


def a_uuid(body: dict[str, Any], name: str) -> uuid.UUID:
    value = maybe_uuid(body, name)
    if value is None:
        raise Invalid(422, f"{name} is required")
    return value


def an_int(value: Any, name: str, low: int, high: int) -> int:
    if type(value) is float and value.is_integer():
        value = int(value)  # JSON Schema: 5.0 is an integer
    if type(value) is not int or not low <= value <= high:
        raise Invalid(422, f"{name} must be an integer in [{low}, {high}]")
    return value


def date_time(body: dict[str, Any], name: str) -> datetime:
    value = body.get(name)
    match = DATE_TIME.fullmatch(value) if type(value) is str else None
    if match is None:
        raise Invalid(422, f"{name} must be an RFC 3339 date-time")
    year, month, day, hour, minute, second, fraction, sign, oh, om = match.groups()
    offset = timedelta(0)
    if sign:
        offset = timedelta(hours=int(oh), minutes=int(om)) * (1 if sign == "+" else -1)
    leap = second == "60"  # held as the last microsecond of its minute, as the product does
    try:
        parsed = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            59 if leap else int(second),
            999_999 if leap else int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=UTC,
        )
    except ValueError:
        raise Invalid(422, f"{name} is not a real date-time") from None
    return parsed - offset


def attachments(body: dict[str, Any]) -> list[dict[str, Any]]:
    value = body.get("attachments", [])
    if type(value) is not list or len(value) > 10:
        raise Invalid(422, "attachments must be a list of at most 10")
    out = []
    for item in value:
        if type(item) is not dict:
            raise Invalid(422, "an attachment is an object")
        url = text(item, "url", 9, 2048)
        if not URL_RE.match(url):
            raise Invalid(422, "attachment url must be https without spaces")
        if url.startswith(TELEGRAM_FILES):
            raise Invalid(422, "Telegram file URLs embed the bot token and are never passed on")
        mime = text(item, "mime_type", 3, 255)
        if not MIME_RE.match(mime):
            raise Invalid(422, "attachment mime_type is type/subtype")
        out.append(
            {
                "url": url,
                "file_name": text(item, "file_name", 1, 255),
                "mime_type": mime,
                "size": an_int(item.get("size"), "size", 0, 20_971_520),
            }
        )
    return out


async def json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise Invalid(415, "the body is application/json")
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise Invalid(400, "the body is not JSON") from None
    if type(body) is not dict:
        raise Invalid(422, "the body is a JSON object")
    return body


class RateLimit:
    """A fixed window per key (the product counts a moving window in process)."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self.windows: dict[str, tuple[int, int]] = {}

    def check(self, key: str) -> None:
        now = int(time.monotonic())
        start, used = self.windows.get(key, (now, 0))
        if start != now:
            start, used = now, 0
        if used >= self.per_second:
            raise Invalid(429, "too many requests", {"Retry-After": "1"})
        self.windows[key] = (start, used + 1)


class Database:
    """One writer connection on the loop's thread, as the product's SQLite path has."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA busy_timeout=30000")
        self.lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def transaction(self) -> Any:
        async with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


# --- TMA: the Mini App user API and the dispatcher -----------------------------------------------


class Tma:
    def __init__(self, args: argparse.Namespace) -> None:
        self.db = Database(args.db)
        self.peer_url = args.peer_url
        # Telegram's scheme: HMAC(key=HMAC("WebAppData", bot_token), data_check_string). The key
        # depends on the token only, so it is derived once.
        self.init_key = hmac.new(
            b"WebAppData", os.environ["LEAN_BOT_TOKEN"].encode(), hashlib.sha256
        ).digest()
        self.max_age = 24 * 3600  # TMA_INIT_DATA_MAX_AGE_SECONDS' default
        self.user_limit = RateLimit(100)  # TMA_USER_RATE_LIMIT's default, 100/second
        self.peer_token = os.environ["LEAN_PEER_TOKEN"]
        self.signing_key = secret_key(os.environ["LEAN_SIGNING_SECRET"])
        self.batch_size, self.per_stream = args.batch_size, args.per_stream
        self.concurrency = args.concurrency
        self.owner = f"lean-{os.getpid()}"
        self.contract_version = os.environ["LEAN_CONTRACT_VERSION"]
        self.peer_version: str | None = None
        self.wake = asyncio.Event()
        self.session: aiohttp.ClientSession | None = None
        self.task: asyncio.Task[None] | None = None

    # The user API.

    def user(self, request: web.Request) -> dict[str, Any]:
        scheme, _, init_data = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "tma" or not init_data.strip():
            raise Invalid(
                401, "Authorization: tma <initData> is required", {"WWW-Authenticate": "tma"}
            )
        fields: dict[str, str] = {}
        for key, value in parse_qsl(init_data.strip(), keep_blank_values=True):
            if key in fields:
                raise Invalid(401, f"duplicate field {key!r}", {"WWW-Authenticate": "tma"})
            fields[key] = value
        received = fields.pop("hash", "")
        check = "\n".join(f"{key}={fields[key]}" for key in sorted(fields))
        expected = hmac.new(self.init_key, check.encode(), hashlib.sha256).hexdigest()
        if not received or not hmac.compare_digest(expected.encode(), received.lower().encode()):
            raise Invalid(401, "initData is not signed by this bot", {"WWW-Authenticate": "tma"})
        auth_date = fields.get("auth_date", "")
        if not auth_date.isascii() or not auth_date.isdigit():
            raise Invalid(401, "invalid auth_date", {"WWW-Authenticate": "tma"})
        age = time.time() - int(auth_date)
        if age > self.max_age or age < -60:
            raise Invalid(401, "initData expired or from the future", {"WWW-Authenticate": "tma"})
        try:
            user = json.loads(fields.get("user", ""))
        except (ValueError, RecursionError):
            raise Invalid(401, "invalid user", {"WWW-Authenticate": "tma"}) from None
        if type(user) is not dict:
            raise Invalid(401, "invalid user", {"WWW-Authenticate": "tma"})
        user_id = user.get("id")
        if type(user_id) is not int or not 0 < user_id <= MAX_USER_ID:
            raise Invalid(401, "invalid user id", {"WWW-Authenticate": "tma"})
        first = user.get("first_name")
        if type(first) is not str or not first:
            raise Invalid(401, "invalid first_name", {"WWW-Authenticate": "tma"})
        for name in ("last_name", "username", "language_code"):
            if user.get(name) is not None and type(user[name]) is not str:
                raise Invalid(401, f"invalid {name}", {"WWW-Authenticate": "tma"})
        username, language = user.get("username"), user.get("language_code")
        self.user_limit.check(str(user_id))
        return {
            "id": user_id,
            "first_name": first[:64].replace("\x00", "\ufffd"),
            "last_name": (user.get("last_name") or "")[:64].replace("\x00", "\ufffd") or None,
            "username": username if username and USERNAME.fullmatch(username) else None,
            "language_code": (
                language
                if language and len(language) <= 35 and LANGUAGE.fullmatch(language)
                else None
            ),
        }

    async def open_ticket(self, request: web.Request) -> web.Response:
        user = self.user(request)
        body = await json_body(request)
        ticket_id = a_uuid(body, "id")
        subject = text(body, "subject", 1, 255)
        message = text(body, "message", 1, 4096)
        message_id = a_uuid(body, "message_id")
        files = attachments(body)
        now = datetime.now(UTC)
        at = stamp(now)
        async with self.db.transaction() as db:
            row = db.execute(
                "SELECT telegram_user_id, subject FROM tickets WHERE id = ?", (ticket_id.hex,)
            ).fetchone()
            if row is not None:
                if row != (user["id"], subject):
                    raise Invalid(409, f"Ticket {ticket_id} already exists with other content.")
                return web.json_response({"id": str(ticket_id), "subject": subject}, status=200)
            if db.execute("SELECT 1 FROM messages WHERE id = ?", (message_id.hex,)).fetchone():
                raise Invalid(409, f"Message id {message_id} is already used.")
            db.execute(
                "INSERT INTO telegram_users (id, first_name, last_name, username, language_code,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
                " first_name = excluded.first_name, last_name = excluded.last_name,"
                " username = excluded.username, language_code = excluded.language_code,"
                " updated_at = excluded.updated_at",
                (user["id"], user["first_name"], user["last_name"], user["username"],
                 user["language_code"], at),
            )  # fmt: skip
            db.execute(
                "INSERT INTO tickets (telegram_user_id, id, subject, status, status_changed_at,"
                " created_at, updated_at) VALUES (?, ?, ?, 'open', ?, ?, ?)",
                (user["id"], ticket_id.hex, subject, at, at, at),
            )
            seq = db.execute(
                "INSERT INTO messages (id, ticket_id, sender_type, body, attachments, created_at)"
                " VALUES (?, ?, 'tma', ?, ?, ?) RETURNING seq",
                (message_id.hex, ticket_id.hex, message, json.dumps(files), at),
            ).fetchone()[0]
            db.executemany(
                "INSERT INTO change_log (xid, kind, ticket_id, message_id, changed_at)"
                " VALUES (0, ?, ?, ?, ?)",
                [
                    ("ticket", ticket_id.hex, None, at),
                    ("message", ticket_id.hex, message_id.hex, at),
                ],
            )
            self.record_event(db, ticket_id, "open", seq, at)
            customer = {k: v for k, v in user.items() if v is not None}
            customer["telegram_user_id"] = customer.pop("id")
            request_body = {
                "external_ticket_id": str(ticket_id),
                "subject": subject,
                "message": message,
                "external_message_id": str(message_id),
                "customer": customer,
                "created_at": now.isoformat(),
            }
            if files:
                request_body["attachments"] = files
            self.enqueue(db, ticket_id, "ticket_created", message_id, request_body, at)
        self.wake.set()
        return web.json_response(
            {"id": str(ticket_id), "subject": subject, "status": "open",
             "created_at": now.isoformat(),
             "updated_at": now.isoformat(), "synced": False, "unread": 0},
            status=201,
        )  # fmt: skip

    async def write_message(self, request: web.Request) -> web.Response:
        user = self.user(request)
        try:
            ticket_id = uuid.UUID(request.match_info["ticket_id"])
        except ValueError:
            raise Invalid(422, "the ticket id is a UUID") from None
        body = await json_body(request)
        message_id = a_uuid(body, "id")
        message = text(body, "message", 1, 4096)
        files = attachments(body)
        now = datetime.now(UTC)
        at = stamp(now)
        async with self.db.transaction() as db:
            ticket = db.execute(
                "SELECT telegram_user_id, status, status_changed_at FROM tickets WHERE id = ?",
                (ticket_id.hex,),
            ).fetchone()
            if ticket is None or ticket[0] != user["id"]:
                raise Invalid(404, f"You have no ticket {ticket_id}.")
            stored = db.execute(
                "INSERT INTO messages (id, ticket_id, sender_type, body, attachments, created_at)"
                " VALUES (?, ?, 'tma', ?, ?, ?) ON CONFLICT (id) DO NOTHING RETURNING seq",
                (message_id.hex, ticket_id.hex, message, json.dumps(files), at),
            ).fetchone()
            if stored is None:  # the client's id is the idempotency key
                existing = db.execute(
                    "SELECT ticket_id, body FROM messages WHERE id = ?", (message_id.hex,)
                ).fetchone()
                if existing != (ticket_id.hex, message):
                    raise Invalid(409, f"Message {message_id} already exists with other content.")
                return web.json_response({"id": str(message_id), "body": message}, status=200)
            status = ticket[1]
            if status == "closed" and now > moment(ticket[2]):
                status = "open"  # a customer message reopens a closed ticket
                db.execute(
                    "UPDATE tickets SET updated_at = ?, status = ? WHERE id = ?",
                    (at, status, ticket_id.hex),
                )
            else:
                db.execute("UPDATE tickets SET updated_at = ? WHERE id = ?", (at, ticket_id.hex))
            db.execute(
                "INSERT INTO change_log (xid, kind, ticket_id, message_id, changed_at)"
                " VALUES (0, 'message', ?, ?, ?)",
                (ticket_id.hex, message_id.hex, at),
            )
            seq = self.record_event(db, ticket_id, status, stored[0], at)
            request_body: dict[str, Any] = {
                "external_ticket_id": str(ticket_id),
                "external_message_id": str(message_id),
                "sender": "tma",
                "message": message,
                "created_at": now.isoformat(),
            }
            if files:
                request_body["attachments"] = files
            self.enqueue(db, ticket_id, "message", message_id, request_body, at)
        self.wake.set()
        return web.json_response(
            {"id": str(message_id), "sender_type": "tma", "operator_name": None, "body": message,
             "attachments": files, "created_at": now.isoformat(), "delivered": False, "seq": seq},
            status=201,
        )  # fmt: skip

    @staticmethod
    def record_event(
        db: sqlite3.Connection, ticket_id: uuid.UUID, status: str, seq: int, at: str
    ) -> int:
        # Numbered inside the transaction, one more than the ticket's last, as the product does.
        return int(
            db.execute(
                "INSERT INTO ticket_events (ticket_id, seq, kind, message_seq, sender_type, status,"
                " created_at) VALUES (?1, (SELECT coalesce(max(seq), 0) + 1 FROM ticket_events"
                " WHERE ticket_id = ?1), 'message', ?2, 'tma', ?3, ?4) RETURNING seq",
                (ticket_id.hex, seq, status, at),
            ).fetchone()[0]
        )

    @staticmethod
    def enqueue(
        db: sqlite3.Connection,
        ticket_id: uuid.UUID,
        kind: str,
        message_id: uuid.UUID,
        request_body: dict[str, Any],
        at: str,
    ) -> None:
        payload = json.dumps({"message_id": str(message_id), "request": request_body})
        db.execute(
            "INSERT INTO outbox (webhook_id, ticket_id, channel, kind, payload, state, attempts,"
            " created_at, next_attempt_at) VALUES (?, ?, 'peer', ?, ?, 'pending', 0, ?, ?)",
            (uuid.uuid4().hex, ticket_id.hex, kind, payload, at, at),
        )

    # The dispatcher.

    async def deliver(self) -> None:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))
        while True:
            self.wake.clear()
            try:
                if await self.round():
                    continue
            except (sqlite3.Error, aiohttp.ClientError) as error:
                print(f"lean tma: round failed: {error!r}", file=sys.stderr, flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), 1.0)

    async def round(self) -> int:
        now = datetime.now(UTC)
        at, until = stamp(now), stamp(now + timedelta(seconds=60))
        async with self.db.transaction() as db:
            heads = [
                row[0]
                for row in db.execute(
                    "SELECT o.id FROM outbox o WHERE o.state = 'pending' AND o.next_attempt_at <= ?"
                    " AND (o.lease_expires_at IS NULL OR o.lease_expires_at < ?) AND NOT EXISTS"
                    " (SELECT e.id FROM outbox e WHERE e.ticket_id = o.ticket_id AND e.channel ="
                    " o.channel AND e.state IN ('pending', 'dead') AND e.id < o.id)"
                    " ORDER BY o.next_attempt_at, o.id LIMIT ?",
                    (at, at, self.batch_size),
                )
            ]
            if not heads:
                return 0
            marks = ",".join("?" * len(heads))
            heads = [
                row[0]
                for row in db.execute(
                    f"UPDATE outbox SET lease_owner = ?, lease_expires_at = ? WHERE id IN ({marks})"  # noqa: S608 - placeholders only
                    " AND state = 'pending' AND (lease_expires_at IS NULL OR lease_expires_at < ?)"
                    " RETURNING id",
                    (self.owner, until, *heads, at),
                )
            ]
            marks = ",".join("?" * len(heads))
            rows = db.execute(
                f"SELECT id, ticket_id, kind, payload, state, next_attempt_at, lease_expires_at,"  # noqa: S608
                f" webhook_id FROM outbox WHERE ticket_id IN (SELECT ticket_id FROM outbox WHERE"
                f" id IN ({marks})) AND state IN ('pending', 'dead') ORDER BY id",
                heads,
            ).fetchall()
            head_set = set(heads)
            streams: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
            stopped: set[str] = set()
            followers: list[int] = []
            for row in rows:
                ticket = row[1]
                if row[0] in head_set:
                    streams[ticket].append(row)
                    continue
                if ticket not in streams or ticket in stopped:
                    continue
                usable = (
                    row[4] == "pending"
                    and row[5] <= at
                    and (row[6] is None or row[6] < at)
                    and len(streams[ticket]) < self.per_stream
                )
                if not usable:
                    stopped.add(ticket)  # a gap: nothing behind it may go before it
                    continue
                streams[ticket].append(row)
                followers.append(row[0])
            if followers:
                marks = ",".join("?" * len(followers))
                leased = {
                    row[0]
                    for row in db.execute(
                        f"UPDATE outbox SET lease_owner = ?, lease_expires_at = ? WHERE id IN"  # noqa: S608
                        f" ({marks}) AND state = 'pending' AND (lease_expires_at IS NULL OR"
                        f" lease_expires_at < ?) RETURNING id",
                        (self.owner, until, *followers, at),
                    )
                }
                for ticket, stream in streams.items():
                    kept = [stream[0]]
                    for row in stream[1:]:
                        if row[0] not in leased:
                            break
                        kept.append(row)
                    streams[ticket] = kept
            marks = ",".join("?" * len(streams))
            links = dict(
                db.execute(
                    f"SELECT id, external_id FROM tickets WHERE id IN ({marks})",  # noqa: S608
                    list(streams),
                ).fetchall()
            )
        answers: list[tuple[tuple[Any, ...], int, dict[str, Any]]] = []
        limit = asyncio.Semaphore(self.concurrency)

        async def send_stream(ticket: str, stream: list[tuple[Any, ...]]) -> None:
            async with limit:
                for row in stream:
                    status, answer = await self.send(row, links.get(ticket))
                    answers.append((row, status, answer))
                    if status not in (200, 201):
                        return  # order: nothing behind a failed event goes this round
                    if row[2] == "ticket_created":
                        links[ticket] = uuid.UUID(answer["ticket_id"]).hex

        await asyncio.gather(*(send_stream(t, s) for t, s in streams.items()))
        await self.settle(answers, {row[0] for stream in streams.values() for row in stream})
        return len(answers)

    async def send(self, row: tuple[Any, ...], link: str | None) -> tuple[int, dict[str, Any]]:
        payload = json.loads(row[3])
        request_body = payload["request"]
        if link is not None and row[2] != "ticket_created":
            request_body["ticket_id"] = str(uuid.UUID(link))
        body = json.dumps(request_body).encode()
        webhook_id = str(uuid.UUID(row[7]))
        timestamp = int(time.time())
        path = (
            "/api/integration/tickets"
            if row[2] == "ticket_created"
            else "/api/integration/messages"
        )
        headers = {
            "Authorization": f"Bearer {self.peer_token}",
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self.signing_key, webhook_id, timestamp, body),
            CONTRACT_VERSION: self.contract_version,
        }
        if self.session is None:
            raise RuntimeError("the dispatcher's session is not open")
        try:
            async with self.session.post(
                self.peer_url + path, data=body, headers=headers, timeout=aiohttp.ClientTimeout(30)
            ) as response:
                announced = response.headers.get(CONTRACT_VERSION)
                if announced is not None and announced != self.peer_version:
                    self.peer_version = announced  # the product also logs the change
                answer = await response.json(content_type=None)
                return response.status, answer if isinstance(answer, dict) else {}
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            return 0, {"detail": repr(error)}

    async def settle(
        self, answers: list[tuple[tuple[Any, ...], int, dict[str, Any]]], claimed: set[int]
    ) -> None:
        """The round's outcomes in one transaction: message ids, ticket links, one UPDATE."""
        now = datetime.now(UTC)
        at = stamp(now)
        delivered, external, linked, retry, dead = [], [], [], [], []
        for row, status, answer in answers:
            message_id = uuid.UUID(json.loads(row[3])["message_id"]).hex
            if status in (200, 201):
                delivered.append(row[0])
                external.append((uuid.UUID(answer["message_id"]).hex, message_id))
                if row[2] == "ticket_created":
                    linked.append((uuid.UUID(answer["ticket_id"]).hex, row[1]))
            elif status in (0, 404, 408, 425, 429) or status >= 500:
                retry.append((stamp(now + timedelta(seconds=1)), str(status), row[0]))
            else:
                dead.append((str(answer.get("detail", status)), row[0]))
        async with self.db.transaction() as db:
            db.executemany(
                "UPDATE tickets SET external_id = ? WHERE id = ? AND external_id IS NULL", linked
            )
            db.executemany("UPDATE messages SET external_message_id = ? WHERE id = ?", external)
            if delivered:
                marks = ",".join("?" * len(delivered))
                db.execute(
                    f"UPDATE outbox SET state = 'delivered', attempts = attempts + 1,"  # noqa: S608
                    f" last_failure = NULL, lease_owner = NULL, lease_expires_at = NULL,"
                    f" delivered_at = ? WHERE id IN ({marks})",
                    (at, *delivered),
                )
            db.executemany(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_failure = ?,"
                " lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
                retry,
            )
            db.executemany(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?,"
                " lease_owner = NULL, lease_expires_at = NULL WHERE id = ?",
                dead,
            )
            sent = {row[0] for row, _, _ in answers}
            unsent = [event for event in claimed if event not in sent]
            if unsent:  # behind a failure in its stream: the lease is given back
                marks = ",".join("?" * len(unsent))
                db.execute(
                    f"UPDATE outbox SET lease_owner = NULL, lease_expires_at = NULL"  # noqa: S608
                    f" WHERE id IN ({marks})",
                    unsent,
                )


# --- CRM: the receiver -------------------------------------------------------------------------


class Crm:
    def __init__(self, args: argparse.Namespace) -> None:
        self.db = Database(args.db)
        self.tokens = [t.encode() for t in os.environ["LEAN_INBOUND_TOKENS"].split(",")]
        self.keys = [secret_key(s) for s in os.environ["LEAN_ACCEPTED_SECRETS"].split(",")]
        self.limit = RateLimit(10_000)  # CRM_INTEGRATION_RATE_LIMIT's default, 10000/second
        self.peer_version: str | None = None

    def authenticate(self, request: web.Request, body: bytes) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        # Every accepted token compared, in constant time each, no early exit.
        matched = False
        for accepted in self.tokens:
            matched |= hmac.compare_digest(token.encode(), accepted)
        if scheme.lower() != "bearer" or not matched:
            raise Invalid(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
        msg_id = request.headers.get("webhook-id", "")
        timestamp = request.headers.get("webhook-timestamp", "")
        signatures = request.headers.get("webhook-signature", "")
        if not re.fullmatch(r"[\x21-\x7e]{1,256}", msg_id) or not re.fullmatch(
            r"[0-9]{1,12}", timestamp
        ):
            raise Invalid(401, "webhook-id and webhook-timestamp are required and well formed")
        if abs(int(timestamp) - time.time()) > 300:
            raise Invalid(401, "webhook-timestamp is outside the 5-minute window")
        entries = signatures.split()
        if len(signatures) > 2048 or not 0 < len(entries) <= 16:
            raise Invalid(401, "webhook-signature is malformed")
        presented = []
        for entry in entries:
            version, comma, value = entry.partition(",")
            if not comma or not version or not value:
                raise Invalid(401, "webhook-signature entries are <version>,<base64>")
            if version == "v1":
                presented.append(entry.encode())
        expected = [sign(key, msg_id, int(timestamp), body).encode() for key in self.keys]
        matched = False
        for candidate in presented:
            for wanted in expected:
                matched |= hmac.compare_digest(candidate, wanted)
        if not matched:
            raise Invalid(401, "no webhook-signature matches an accepted secret")
        self.limit.check("tma")
        announced = request.headers.get(CONTRACT_VERSION)
        if announced != self.peer_version:
            self.peer_version = announced  # the product also logs the change

    async def read(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        self.authenticate(request, raw)
        if request.content_type != "application/json":
            raise Invalid(415, "the body is application/json")
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise Invalid(400, "the body is not JSON") from None
        if type(body) is not dict:
            raise Invalid(422, "the body is a JSON object")
        return body

    async def create_ticket(self, request: web.Request) -> web.Response:
        body = await self.read(request)
        external_ticket = a_uuid(body, "external_ticket_id")
        subject = text(body, "subject", 1, 255)
        message = text(body, "message", 1, 4096)
        external_message = a_uuid(body, "external_message_id")
        files = attachments(body)
        created_at = date_time(body, "created_at")
        customer = body.get("customer")
        if type(customer) is not dict:
            raise Invalid(422, "customer is an object")
        telegram_id = an_int(customer.get("telegram_user_id"), "telegram_user_id", 1, 2**53 - 1)
        first = text(customer, "first_name", 1, 64)
        last = text(customer, "last_name", 0, 64, required=False)
        username = text(customer, "username", 1, 32, required=False)
        language = text(customer, "language_code", 2, 35, required=False)
        if (username and not USERNAME.fullmatch(username)) or (
            language and not LANGUAGE.fullmatch(language)
        ):
            raise Invalid(422, "customer username or language_code does not match its pattern")
        at = stamp(created_at)
        async with self.db.transaction() as db:
            ticket_id, message_id = uuid.uuid4(), uuid.uuid4()
            row = db.execute(
                "INSERT INTO tickets (customer_telegram_id, customer_first_name,"
                " customer_last_name,"
                " customer_username, customer_language, id, external_id, subject, status,"
                " status_changed_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?,"
                " 'open', ?, ?, ?) ON CONFLICT (external_id) DO NOTHING RETURNING id",
                (telegram_id, first, last, username, language, ticket_id.hex, external_ticket.hex,
                 subject, at, at, at),
            ).fetchone()  # fmt: skip
            if row is None:  # a replay: the same answer as the first time
                found = db.execute(
                    "SELECT t.id, m.id, t.status, t.subject FROM tickets t JOIN messages m ON"
                    " m.ticket_id = t.id AND m.sender_type = 'tma' AND m.external_message_id = ?"
                    " WHERE t.external_id = ?",
                    (external_message.hex, external_ticket.hex),
                ).fetchone()
                if found is None or found[3] != subject:
                    raise Invalid(409, "the ticket was already received with other content")
                ticket_hex, message_hex, status = found[:3]
                code = 200
            else:
                db.execute(
                    "INSERT INTO messages (id, external_message_id, sender_type, body, attachments,"
                    " created_at, ticket_id) VALUES (?, ?, 'tma', ?, ?, ?, ?)",
                    (message_id.hex, external_message.hex, message, json.dumps(files), at,
                     ticket_id.hex),
                )  # fmt: skip
                db.executemany(
                    "INSERT INTO change_log (xid, kind, ticket_id, message_id, changed_at)"
                    " VALUES (0, ?, ?, ?, ?)",
                    [
                        ("ticket", ticket_id.hex, None, at),
                        ("message", ticket_id.hex, message_id.hex, at),
                    ],
                )
                ticket_hex, message_hex, status, code = ticket_id.hex, message_id.hex, "open", 201
        return web.json_response(
            {"ticket_id": str(uuid.UUID(ticket_hex)), "external_ticket_id": str(external_ticket),
             "message_id": str(uuid.UUID(message_hex)), "status": status},
            status=code,
        )  # fmt: skip

    async def post_message(self, request: web.Request) -> web.Response:
        body = await self.read(request)
        ticket_ref = maybe_uuid(body, "ticket_id")
        external_ticket = a_uuid(body, "external_ticket_id")
        external_message = a_uuid(body, "external_message_id")
        if body.get("sender") not in ("tma", "crm"):
            raise Invalid(422, "sender is tma or crm")
        if body["sender"] != "tma":
            raise Invalid(403, "a peer sends its own messages only")
        message = text(body, "message", 1, 4096)
        files = attachments(body)
        created_at = date_time(body, "created_at")
        text(body, "operator_name", 1, 128, required=False)
        at = stamp(created_at)
        async with self.db.transaction() as db:
            if ticket_ref is not None:
                ticket = db.execute(
                    "SELECT id, external_id, status, status_changed_at, updated_at FROM tickets"
                    " WHERE id = ?",
                    (ticket_ref.hex,),
                ).fetchone()
                if ticket is None:
                    raise Invalid(404, f"No ticket {ticket_ref} here.")
                if ticket[1] is None:
                    if db.execute(
                        "SELECT id FROM tickets WHERE external_id = ?", (external_ticket.hex,)
                    ).fetchone():
                        raise Invalid(409, "external_ticket_id is linked to another ticket here")
                    db.execute(
                        "UPDATE tickets SET external_id = ? WHERE id = ?",
                        (external_ticket.hex, ticket_ref.hex),
                    )
                elif ticket[1] != external_ticket.hex:
                    raise Invalid(409, f"Ticket {ticket_ref} is linked to another external ticket")
            else:
                ticket = db.execute(
                    "SELECT id, external_id, status, status_changed_at, updated_at FROM tickets"
                    " WHERE external_id = ?",
                    (external_ticket.hex,),
                ).fetchone()
                if ticket is None:
                    raise Invalid(404, f"No ticket linked to {external_ticket} here (yet).")
            message_id = uuid.uuid4()
            files_json = json.dumps(files)
            stored = db.execute(
                "INSERT INTO messages (id, external_message_id, sender_type, body, attachments,"
                " created_at, ticket_id) VALUES (?, ?, 'tma', ?, ?, ?, ?)"
                " ON CONFLICT (sender_type, external_message_id) DO NOTHING RETURNING seq",
                (message_id.hex, external_message.hex, message, files_json, at, ticket[0]),
            ).fetchone()
            code = 201
            if stored is None:  # a replay: same ticket and body, or the key was reused
                existing = db.execute(
                    "SELECT id, ticket_id, body, attachments FROM messages WHERE sender_type ="
                    " 'tma' AND external_message_id = ?",
                    (external_message.hex,),
                ).fetchone()
                if existing is None or existing[1:] != (ticket[0], message, files_json):
                    raise Invalid(409, "the message was already received with other content")
                message_id, code = uuid.UUID(existing[0]), 200
            else:
                db.execute(
                    "INSERT INTO change_log (xid, kind, ticket_id, message_id, changed_at)"
                    " VALUES (0, 'message', ?, ?, ?)",
                    (ticket[0], message_id.hex, stamp(datetime.now(UTC))),
                )
                reopen = ticket[2] == "closed" and created_at > moment(ticket[3])
                later = created_at > moment(ticket[4])
                if reopen or later:
                    db.execute(
                        "UPDATE tickets SET status = ?, updated_at = max(updated_at, ?)"
                        " WHERE id = ?",
                        ("open" if reopen else ticket[2], at, ticket[0]),
                    )
        return web.json_response(
            {"message_id": str(message_id), "ticket_id": str(uuid.UUID(ticket[0])),
             "external_message_id": str(external_message)},
            status=code,
        )  # fmt: skip


# --- serving -----------------------------------------------------------------------------------


async def ready(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ready"})


def build(args: argparse.Namespace) -> web.Application:
    app = web.Application(
        client_max_size=1024 * 1024,
        middlewares=[announcing(os.environ["LEAN_CONTRACT_VERSION"]), problems],
    )
    app.router.add_get("/health/ready", ready)
    if args.side == "tma":
        tma = Tma(args)
        app.router.add_post("/api/support/tickets", tma.open_ticket)
        app.router.add_post("/api/support/tickets/{ticket_id}/messages", tma.write_message)

        async def start(_app: web.Application) -> None:
            tma.task = asyncio.create_task(tma.deliver())

        async def stop(_app: web.Application) -> None:
            if tma.task is not None:
                tma.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await tma.task
            if tma.session is not None:
                await tma.session.close()

        app.on_startup.append(start)
        app.on_cleanup.append(stop)
    else:
        crm = Crm(args)
        app.router.add_post("/api/integration/tickets", crm.create_ticket)
        app.router.add_post("/api/integration/messages", crm.post_message)
    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("side", choices=["tma", "crm"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--peer-url", required=True)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--per-stream", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    import uvloop  # the product serves on uvloop too

    uvloop.install()
    web.run_app(build(args), host="127.0.0.1", port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
