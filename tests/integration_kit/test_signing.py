"""Standard Webhooks signatures as integration_kit/signing.py makes and checks them: the same bytes
as the reference implementation, and every malformed, stale or wrong header refused cleanly."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from standardwebhooks import Webhook

from integration_kit.clock import ManualClock
from integration_kit.signing import (
    SignatureRefused,
    SigningTransport,
    compute_signature,
    signature_headers,
    signing_event,
    verify_signature,
)

SECRET = "whsec_" + base64.b64encode(b"a test secret of thirty-two bytes").decode()
OTHER = "whsec_" + base64.b64encode(b"another secret, also long enough").decode()
NOW = datetime(2031, 5, 17, 12, 0, tzinfo=UTC)  # far from today: only the injected clock counts
BODY = '{"message":"Привет","status":"open"}'.encode()


def _headers(*, secret: str = SECRET, at: datetime = NOW, body: bytes = BODY) -> dict[str, str]:
    return signature_headers(secret, msg_id="msg_1", timestamp=int(at.timestamp()), body=body)


def test_signatures_are_the_reference_implementations() -> None:
    """The reference `verify` (on the wall clock) accepts what we sign, and vice versa."""
    now = int(time.time())
    headers = signature_headers(SECRET, msg_id="msg_1", timestamp=now, body=BODY)
    Webhook(SECRET).verify(BODY, headers)  # raises if it disagrees
    theirs = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(now, UTC), BODY.decode())
    assert theirs == headers["webhook-signature"]
    verify_signature(
        headers, BODY, secrets=[SECRET], now=datetime.fromtimestamp(now, UTC)
    )  # and our check accepts it


def test_a_body_that_is_not_utf8_is_signed_over_its_bytes() -> None:
    """The reference signs text only; the scheme (and a fuzzer) sends bytes."""
    body = b'{"message": "\xff\xfe"}'
    headers = _headers(body=body)
    verify_signature(headers, body, secrets=[SECRET], now=NOW)
    with pytest.raises(SignatureRefused):
        verify_signature(headers, body + b" ", secrets=[SECRET], now=NOW)


def test_any_accepted_secret_and_any_of_several_signatures_will_do() -> None:
    """Rotation: the receiver tries each secret it accepts; the sender may send several
    signatures (unknown versions skipped)."""
    headers = _headers(secret=OTHER)
    verify_signature(headers, BODY, secrets=[SECRET, OTHER], now=NOW)
    with pytest.raises(SignatureRefused, match="No webhook-signature matches"):
        verify_signature(headers, BODY, secrets=[SECRET], now=NOW)
    wrong = compute_signature(SECRET, msg_id="other", timestamp=int(NOW.timestamp()), body=BODY)
    several = f"v2,abc {wrong} {headers['webhook-signature']}"
    verify_signature({**headers, "webhook-signature": several}, BODY, secrets=[OTHER], now=NOW)


@pytest.mark.parametrize(
    ("seconds", "accepted"), [(-299, True), (299, True), (-301, False), (301, False)]
)
def test_the_window_is_five_minutes_either_way_by_the_receivers_clock(
    seconds: int, accepted: bool
) -> None:
    headers = _headers(at=NOW + timedelta(seconds=seconds))
    if accepted:
        verify_signature(headers, BODY, secrets=[SECRET], now=NOW)
        return
    with pytest.raises(SignatureRefused, match="the receiver's clock; at most 300 s"):
        verify_signature(headers, BODY, secrets=[SECRET], now=NOW)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"webhook-id": ""}, "headers are required"),
        ({"webhook-timestamp": ""}, "headers are required"),
        ({"webhook-signature": ""}, "headers are required"),
        ({"webhook-id": "has space"}, "webhook-id must be 1 to 256 visible ASCII"),
        ({"webhook-id": "x" * 257}, "webhook-id must be 1 to 256 visible ASCII"),
        ({"webhook-timestamp": "1.9e9"}, "integer seconds"),
        ({"webhook-timestamp": "-5"}, "integer seconds"),
        ({"webhook-timestamp": "9" * 13}, "integer seconds"),
        ({"webhook-signature": "v1"}, "entries are <version>,<base64>"),
        ({"webhook-signature": "v1,"}, "entries are <version>,<base64>"),
        ({"webhook-signature": "v2,abc"}, "holds no v1 signature"),
        ({"webhook-signature": "v1,!!!not-base64!!!"}, "No webhook-signature matches"),
        ({"webhook-signature": " ".join(["v1,abc"] * 17)}, "more than 16 entries"),
        ({"webhook-signature": "v1," + "a" * 3000}, "longer than 2048"),
    ],
)
def test_malformed_headers_are_refused_with_a_reason_never_an_exception(
    change: dict[str, str], reason: str
) -> None:
    """Where the reference raises ValueError or binascii.Error, or takes a float timestamp."""
    headers = {k: v for k, v in {**_headers(), **change}.items() if v}
    with pytest.raises(SignatureRefused, match=reason):
        verify_signature(headers, BODY, secrets=[SECRET], now=NOW)


def test_a_changed_body_id_or_timestamp_breaks_the_signature() -> None:
    headers = _headers()
    for tampered_headers, body in [
        (headers, BODY.replace(b"open", b"shut")),
        ({**headers, "webhook-id": "msg_2"}, BODY),
        ({**headers, "webhook-timestamp": str(int(NOW.timestamp()) + 1)}, BODY),
    ]:
        with pytest.raises(SignatureRefused, match="No webhook-signature matches"):
            verify_signature(tampered_headers, body, secrets=[SECRET], now=NOW)


async def test_the_transport_signs_the_bytes_sent_at_its_clock_with_the_events_id() -> None:
    """Any method and body (an empty GET too); the event's id inside `signing_event`, a fresh
    one outside; the secret read per request."""
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    clock = ManualClock(NOW)
    secret = [SECRET]
    transport = SigningTransport(
        httpx.MockTransport(handler), secret=lambda: secret[0], clock=clock
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://peer.test") as client:
        with signing_event("5b0c7c59-8a53-4c2a-9d1e-0f5c1f0c2a11"):
            await client.post("/api/integration/messages", json={"message": "Привет"})
        await client.get("/api/integration/changes")
        secret[0] = OTHER
        await client.get("/api/integration/changes")
    posted, got, rotated = seen
    assert posted.headers["webhook-id"] == "5b0c7c59-8a53-4c2a-9d1e-0f5c1f0c2a11"
    assert posted.headers["webhook-timestamp"] == str(int(NOW.timestamp()))
    verify_signature(posted.headers, posted.content, secrets=[SECRET], now=NOW)
    assert got.content == b""
    assert got.headers["webhook-id"] != posted.headers["webhook-id"]
    verify_signature(got.headers, b"", secrets=[SECRET], now=NOW)
    verify_signature(rotated.headers, b"", secrets=[OTHER], now=NOW)
