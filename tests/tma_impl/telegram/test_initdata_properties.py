"""Property tests of the initData parser on arbitrary payloads signed with the right bot token.

A signature proves only that the bot's token signed the data, not that the data is sane (a
leaked token, a test tool, a future Telegram field). Whatever a signed payload holds, the parser
returns an identity or raises its own InitDataError, never anything else; and every identity it
returns is stored and sent on as the contract's Customer without a failure.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from generated.models import Customer
from tma_impl.telegram import InitDataError, TelegramUser, parse_init_data
from tma_impl.telegram.initdata import MAX_USER_ID

from .test_initdata import BOT_TOKEN, NOW, signed_query

AUTH_DATE = str(int(NOW.timestamp()))
# Largest value the contract allows and the storage columns (BIGINT) hold.
CONTRACT_MAX_USER_ID = 2**53 - 1
BIGINT_MAX = 2**63 - 1

# Any text, lone surrogates and NUL included (JSON escapes can carry both).
any_text = st.text(
    alphabet=st.one_of(st.characters(), st.characters(categories=["Cs"]), st.just("\x00"))
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    any_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)
user_ids = st.one_of(
    st.integers(min_value=1, max_value=MAX_USER_ID),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([MAX_USER_ID, MAX_USER_ID + 1, CONTRACT_MAX_USER_ID + 1, BIGINT_MAX + 1]),
    json_values,
)
OPTIONAL_FIELDS = ("last_name", "username", "language_code")
text_or_anything = st.one_of(any_text, st.text(min_size=60, max_size=300), json_values)


@st.composite
def user_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A user object: Telegram's fields with values of any type, plus unknown fields."""
    user: dict[str, Any] = draw(st.dictionaries(any_text, json_values, max_size=3))
    user["id"] = draw(user_ids)
    for name in ("first_name", "last_name", "username", "language_code"):
        if draw(st.booleans()):
            user[name] = draw(text_or_anything)
    return user


def as_json(value: Any, ascii_only: bool) -> str:
    text = json.dumps(value, ensure_ascii=ascii_only)
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate travels only as a JSON escape
        text = json.dumps(value, ensure_ascii=True)
    return text


def user_field(user: dict[str, Any], ascii_only: bool) -> str:
    return as_json(user, ascii_only)


def customer_of(user: TelegramUser) -> Customer:
    """The contract's Customer as the TMA builds it when it opens a ticket in the CRM."""
    return Customer(
        telegram_user_id=user.id,
        first_name=user.first_name,
        last_name=user.last_name,
        username=user.username,
        language_code=user.language_code,
    )


def assert_sendable(user: TelegramUser) -> None:
    """The identity builds a valid Customer whose JSON (re-validated) and text columns encode."""
    customer = customer_of(user)
    Customer.model_validate_json(customer.model_dump_json(exclude_none=True))
    assert 1 <= user.id <= CONTRACT_MAX_USER_ID
    for value in (user.first_name, user.last_name, user.username, user.language_code):
        if value is not None:
            value.encode()  # UTF-8 (PostgreSQL, SQLite, HTTP bodies); raises on a surrogate
            assert "\x00" not in value


def outcome(init_data: str) -> TelegramUser | InitDataError:
    try:
        return parse_init_data(init_data, bot_token=BOT_TOKEN, max_age_seconds=3600, now=NOW).user
    except InitDataError as refused:
        return refused


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(user=user_objects(), ascii_only=st.booleans())
@example(user={"id": 2**63, "first_name": "A"}, ascii_only=True)
@example(user={"id": 2**53, "first_name": "A"}, ascii_only=True)
@example(user={"id": 1, "first_name": "A" * 65, "last_name": "\x00" * 70}, ascii_only=True)
@example(user={"id": 1, "first_name": "\ud800", "username": "a b"}, ascii_only=True)
@example(user={"id": 1, "first_name": "A", "language_code": "x" * 36}, ascii_only=True)
def test_a_signed_user_object_gives_a_sendable_identity_or_a_refusal(
    user: dict[str, Any], ascii_only: bool
) -> None:
    fields = {"auth_date": AUTH_DATE, "user": user_field(user, ascii_only)}
    result = outcome(signed_query(fields))
    if isinstance(result, TelegramUser):
        assert_sendable(result)
        assert result.id == user["id"]
        return
    # Only a malformed id or a missing or non-string field is refused; odd text never is.
    user_id, first_name = user["id"], user.get("first_name")
    well_formed = (
        type(user_id) is int
        and 1 <= user_id <= MAX_USER_ID
        and isinstance(first_name, str)
        and first_name != ""
        and all(isinstance(user.get(n), str | None) for n in OPTIONAL_FIELDS)
    )
    assert not well_formed, result.reason


@settings(max_examples=200)
@given(
    fields=st.dictionaries(
        st.text(min_size=1).filter(lambda k: k != "hash"),
        st.text(),
        max_size=5,
    ),
    user=st.one_of(st.none(), any_text.map(lambda t: as_json(t, True)), st.text()),
    auth_date=st.one_of(st.none(), st.just(AUTH_DATE), st.text(), st.integers().map(str)),
)
def test_any_signed_fields_give_an_identity_or_a_refusal(
    fields: dict[str, str], user: str | None, auth_date: str | None
) -> None:
    """Arbitrary keys and values (unicode, control characters, huge numbers) around the user."""
    if user is not None:
        fields["user"] = user
    if auth_date is not None:
        fields["auth_date"] = auth_date
    try:
        query = signed_query(fields)
    except UnicodeEncodeError:
        assume(False)  # not expressible as a query string: nothing could send it
    result = outcome(query)
    if isinstance(result, TelegramUser):
        assert_sendable(result)


@given(user_id=st.integers(min_value=1, max_value=MAX_USER_ID))
def test_every_id_in_telegrams_range_is_accepted(user_id: int) -> None:
    fields = {"auth_date": AUTH_DATE, "user": json.dumps({"id": user_id, "first_name": "A"})}
    result = outcome(signed_query(fields))
    assert isinstance(result, TelegramUser)
    assert result.id == user_id


def test_the_id_bound_is_telegrams_and_within_storage_and_the_contract() -> None:
    assert MAX_USER_ID == 2**52 - 1  # "at most 52 significant bits" (Bot API, User.id)
    assert MAX_USER_ID <= CONTRACT_MAX_USER_ID <= BIGINT_MAX
    # 5,000 digits: more than Python converts from text (4,300), still valid JSON.
    huge = "1" * 5000
    for user_id in (MAX_USER_ID + 1, CONTRACT_MAX_USER_ID + 1, BIGINT_MAX + 1, 10**400, huge):
        fields = {"auth_date": AUTH_DATE, "user": f'{{"id":{user_id},"first_name":"A"}}'}
        result = outcome(signed_query(fields))
        assert isinstance(result, InitDataError)
        assert result.reason in {
            "invalid user: id is outside Telegram's range",
            "invalid user: not JSON",  # more digits than Python reads
        }


def test_odd_display_fields_are_made_to_fit_not_refused() -> None:
    user = {
        "id": 7,
        "first_name": "Ä" * 70,
        "last_name": "a\x00b\ud800",
        "username": "has space",
        "language_code": "en-" + "x" * 40,
    }
    fields = {"auth_date": AUTH_DATE, "user": json.dumps(user)}
    result = outcome(signed_query(fields))
    assert result == TelegramUser(
        id=7, first_name="Ä" * 64, last_name="a\ufffdb\ufffd", username=None, language_code=None
    )
    assert_sendable(result)
