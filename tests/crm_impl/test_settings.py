"""CRM settings: production refuses empty, placeholder or published tokens and a plain-http
Mini App; the command line says so in one readable line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy.pool import AsyncAdaptedQueuePool

from crm_impl.cli import COMMANDS
from crm_impl.settings import CrmSettings
from integration_kit.db import Database
from tests.e2e.helpers import run_cli_sync

SAFE: dict[str, Any] = {
    "environment": "production",
    "inbound_tokens": ["vault-tma-to-crm-91be"],
    "peer_url": "https://miniapp.example.com",
    "peer_token": "vault-crm-to-tma-03aa",
    "inbound_signing_secrets": ["whsec_eo4QHTe6rle3litcxHMqV5XTKOAiPDPQgxThH+NAjeE="],
    "peer_signing_secret": "whsec_8YmlVzyy7rd2qnmOAIdxcDlVGPYami57CMHOyBjNtwg=",
}


def test_production_with_real_secrets_starts() -> None:
    assert CrmSettings(**SAFE, _env_file=None).environment == "production"


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"inbound_tokens": []}, "inbound_tokens is empty or a placeholder"),
        ({"inbound_tokens": ["token"]}, "inbound_tokens is empty or a placeholder"),
        ({"inbound_tokens": ["dev-tma-to-crm"]}, "inbound_tokens is empty or a placeholder"),
        ({"peer_token": "xxx"}, "peer_token is empty or a placeholder"),
        ({"peer_token": "dev-crm-to-tma"}, "peer_token is empty or a placeholder"),
        ({"peer_url": "http://miniapp.example.com"}, "peer_url must be https"),
        ({"peer_url": ""}, "peer_url must be https"),
        (
            {"inbound_signing_secrets": []},
            "inbound_signing_secrets is empty or a development default",
        ),
        (
            {"peer_signing_secret": CrmSettings.model_fields["peer_signing_secret"].default},
            "peer_signing_secret is empty or a development default",
        ),
    ],
)
def test_production_refuses_unsafe_settings(override: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError) as refused:
        CrmSettings(**{**SAFE, **override}, _env_file=None)
    message = str(refused.value)
    assert reason in message
    assert "vault-tma-to-crm-91be" not in message
    assert "vault-crm-to-tma-03aa" not in message


def test_cli_prints_one_readable_line_for_invalid_settings(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("CRM_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'never.db'}")
    monkeypatch.setenv("CRM_ENVIRONMENT", "production")
    monkeypatch.setenv("CRM_INBOUND_TOKENS", "")
    monkeypatch.setenv("CRM_PEER_URL", "https://miniapp.example.com")
    monkeypatch.setenv("CRM_PEER_TOKEN", "vault-crm-to-tma-03aa")
    monkeypatch.setenv(
        "CRM_INBOUND_SIGNING_SECRETS", "whsec_eo4QHTe6rle3litcxHMqV5XTKOAiPDPQgxThH+NAjeE="
    )
    monkeypatch.setenv(
        "CRM_PEER_SIGNING_SECRET", "whsec_8YmlVzyy7rd2qnmOAIdxcDlVGPYami57CMHOyBjNtwg="
    )

    assert run_cli_sync(COMMANDS, ["operators", "list"]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line == (
        "error: invalid settings: settings: Value error, refusing to start in production: "
        "inbound_tokens is empty or a placeholder"
    )
    assert not (tmp_path / "never.db").exists()


async def test_the_postgresql_pool_is_sized_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Processes x (pool + overflow) must fit the server's max_connections: both are settings."""
    monkeypatch.setenv("CRM_DATABASE_URL", "postgresql://crm@127.0.0.1:5432/crm")
    monkeypatch.setenv("CRM_DATABASE_POOL_SIZE", "3")
    monkeypatch.setenv("CRM_DATABASE_MAX_OVERFLOW", "1")
    db = Database.for_backend(CrmSettings(_env_file=None), "crm")
    try:
        pool = db.engine.pool
        assert isinstance(pool, AsyncAdaptedQueuePool)
        assert (pool.size(), pool._max_overflow) == (3, 1)
    finally:
        await db.dispose()  # never connected: nothing reaches the server


def test_a_pool_size_of_zero_is_refused() -> None:
    with pytest.raises(ValidationError, match="database_pool_size"):
        CrmSettings(database_pool_size=0, _env_file=None)
