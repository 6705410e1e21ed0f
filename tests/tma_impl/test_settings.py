"""TMA settings: production refuses empty, placeholder or published tokens, a missing bot token
and a plain-http CRM; the command line says so in one readable line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.e2e.helpers import run_cli, run_cli_sync
from tests.support.databases import empty_database
from tests.tma_impl.telegram.fake_bot_api import FAKE_BOT_TOKEN
from tma_impl.cli import COMMANDS
from tma_impl.settings import TmaSettings

SAFE: dict[str, Any] = {
    "environment": "production",
    "inbound_tokens": ["vault-crm-to-tma-7f3a9c0d51e2b8a4c6f9"],
    "peer_url": "https://crm.example.com",
    "peer_token": "vault-tma-to-crm-c41d2e97ab03f5d1e8c2",
    "bot_token": FAKE_BOT_TOKEN,
    "inbound_signing_secrets": ["whsec_Eijo8qRKcrahpHMOX5fRwR5YIGzKZIRnyBEH1lLUpbw="],
    "peer_signing_secret": "whsec_7RqFb6AZ1QuZVJCeO6DWIOdLDtUD7DyRrNxIGtD8gas=",
}
SECRETS = (
    SAFE["inbound_tokens"][0],
    SAFE["peer_token"],
    FAKE_BOT_TOKEN,
    *SAFE["inbound_signing_secrets"],
    SAFE["peer_signing_secret"],
)


def _settings(**overrides: Any) -> TmaSettings:
    return TmaSettings(**{**SAFE, **overrides}, _env_file=None)


def test_production_with_real_secrets_starts() -> None:
    settings = _settings()
    assert settings.environment == "production"
    assert settings.inbound_tokens == SAFE["inbound_tokens"]


def test_development_runs_with_the_defaults() -> None:
    """`make run` needs nothing configured: development tolerates dev tokens and plain http."""
    settings = TmaSettings(_env_file=None)
    assert settings.environment == "development"
    assert settings.peer_url.startswith("http://")


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"inbound_tokens": []}, "TMA_INBOUND_TOKENS is empty"),
        (
            {"inbound_tokens": [SAFE["inbound_tokens"][0], "changeme"]},
            "TMA_INBOUND_TOKENS (value 2 of 2) is a placeholder",
        ),
        ({"inbound_tokens": ["dev-crm-to-tma"]}, "TMA_INBOUND_TOKENS is a placeholder"),
        ({"inbound_tokens": ["k" * 31]}, "TMA_INBOUND_TOKENS is shorter than 32 characters"),
        ({"peer_token": ""}, "TMA_PEER_TOKEN is empty"),
        ({"peer_token": "SECRET"}, "TMA_PEER_TOKEN is a placeholder"),
        ({"peer_token": "dev-tma-to-crm"}, "TMA_PEER_TOKEN is a placeholder"),
        ({"peer_token": "vault-tma-to-crm-c41d2e"}, "TMA_PEER_TOKEN is shorter than 32"),
        ({"peer_url": "http://crm.example.com"}, "TMA_PEER_URL must be an https:// URL"),
        ({"bot_token": ""}, "TMA_BOT_TOKEN is empty"),
        ({"bot_token": "placeholder"}, "TMA_BOT_TOKEN is a placeholder"),
        ({"bot_token": "123:short"}, "TMA_BOT_TOKEN is shorter than 32 characters"),
        ({"inbound_signing_secrets": []}, "TMA_INBOUND_SIGNING_SECRETS is empty"),
        (
            {
                "inbound_signing_secrets": TmaSettings.model_fields[
                    "inbound_signing_secrets"
                ].get_default(call_default_factory=True)
            },
            "TMA_INBOUND_SIGNING_SECRETS is a placeholder",
        ),
        ({"peer_signing_secret": ""}, "TMA_PEER_SIGNING_SECRET is empty"),
        (
            {"peer_signing_secret": TmaSettings.model_fields["peer_signing_secret"].default},
            "TMA_PEER_SIGNING_SECRET is a placeholder",
        ),
    ],
)
def test_production_refuses_unsafe_settings(override: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError) as refused:
        _settings(**override)
    message = str(refused.value)
    assert reason in message
    # The error may end up in a log: it names the problem, never the secrets it was given.
    for secret in SECRETS:
        assert secret not in message


def test_a_secret_of_exactly_32_characters_is_enough() -> None:
    assert _settings(peer_token="p" * 32, inbound_tokens=["i" * 32]).peer_token == "p" * 32


def test_settings_come_from_tma_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    new, old = "vault-new-" + "n" * 30, "vault-old-" + "o" * 30
    monkeypatch.setenv("TMA_ENVIRONMENT", "production")
    monkeypatch.setenv("TMA_INBOUND_TOKENS", f"{new}, {old}")
    monkeypatch.setenv("TMA_PEER_URL", "https://crm.example.com")
    monkeypatch.setenv("TMA_PEER_TOKEN", SAFE["peer_token"])
    monkeypatch.setenv(
        "TMA_INBOUND_SIGNING_SECRETS",
        "whsec_Eijo8qRKcrahpHMOX5fRwR5YIGzKZIRnyBEH1lLUpbw=, "
        "whsec_eo4QHTe6rle3litcxHMqV5XTKOAiPDPQgxThH+NAjeE=",
    )
    monkeypatch.setenv(
        "TMA_PEER_SIGNING_SECRET", "whsec_7RqFb6AZ1QuZVJCeO6DWIOdLDtUD7DyRrNxIGtD8gas="
    )
    monkeypatch.setenv("TMA_BOT_TOKEN", FAKE_BOT_TOKEN)
    monkeypatch.setenv("TMA_RETRY__CAP_SECONDS", "120")
    settings = TmaSettings(_env_file=None)
    assert settings.inbound_tokens == [new, old]
    assert settings.inbound_signing_secrets == [
        SAFE["inbound_signing_secrets"][0],
        "whsec_eo4QHTe6rle3litcxHMqV5XTKOAiPDPQgxThH+NAjeE=",
    ]
    assert settings.retry.cap_seconds == 120
    assert settings.bot_token == FAKE_BOT_TOKEN


def test_cli_lists_every_settings_problem_in_one_line_naming_the_variables(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A misconfigured production start ends with exit 2 and one line naming every variable to
    fix, a malformed value beside the production refusals."""
    monkeypatch.setenv("TMA_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'never.db'}")
    monkeypatch.setenv("TMA_ENVIRONMENT", "production")
    monkeypatch.setenv("TMA_INBOUND_TOKENS", SAFE["inbound_tokens"][0])
    monkeypatch.setenv("TMA_PEER_URL", "http://crm.example.com")
    monkeypatch.setenv("TMA_PEER_TOKEN", "changeme")
    monkeypatch.setenv("TMA_BOT_TOKEN", "123456:too-short")
    monkeypatch.setenv("TMA_PEER_TIMEOUT_SECONDS", "ten")

    assert run_cli_sync(COMMANDS, ["migrate"]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith("error: invalid settings: ")
    for problem in (
        "TMA_PEER_URL must be an https:// URL in production",
        "TMA_PEER_TOKEN is a placeholder",
        "TMA_PEER_TIMEOUT_SECONDS: Input should be a valid number",
        "TMA_BOT_TOKEN is shorter than 32 characters",
    ):
        assert problem in line
    assert "peer_token" not in line  # the variable a person sets, not the field
    for secret in (*SECRETS, "123456:too-short"):
        assert secret not in captured.err
    assert captured.out == ""
    assert not (tmp_path / "never.db").exists()


def test_cli_names_the_variables_of_a_cross_field_problem(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TMA_LEASE_SECONDS", "5")
    assert run_cli_sync(COMMANDS, ["outbox", "list"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line == (
        "error: invalid settings: TMA_LEASE_SECONDS (5) must be longer than "
        "TMA_PEER_TIMEOUT_SECONDS (10)"
    )


def test_cli_rejects_a_malformed_value_readably(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TMA_ENVIRONMENT", "staging")
    assert run_cli_sync(COMMANDS, ["outbox", "list"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: invalid settings: TMA_ENVIRONMENT: ")


async def test_the_outbox_command_on_a_database_never_migrated_says_to_migrate(
    db_kind: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    async with empty_database(db_kind, tmp_path) as url:
        monkeypatch.setenv("TMA_DATABASE_URL", url)
        assert await run_cli(COMMANDS, ["outbox", "list"]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith(
        "error: the database has no tables yet: run `python -m tma_impl migrate`"
    )
    assert "Traceback" not in captured.err
    assert "SELECT" not in captured.err


def test_the_outbox_command_on_an_unreachable_database_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "a-folder.db").mkdir()  # cannot be opened as a database file
    monkeypatch.setenv("TMA_DATABASE_URL", f"sqlite:///{tmp_path / 'a-folder.db'}")
    assert run_cli_sync(COMMANDS, ["outbox", "list"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: cannot open the SQLite database ")
    assert "check TMA_DATABASE_URL or TMA_DATA_DIR" in line


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("dev-secret-without-prefix-0123456789", "must start with whsec_"),
        ("whsec_not base64!", "must be whsec_ followed by base64"),
        ("whsec_c2hvcnQ=", "must hold 24 to 64 bytes (it holds 5)"),
    ],
)
def test_a_malformed_signing_secret_is_refused_in_every_environment(
    secret: str, reason: str
) -> None:
    """A secret the Standard Webhooks scheme cannot use would fail every request: refused at
    start, in development too, without echoing it."""
    for field in ("peer_signing_secret", "inbound_signing_secrets"):
        value: Any = secret if field == "peer_signing_secret" else [secret]
        with pytest.raises(ValidationError) as refused:
            TmaSettings(**{field: value}, _env_file=None)
        assert f"TMA_{field.upper()}: a signing secret {reason}" in str(refused.value)
        assert secret not in str(refused.value)
