"""Tests for initData validation and minting."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, urlencode

import pytest

from tma_impl.telegram import (
    InitData,
    InitDataError,
    TelegramUser,
    mint_init_data,
    parse_authorization_header,
    parse_init_data,
)

BOT_TOKEN = "7000000001:AAHknownVectorTokenForTests_0123456789"
NOW = datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)  # Unix time 1700000000
USER = TelegramUser(
    id=279058397,
    first_name="Vladislav",
    last_name="Kibenko",
    username="vdkfrost",
    language_code="ru",
)
USER_JSON = (
    '{"id":279058397,"first_name":"Vladislav","last_name":"Kibenko",'
    '"username":"vdkfrost","language_code":"ru"}'
)
# Computed outside Python with openssl dgst -sha256 -mac HMAC for the fields of test_known_vector.
KNOWN_HASH = "a921eb56369944ce8722d48606dd10fae5decfe2fab960fb93747a535d57a6a2"


def parse(init_data: str, *, now: datetime = NOW, bot_token: str = BOT_TOKEN) -> InitData:
    return parse_init_data(init_data, bot_token=bot_token, max_age_seconds=3600, now=now)


def sign_by_hand(fields: dict[str, str], *, bot_token: str = BOT_TOKEN) -> str:
    """Sign fields following Telegram's documentation step by step, independent of the module."""
    data_check_string = "\n".join(f"{key}={fields[key]}" for key in sorted(fields))
    secret_key = hmac.new(key=b"WebAppData", msg=bot_token.encode(), digestmod=hashlib.sha256)
    return hmac.new(
        key=secret_key.digest(), msg=data_check_string.encode(), digestmod=hashlib.sha256
    ).hexdigest()


def signed_query(fields: dict[str, str], *, bot_token: str = BOT_TOKEN) -> str:
    return urlencode({**fields, "hash": sign_by_hand(fields, bot_token=bot_token)}, quote_via=quote)


def test_known_vector() -> None:
    fields = {"query_id": "AAHdF6IQAAAAAN0XohDhrOrc", "user": USER_JSON, "auth_date": "1700000000"}
    assert sign_by_hand(fields) == KNOWN_HASH
    init_data = urlencode({**fields, "hash": KNOWN_HASH}, quote_via=quote)

    parsed = parse_init_data(init_data, bot_token=BOT_TOKEN, max_age_seconds=60, now=NOW)

    assert parsed.user == USER
    assert parsed.auth_date == NOW
    assert parsed.query_id == "AAHdF6IQAAAAAN0XohDhrOrc"
    assert parsed.start_param is None


def test_minted_data_matches_hand_signature() -> None:
    minted = mint_init_data(
        bot_token=BOT_TOKEN, user=USER, auth_date=NOW, query_id="q1", start_param="ticket-42"
    )
    fields = dict(parse_qsl(minted, keep_blank_values=True))
    received = fields.pop("hash")

    assert received == sign_by_hand(fields)
    assert json.loads(fields["user"])["id"] == USER.id
    parsed = parse_init_data(minted, bot_token=BOT_TOKEN, max_age_seconds=60, now=NOW)
    assert parsed.start_param == "ticket-42"
    assert parsed.query_id == "q1"


def test_unknown_fields_are_signed_and_tolerated() -> None:
    # Telegram adds fields over time (chat_type, signature, ...); they are part of the signature.
    fields = {
        "auth_date": "1700000000",
        "user": '{"id":1,"first_name":"Ann","is_premium":true,"photo_url":"https://t.me/i.jpg"}',
        "chat_type": "sender",
        "signature": "abc",
    }
    parsed = parse_init_data(signed_query(fields), bot_token=BOT_TOKEN, max_age_seconds=60, now=NOW)
    assert parsed.user == TelegramUser(
        id=1, first_name="Ann", last_name=None, username=None, language_code=None
    )


def test_non_ascii_user_round_trips() -> None:
    user = TelegramUser(
        id=7, first_name="Алёна", last_name="😀 & =", username=None, language_code="uk"
    )
    minted = mint_init_data(bot_token=BOT_TOKEN, user=user, auth_date=NOW)
    assert parse_init_data(minted, bot_token=BOT_TOKEN, max_age_seconds=60, now=NOW).user == user


def reason_of(init_data: str, *, now: datetime = NOW, bot_token: str = BOT_TOKEN) -> str:
    with pytest.raises(InitDataError) as caught:
        parse(init_data, now=now, bot_token=bot_token)
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


VALID_FIELDS = {"auth_date": "1700000000", "query_id": "q", "user": USER_JSON}


def test_tampered_field_is_rejected() -> None:
    init_data = signed_query(VALID_FIELDS).replace("279058397", "279058398")
    assert reason_of(init_data) == "bad hash: initData is not signed by this bot"


def test_added_field_is_rejected() -> None:
    assert reason_of(signed_query(VALID_FIELDS) + "&start_param=x").startswith("bad hash")


def test_wrong_bot_token_is_rejected() -> None:
    init_data = signed_query(VALID_FIELDS, bot_token="7000000002:AnotherBotToken")
    reason = reason_of(init_data)
    assert reason.startswith("bad hash")
    assert BOT_TOKEN not in reason


