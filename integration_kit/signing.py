"""Standard Webhooks signatures on every integration request (see docs/delivery.md, "Signed
requests").

A request carries, on top of its bearer token:

- `webhook-id`: the event's stable id (the outbox row's `webhook_id`, the same on every retry and
  after a restore from backup); a fresh UUID for a request that delivers no event;
- `webhook-timestamp`: integer seconds since the epoch, by the sender's clock;
- `webhook-signature`: `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`; several space-separated
  signatures may be given, one matching is enough.

The receiver refuses a request whose headers are missing or malformed, whose timestamp lies more
than five minutes from its own clock, or that no accepted secret signed. There is no replay cache:
inside the window a replay is harmless because every operation is idempotent.

The `standardwebhooks` package (the scheme's reference implementation) computes the signatures
here, on both sides: `Webhook(secret).sign(...)` for every UTF-8 body (all contract traffic); its
`hmac_data` over the raw bytes for a body that is not UTF-8, which `sign` cannot take. Its `verify`
is not used, because

- it reads the wall clock (`datetime.now`), while a backend checks against its injected clock
  (tests run on a manual clock far from today);
- it takes one secret, while a receiver accepts a list during a rotation;
- it raises on malformed headers (`ValueError` from a signature without a comma, `binascii.Error`
  from bad base64, a float timestamp taken as valid), where a receiver answers one clean 401, and
  it checks no lengths.

So verification is written here, around `sign`: strict header parsing, the window against the
injected clock, and a constant-time comparison with the signature of each accepted secret.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from functools import lru_cache

import httpx
from standardwebhooks import Webhook
from standardwebhooks.webhooks import hmac_data

from integration_kit.clock import Clock

WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"
# How far a request's timestamp may lie from the receiver's clock, either way.
TOLERANCE_SECONDS = 300
SECRET_PREFIX = "whsec_"  # noqa: S105 - the scheme's prefix, not a secret
# Standard Webhooks secrets are 24 to 64 random bytes.
SECRET_BYTES = (24, 64)

# Bounds on what a receiver reads before computing anything: a generous id (Svix ids are ~30
# characters, UUIDs 36), at most 16 signatures (a sender mid-rotation sends two).
_ID = re.compile(r"[\x21-\x7e]{1,256}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_MAX_SIGNATURE_HEADER = 2048
_MAX_SIGNATURES = 16

# The id of the event being sent, set by the dispatcher around each send.
_event_webhook_id: ContextVar[str | None] = ContextVar("event_webhook_id", default=None)


class SignatureRefused(Exception):
    """The request's signature headers are missing, malformed, stale, or match no secret."""


def secret_error(secret: str) -> str | None:
    """Why `secret` is no Standard Webhooks secret (`whsec_` + base64 of 24-64 bytes), or None."""
    if not secret.startswith(SECRET_PREFIX):
        return f"must start with {SECRET_PREFIX}"
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return f"must be {SECRET_PREFIX} followed by base64"
    low, high = SECRET_BYTES
    if not low <= len(raw) <= high:
        return f"must hold {low} to {high} bytes (it holds {len(raw)})"
    return None


@lru_cache(maxsize=32)
def _webhook(secret: str) -> Webhook:
    # Webhook() decodes the base64 secret each time; a process uses a handful of secrets.
    return Webhook(secret)


