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
    "inbound_tokens": ["vault-tma-to-crm-91be5c07d2f4a8e16b3d"],
    "peer_url": "https://miniapp.example.com",
    "peer_token": "vault-crm-to-tma-03aa6e19f47c2b8d05a1",
    "inbound_signing_secrets": ["whsec_eo4QHTe6rle3litcxHMqV5XTKOAiPDPQgxThH+NAjeE="],
    "peer_signing_secret": "whsec_8YmlVzyy7rd2qnmOAIdxcDlVGPYami57CMHOyBjNtwg=",
}


def test_production_with_real_secrets_starts() -> None:
    assert CrmSettings(**SAFE, _env_file=None).environment == "production"


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"inbound_tokens": []}, "CRM_INBOUND_TOKENS is empty"),
        ({"inbound_tokens": ["token"]}, "CRM_INBOUND_TOKENS is a placeholder"),
        ({"inbound_tokens": ["dev-tma-to-crm"]}, "CRM_INBOUND_TOKENS is a placeholder"),
        ({"inbound_tokens": ["vault-tma-to-crm-91be"]}, "CRM_INBOUND_TOKENS is shorter than 32"),
        ({"peer_token": "xxx"}, "CRM_PEER_TOKEN is a placeholder"),
        ({"peer_token": "dev-crm-to-tma"}, "CRM_PEER_TOKEN is a placeholder"),
        ({"peer_token": "vault-crm-to-tma-03aa"}, "CRM_PEER_TOKEN is shorter than 32"),
        ({"peer_url": "http://miniapp.example.com"}, "CRM_PEER_URL must be an https:// URL"),
        ({"peer_url": ""}, "CRM_PEER_URL must be an https:// URL"),
        ({"inbound_signing_secrets": []}, "CRM_INBOUND_SIGNING_SECRETS is empty"),
        (
            {"peer_signing_secret": CrmSettings.model_fields["peer_signing_secret"].default},
            "CRM_PEER_SIGNING_SECRET is a placeholder",
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
    monkeypatch.setenv("CRM_PEER_TOKEN", SAFE["peer_token"])
    monkeypatch.setenv(
        "CRM_INBOUND_SIGNING_SECRETS", "whsec_eo4QHTe6rle3litcxHMqV5XTKOAiPDPQgxThH+NAjeE="
    )
    monkeypatch.setenv(
        "CRM_PEER_SIGNING_SECRET", "whsec_8YmlVzyy7rd2qnmOAIdxcDlVGPYami57CMHOyBjNtwg="
    )

    assert run_cli_sync(COMMANDS, ["operators", "list"]) == 2
    captured = capsys.readouterr()
    [line] = captured.err.strip().splitlines()
    assert line == "error: invalid settings: CRM_INBOUND_TOKENS is empty: set it"
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
