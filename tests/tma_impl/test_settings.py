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
    "inbound_tokens": ["vault-crm-to-tma-7f3a9c"],
    "peer_url": "https://crm.example.com",
    "peer_token": "vault-tma-to-crm-c41d2e",
    "bot_token": FAKE_BOT_TOKEN,
    "inbound_signing_secrets": ["whsec_Eijo8qRKcrahpHMOX5fRwR5YIGzKZIRnyBEH1lLUpbw="],
    "peer_signing_secret": "whsec_7RqFb6AZ1QuZVJCeO6DWIOdLDtUD7DyRrNxIGtD8gas=",
}


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
        ({"inbound_tokens": []}, "inbound_tokens is empty or a placeholder"),
        ({"inbound_tokens": ["vault-1", "changeme"]}, "inbound_tokens is empty or a placeholder"),
        ({"inbound_tokens": ["dev-crm-to-tma"]}, "inbound_tokens is empty or a placeholder"),
        ({"peer_token": ""}, "peer_token is empty or a placeholder"),
        ({"peer_token": "SECRET"}, "peer_token is empty or a placeholder"),
        ({"peer_token": "dev-tma-to-crm"}, "peer_token is empty or a placeholder"),
        ({"peer_url": "http://crm.example.com"}, "peer_url must be https outside development"),
        ({"bot_token": ""}, "bot_token is empty or a placeholder"),
        ({"bot_token": "placeholder"}, "bot_token is empty or a placeholder"),
        (
            {"inbound_signing_secrets": []},
            "inbound_signing_secrets is empty or a development default",
        ),
        (
            {
                "inbound_signing_secrets": TmaSettings.model_fields[
                    "inbound_signing_secrets"
                ].get_default(call_default_factory=True)
            },
            "inbound_signing_secrets is empty or a development default",
        ),
        ({"peer_signing_secret": ""}, "peer_signing_secret is empty or a development default"),
        (
            {"peer_signing_secret": TmaSettings.model_fields["peer_signing_secret"].default},
            "peer_signing_secret is empty or a development default",
        ),
    ],
)
def test_production_refuses_unsafe_settings(override: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError) as refused:
        _settings(**override)
    message = str(refused.value)
    assert f"refusing to start in production: {reason}" in message
    # The error may end up in a log: it names the problem, never the secrets it was given.
    for secret in (
        "vault-crm-to-tma-7f3a9c",
        "vault-tma-to-crm-c41d2e",
        FAKE_BOT_TOKEN,
        *SAFE["inbound_signing_secrets"],
        SAFE["peer_signing_secret"],
    ):
        assert secret not in message


def test_settings_come_from_tma_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMA_ENVIRONMENT", "production")
    monkeypatch.setenv("TMA_INBOUND_TOKENS", "vault-new, vault-old")
    monkeypatch.setenv("TMA_PEER_URL", "https://crm.example.com")
    monkeypatch.setenv("TMA_PEER_TOKEN", "vault-peer")
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
    assert settings.inbound_tokens == ["vault-new", "vault-old"]
    assert settings.inbound_signing_secrets == [
        SAFE["inbound_signing_secrets"][0],
        "whsec_eo4QHTe6rle3litcxHMqV5XTKOAiPDPQgxThH+NAjeE=",
    ]
    assert settings.retry.cap_seconds == 120
    assert settings.bot_token == FAKE_BOT_TOKEN


def test_cli_prints_one_readable_line_for_invalid_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A misconfigured production start ends with exit 2 and one line saying what is wrong."""
    monkeypatch.setenv("TMA_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'never.db'}")
    monkeypatch.setenv("TMA_ENVIRONMENT", "production")
    monkeypatch.setenv("TMA_INBOUND_TOKENS", "vault-crm-to-tma-7f3a9c")
    monkeypatch.setenv("TMA_PEER_URL", "http://crm.example.com")
    monkeypatch.setenv("TMA_PEER_TOKEN", "changeme")
    monkeypatch.setenv("TMA_BOT_TOKEN", FAKE_BOT_TOKEN)

    assert run_cli_sync(COMMANDS, ["migrate"]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line.startswith("error: invalid settings: ")
    assert "peer_token is empty or a placeholder" in line
    assert "peer_url must be https outside development" in line
    assert "vault-crm-to-tma-7f3a9c" not in captured.err
    assert captured.out == ""
    assert not (tmp_path / "never.db").exists()


def test_cli_rejects_a_malformed_value_readably(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TMA_ENVIRONMENT", "staging")
    assert run_cli_sync(COMMANDS, ["outbox", "list"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: invalid settings: environment: ")


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
    assert line.startswith("error: database unavailable: ")


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
        assert f"{field}: a signing secret {reason}" in str(refused.value)
        assert secret not in str(refused.value)