@pytest.mark.parametrize("init_data", ["", "auth_date=1700000000&user=%7B%7D", "hash=&a=1"])
def test_missing_hash_is_rejected(init_data: str) -> None:
    assert reason_of(init_data) == "missing hash"


@pytest.mark.parametrize("bad_hash", ["zz", "é" * 64, "0" * 64])
def test_garbage_hash_is_rejected(bad_hash: str) -> None:
    init_data = urlencode({**VALID_FIELDS, "hash": bad_hash})
    assert reason_of(init_data).startswith("bad hash")


def test_uppercase_hash_is_accepted() -> None:
    init_data = urlencode({**VALID_FIELDS, "hash": sign_by_hand(VALID_FIELDS).upper()})
    assert parse_init_data(init_data, bot_token=BOT_TOKEN, max_age_seconds=60, now=NOW)


def test_duplicate_field_is_rejected() -> None:
    assert reason_of(signed_query(VALID_FIELDS) + "&user=x") == "duplicate field 'user'"


def test_expired_auth_date_is_rejected() -> None:
    init_data = signed_query(VALID_FIELDS)
    assert parse(init_data, now=NOW + timedelta(seconds=3600))  # exactly max age: still valid
    reason = reason_of(init_data, now=NOW + timedelta(seconds=3601))
    assert reason == "initData expired: issued 3601 s ago"


def test_future_auth_date_is_rejected_beyond_skew() -> None:
    init_data = signed_query(VALID_FIELDS)
    assert parse(init_data, now=NOW - timedelta(seconds=60))  # within the allowed clock skew
    assert reason_of(init_data, now=NOW - timedelta(seconds=61)) == "auth_date is in the future"


@pytest.mark.parametrize(
    ("auth_date", "reason"),
    [
        (None, "missing auth_date"),
        ("", "missing auth_date"),
        ("yesterday", "invalid auth_date: not a Unix timestamp"),
        ("-5", "invalid auth_date: not a Unix timestamp"),
        ("1.5", "invalid auth_date: not a Unix timestamp"),
        ("٣", "invalid auth_date: not a Unix timestamp"),  # a digit, but not ASCII
        ("9" * 30, "invalid auth_date: out of range"),
    ],
)
def test_bad_auth_date_is_rejected(auth_date: str | None, reason: str) -> None:
    fields = {"user": USER_JSON}
    if auth_date is not None:
        fields["auth_date"] = auth_date
    assert reason_of(signed_query(fields)) == reason


@pytest.mark.parametrize(
    ("user", "reason"),
    [
        (None, "missing user"),
        ("", "missing user"),
        ("{not json", "invalid user: not JSON"),
        ("[1, 2]", "invalid user: not a JSON object"),
        ('{"first_name":"A"}', "invalid user: id must be a positive integer"),
        ('{"id":"1","first_name":"A"}', "invalid user: id must be a positive integer"),
        ('{"id":true,"first_name":"A"}', "invalid user: id must be a positive integer"),
        ('{"id":0,"first_name":"A"}', "invalid user: id must be a positive integer"),
        ('{"id":1}', "invalid user: first_name must be a non-empty string"),
        ('{"id":1,"first_name":""}', "invalid user: first_name must be a non-empty string"),
        ('{"id":1,"first_name":"A","username":5}', "invalid user: username must be a string"),
    ],
)
def test_malformed_user_is_rejected(user: str | None, reason: str) -> None:
    fields = {"auth_date": "1700000000"}
    if user is not None:
        fields["user"] = user
    assert reason_of(signed_query(fields)) == reason


def test_hash_is_checked_before_contents() -> None:
    # Unsigned garbage must not learn which of its fields would have passed.
    assert reason_of(urlencode({"user": "{", "hash": "0" * 64})).startswith("bad hash")


def test_naive_datetimes_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_init_data("", bot_token=BOT_TOKEN, max_age_seconds=60, now=datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        mint_init_data(bot_token=BOT_TOKEN, user=USER, auth_date=datetime(2024, 1, 1))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("tma auth_date=1&hash=x", "auth_date=1&hash=x"),
        ("TMA auth_date=1", "auth_date=1"),
        ("Tma   query_id=q  ", "query_id=q"),
        ("tma\tquery_id=q", "query_id=q"),
    ],
)
def test_authorization_header_is_parsed(header: str, expected: str) -> None:
    assert parse_authorization_header(header) == expected


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing Authorization header"),
        ("", "missing Authorization header"),
        ("   ", "missing Authorization header"),
        ("Bearer abc", "Authorization scheme must be 'tma'"),
        ("tmaauth_date=1", "Authorization scheme must be 'tma'"),
        ("tma", "Authorization header carries no initData"),
        ("tma   ", "Authorization header carries no initData"),
    ],
)
def test_bad_authorization_header_is_rejected(header: str | None, reason: str) -> None:
    with pytest.raises(InitDataError) as caught:
        parse_authorization_header(header)
    assert caught.value.reason == reason