def compute_signature(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64>`: the Standard Webhooks signature of `body` with this id and time."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        # The package signs text only; the scheme signs bytes. Contract bodies are JSON (UTF-8),
        # so this is for the odd body a fuzzer sends: the same HMAC, over the raw bytes.
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
        content = f"{msg_id}.{timestamp}.".encode() + body
        return "v1," + base64.b64encode(hmac_data(key, content)).decode()
    return _webhook(secret).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), text)


def signature_headers(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers that sign `body`."""
    return {
        WEBHOOK_ID: msg_id,
        WEBHOOK_TIMESTAMP: str(timestamp),
        WEBHOOK_SIGNATURE: compute_signature(secret, msg_id=msg_id, timestamp=timestamp, body=body),
    }


def verify_signature(
    headers: Mapping[str, str], body: bytes, *, secrets: Sequence[str], now: datetime
) -> None:
    """Raise SignatureRefused unless one of `secrets` signed `body` with these headers, at a
    timestamp within TOLERANCE_SECONDS of `now`."""
    msg_id = headers.get(WEBHOOK_ID)
    timestamp = headers.get(WEBHOOK_TIMESTAMP)
    signatures = headers.get(WEBHOOK_SIGNATURE)
    if not (msg_id and timestamp and signatures):
        raise SignatureRefused(
            f"The {WEBHOOK_ID}, {WEBHOOK_TIMESTAMP} and {WEBHOOK_SIGNATURE} headers are required."
        )
    if not _ID.fullmatch(msg_id):
        raise SignatureRefused(f"{WEBHOOK_ID} must be 1 to 256 visible ASCII characters.")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SignatureRefused(f"{WEBHOOK_TIMESTAMP} must be integer seconds since the epoch.")
    skew = int(timestamp) - now.timestamp()
    if abs(skew) > TOLERANCE_SECONDS:
        raise SignatureRefused(
            f"{WEBHOOK_TIMESTAMP} is {abs(skew):.0f} s "
            f"{'ahead of' if skew > 0 else 'behind'} the receiver's clock; at most "
            f"{TOLERANCE_SECONDS} s are accepted."
        )
    presented = _v1_signatures(signatures)
    expected = [
        compute_signature(secret, msg_id=msg_id, timestamp=int(timestamp), body=body)
        for secret in secrets
    ]
    # Every pair is compared (no early exit), in constant time each.
    matched = False
    for candidate in presented:
        for wanted in expected:
            matched |= hmac.compare_digest(candidate.encode(), wanted.encode())
    if not matched:
        raise SignatureRefused(f"No {WEBHOOK_SIGNATURE} matches an accepted secret.")


def _v1_signatures(header: str) -> list[str]:
    if len(header) > _MAX_SIGNATURE_HEADER:
        raise SignatureRefused(f"{WEBHOOK_SIGNATURE} is longer than {_MAX_SIGNATURE_HEADER}.")
    entries = header.split()
    if len(entries) > _MAX_SIGNATURES:
        raise SignatureRefused(f"{WEBHOOK_SIGNATURE} holds more than {_MAX_SIGNATURES} entries.")
    found = []
    for entry in entries:
        version, comma, value = entry.partition(",")
        if not comma or not version or not value:
            raise SignatureRefused(f"{WEBHOOK_SIGNATURE} entries are <version>,<base64>.")
        if version == "v1":  # other versions are for other schemes: skipped, as the spec says
            found.append(entry)
    if not found:
        raise SignatureRefused(f"{WEBHOOK_SIGNATURE} holds no v1 signature.")
    return found


@contextmanager
def signing_event(webhook_id: str) -> Iterator[None]:
    """Requests sent inside the block carry `webhook_id` (the event's) as their webhook-id."""
    token = _event_webhook_id.set(webhook_id)
    try:
        yield
    finally:
        _event_webhook_id.reset(token)


class SigningTransport(httpx.AsyncBaseTransport):
    """Signs each request over the exact bytes it sends, then passes it on.

    Below the generated client, so every operation (any method, any body, an empty one
    included) is signed without changing a generated call. `secret` is read per request, so a
    sender switched to a new secret (settings changed in place) signs with it at once.
    """

    def __init__(
        self, inner: httpx.AsyncBaseTransport, *, secret: Callable[[], str], clock: Clock
    ) -> None:
        self.inner = inner
        self.secret = secret
        self.clock = clock

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        msg_id = _event_webhook_id.get() or str(uuid.uuid4())
        timestamp = int(self.clock.now().timestamp())
        request.headers.update(
            signature_headers(self.secret(), msg_id=msg_id, timestamp=timestamp, body=body)
        )
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
