"""Validation and minting of Telegram Mini App initData."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

__all__ = [
    "FUTURE_SKEW_SECONDS",
    "MAX_USER_ID",
    "InitData",
    "InitDataError",
    "TelegramUser",
    "mint_init_data",
    "parse_authorization_header",
    "parse_init_data",
]

# Clocks of Telegram's servers and ours drift a little; more than this is not drift.
FUTURE_SKEW_SECONDS = 60

_AUTH_SCHEME = "tma"

# Telegram documents user ids as having "at most 52 significant bits". A larger id was not made
# by Telegram; it would also overflow a 64-bit column or leave the contract's Customer range
# (telegram_user_id <= 2**53 - 1), so it is refused where it enters.
MAX_USER_ID = 2**52 - 1

# The user's display fields are cosmetic: Telegram's limits are not ours to enforce, so a value
# that is odd is made to fit the contract's Customer schema (spec/integration.yaml) rather than
# refused. Names are cut to their length; identifiers that do not match their pattern are left
# out, because cutting or filtering one could name somebody else.
NAME_MAX_LENGTH = 64
USERNAME = re.compile(r"[A-Za-z0-9_]{1,32}")
LANGUAGE_CODE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]+)*")
LANGUAGE_CODE_MAX_LENGTH = 35
# NUL (no PostgreSQL text holds it) and lone surrogates (not encodable as UTF-8) cannot be
# stored or sent on; they become U+FFFD, as a decoder does with ill-formed input.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


class InitDataError(Exception):
    """initData or the Authorization header carrying it was rejected."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TelegramUser:
    """The Telegram user who opened the Mini App."""

    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None


@dataclass(frozen=True, slots=True)
class InitData:
    """Validated initData."""

    user: TelegramUser
    auth_date: datetime
    query_id: str | None = None
    start_param: str | None = None


def parse_authorization_header(value: str | None) -> str:
    """Return the initData of an `Authorization: tma <initData>` header."""
    parts = (value or "").split(None, 1)
    if not parts:
        raise InitDataError("missing Authorization header")
    if parts[0].lower() != _AUTH_SCHEME:
        raise InitDataError("Authorization scheme must be 'tma'")
    if len(parts) == 1:
        raise InitDataError("Authorization header carries no initData")
    return parts[1].strip()


def parse_init_data(
    init_data: str, *, bot_token: str, max_age_seconds: int, now: datetime
) -> InitData:
    """Check the signature and age of initData and return its contents."""
    _require_aware(now, "now")
    if max_age_seconds <= 0:
        raise ValueError("max_age_seconds must be positive")

    fields: dict[str, str] = {}
    for key, value in parse_qsl(init_data, keep_blank_values=True):
        # Two values for one key would make the signed string ambiguous.
        if key in fields:
            raise InitDataError(f"duplicate field {key!r}")
        fields[key] = value

    received_hash = fields.pop("hash", None)
    if not received_hash:
        raise InitDataError("missing hash")
    expected_hash = _sign(fields, bot_token=bot_token)
    # Bytes, because compare_digest refuses non-ASCII str and the input is untrusted.
    if not hmac.compare_digest(expected_hash.encode(), received_hash.lower().encode()):
        raise InitDataError("bad hash: initData is not signed by this bot")

    auth_date = _parse_auth_date(fields.get("auth_date"))
    age = now - auth_date
    if age > timedelta(seconds=max_age_seconds):
        raise InitDataError(f"initData expired: issued {int(age.total_seconds())} s ago")
    if -age > timedelta(seconds=FUTURE_SKEW_SECONDS):
        raise InitDataError("auth_date is in the future")

    return InitData(
        user=_parse_user(fields.get("user")),
        auth_date=auth_date,
        query_id=fields.get("query_id") or None,
        start_param=fields.get("start_param") or None,
    )


def mint_init_data(
    *,
    bot_token: str,
    user: TelegramUser,
    auth_date: datetime,
    query_id: str | None = None,
    start_param: str | None = None,
) -> str:
    """Build a query string signed with bot_token, as Telegram would send it."""
    _require_aware(auth_date, "auth_date")
    user_json: dict[str, Any] = {"id": user.id, "first_name": user.first_name}
    for name in ("last_name", "username", "language_code"):
        if (value := getattr(user, name)) is not None:
            user_json[name] = value
    fields = {
        "auth_date": str(int(auth_date.timestamp())),
        "user": json.dumps(user_json, separators=(",", ":"), ensure_ascii=False),
    }
    if query_id is not None:
        fields["query_id"] = query_id
    if start_param is not None:
        fields["start_param"] = start_param
    fields["hash"] = _sign(fields, bot_token=bot_token)
    return urlencode(fields, quote_via=quote)


def _sign(fields: dict[str, str], *, bot_token: str) -> str:
    data_check_string = "\n".join(f"{key}={fields[key]}" for key in sorted(fields))
    return hmac.new(_secret_key(bot_token), data_check_string.encode(), hashlib.sha256).hexdigest()


@functools.lru_cache(maxsize=8)
def _secret_key(bot_token: str) -> bytes:
    # Depends on the bot token only: made once per token instead of once per request (an HMAC
    # of its own on the user API's hot path). A few entries cover a token's rotation.
    return hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def _parse_auth_date(raw: str | None) -> datetime:
    if raw is None or raw == "":
        raise InitDataError("missing auth_date")
    if not raw.isascii() or not raw.isdigit():
        raise InitDataError("invalid auth_date: not a Unix timestamp")
    try:
        return datetime.fromtimestamp(int(raw), tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise InitDataError("invalid auth_date: out of range") from None


def _parse_user(raw: str | None) -> TelegramUser:
    if raw is None or raw == "":
        raise InitDataError("missing user")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        # ValueError also covers an integer of more digits than Python converts.
        raise InitDataError("invalid user: not JSON") from None
    if not isinstance(data, dict):
        raise InitDataError("invalid user: not a JSON object")
    user_id = data.get("id")
    # bool is an int subclass; true is not a user id.
    if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id <= 0:
        raise InitDataError("invalid user: id must be a positive integer")
    if user_id > MAX_USER_ID:
        raise InitDataError("invalid user: id is outside Telegram's range")
    first_name = data.get("first_name")
    if not isinstance(first_name, str) or not first_name:
        raise InitDataError("invalid user: first_name must be a non-empty string")
    optional: dict[str, str | None] = {}
    for name in ("last_name", "username", "language_code"):
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise InitDataError(f"invalid user: {name} must be a string")
        optional[name] = value or None
    return TelegramUser(
        id=user_id,
        first_name=_name(first_name),
        last_name=_name(optional["last_name"]) if optional["last_name"] else None,
        username=_matching(optional["username"], USERNAME, 32),
        language_code=_matching(optional["language_code"], LANGUAGE_CODE, LANGUAGE_CODE_MAX_LENGTH),
    )


def _name(value: str) -> str:
    return _UNSTORABLE.sub("\ufffd", value[:NAME_MAX_LENGTH])


def _matching(value: str | None, pattern: re.Pattern[str], max_length: int) -> str | None:
    if value is None or len(value) > max_length or not pattern.fullmatch(value):
        return None
    return value
