"""The secret rules apply to every secret setting, including ones added later: marked with
`Secret()`, or named like a secret; errors name the environment variable."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import Field, ValidationError
from pydantic_settings import NoDecode, SettingsConfigDict

from integration_kit.settings import IntegrationSettings, Secret
from integration_kit.settings_rules import describe_settings_error, env_name

LONG = "s" * 32


class LaterSettings(IntegrationSettings):
    """A backend as it might grow: secret settings the base class does not know."""

    model_config = SettingsConfigDict(env_prefix="LATER_", env_file=None)

    # Named like a secret, not marked: still checked.
    archive_signing_secret: str = ""
    # Marked, named like nothing in particular.
    webhook_keys: Annotated[list[str], NoDecode, Secret()] = Field(default_factory=list)
    # Marked as optional: may stay empty, but not short when set.
    sentry_dsn_key: Annotated[str, Secret(required=False)] = ""


def _production(**overrides: Any) -> dict[str, Any]:
    return {
        "environment": "production",
        "inbound_tokens": [LONG],
        "peer_url": "https://peer.example.com",
        "peer_token": LONG,
        "inbound_signing_secrets": ["whsec_Eijo8qRKcrahpHMOX5fRwR5YIGzKZIRnyBEH1lLUpbw="],
        "peer_signing_secret": "whsec_7RqFb6AZ1QuZVJCeO6DWIOdLDtUD7DyRrNxIGtD8gas=",
        "archive_signing_secret": LONG,
        "webhook_keys": [LONG],
        **overrides,
    }


def test_new_secret_settings_pass_when_long_and_set() -> None:
    assert LaterSettings(**_production()).webhook_keys == [LONG]


def test_new_secret_settings_are_refused_when_empty_or_short_all_at_once() -> None:
    with pytest.raises(ValidationError) as refused:
        LaterSettings(**_production(archive_signing_secret="", webhook_keys=[LONG, "short"]))
    line = describe_settings_error(refused.value, "LATER_")
    assert line == (
        "LATER_ARCHIVE_SIGNING_SECRET is empty: set it; "
        "LATER_WEBHOOK_KEYS (value 2 of 2) is shorter than 32 characters: use long random "
        "values, e.g. from `openssl rand -hex 32`"
    )


def test_an_optional_secret_may_be_empty_but_not_short() -> None:
    assert LaterSettings(**_production()).sentry_dsn_key == ""
    with pytest.raises(ValidationError, match="LATER_SENTRY_DSN_KEY is shorter than 32"):
        LaterSettings(**_production(sentry_dsn_key="abc"))


def test_development_accepts_short_secrets() -> None:
    assert LaterSettings(archive_signing_secret="dev").archive_signing_secret == "dev"


@pytest.mark.parametrize(
    ("loc", "variable"),
    [
        (("inbound_tokens",), "LATER_INBOUND_TOKENS"),
        (("inbound_tokens", 0), "LATER_INBOUND_TOKENS"),
        (("retry", "cap_seconds"), "LATER_RETRY__CAP_SECONDS"),
    ],
)
def test_field_locations_map_to_environment_variables(
    loc: tuple[str | int, ...], variable: str
) -> None:
    assert env_name("LATER_", loc) == variable


def test_nested_settings_errors_name_the_nested_variable() -> None:
    with pytest.raises(ValidationError) as refused:
        LaterSettings(retry={"cap_seconds": -1, "jitter": 5})
    line = describe_settings_error(refused.value, "LATER_")
    assert "LATER_RETRY__CAP_SECONDS: Input should be greater than 0" in line
    assert "LATER_RETRY__JITTER: Input should be less than or equal to 1" in line


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://user:pw@db/x", "has an unsupported scheme 'mysql'"),
        ("oracle+cx_oracle://db/x", "has an unsupported scheme 'oracle+cx_oracle'"),
        ("not a url", "is not a database URL"),
        ("postgresql://user:pw@db:port/x", "is not a database URL"),
    ],
)
def test_an_unsupported_database_url_is_refused_without_repeating_it(
    url: str, problem: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        LaterSettings(database_url=url)
    line = describe_settings_error(refused.value, "LATER_")
    assert line.startswith(f"LATER_DATABASE_URL {problem}: use sqlite:///")
    assert "pw@" not in line


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///data/x.db",
        "sqlite+aiosqlite:///data/x.db",
        "postgresql://u@h:5432/d",
        "postgres://u@h/d",
        "postgresql+asyncpg://u@h/d",
    ],
)
def test_supported_database_urls_pass(url: str) -> None:
    assert LaterSettings(database_url=url).database_url == url
