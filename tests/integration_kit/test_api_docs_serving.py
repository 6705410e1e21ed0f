"""Each backend serves its own API's document at /docs: on by default in development, off in
production unless <PREFIX>API_DOCS_ENABLED turns it on; what it serves is the committed file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from crm_impl.app import build_runtime as build_crm
from crm_impl.app import create_app as create_crm_app
from crm_impl.settings import CrmSettings
from tests.tma_impl.telegram.fake_bot_api import FAKE_BOT_TOKEN
from tma_impl.app import build_runtime as build_tma
from tma_impl.app import create_app as create_tma_app
from tma_impl.settings import TmaSettings

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = {"tma": ROOT / "spec" / "user-api.yaml", "crm": ROOT / "spec" / "operator-api.yaml"}
# Tokens long enough for any production rule; nothing is ever sent with them.
PRODUCTION: dict[str, Any] = {
    "environment": "production",
    "inbound_tokens": ["docs-test-inbound-token-0123456789abcdef"],
    "peer_url": "https://peer.example.com",
    "peer_token": "docs-test-peer-token-0123456789abcdef-xyz",
    "inbound_signing_secrets": ["whsec_Eijo8qRKcrahpHMOX5fRwR5YIGzKZIRnyBEH1lLUpbw="],
    "peer_signing_secret": "whsec_7RqFb6AZ1QuZVJCeO6DWIOdLDtUD7DyRrNxIGtD8gas=",
}


@asynccontextmanager
async def serving(side: str, tmp_path: Path, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """`side`'s app (no database is opened: the docs never touch it)."""
    database = f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"
    if side == "tma":
        if settings.get("environment") == "production":
            settings["bot_token"] = FAKE_BOT_TOKEN
        runtime = build_tma(TmaSettings(_env_file=None, database_url=database, **settings))
        app = create_tma_app(runtime)
    else:
        runtime = build_crm(CrmSettings(_env_file=None, database_url=database, **settings))
        app = create_crm_app(runtime)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://backend.test"
        ) as client:
            yield client
    finally:
        await runtime.close()


@pytest.mark.parametrize("side", ["tma", "crm"])
async def test_development_serves_the_committed_document(side: str, tmp_path: Path) -> None:
    committed = DOCUMENTS[side].read_text()
    async with serving(side, tmp_path) as client:
        as_yaml = await client.get("/docs/openapi.yaml")
        as_json = await client.get("/docs/openapi.json")
        index = await client.get("/docs")
    assert as_yaml.status_code == 200
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert as_yaml.text == committed
    assert as_json.json() == yaml.safe_load(committed)

    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    # Nothing for the pages' CSP to allow: no script, no style, nothing off-site.
    assert "<script" not in index.text
    assert "<style" not in index.text
    assert "http://" not in index.text
    assert index.headers["content-security-policy"].startswith("default-src 'none'")
    assert 'href="docs/openapi.yaml"' in index.text
    document = yaml.safe_load(committed)
    for path in document["paths"]:
        assert f"<code>{path}</code>" in index.text


async def test_the_index_escapes_what_the_document_says(tmp_path: Path) -> None:
    async with serving("tma", tmp_path) as client:
        index = await client.get("/docs")
    # The description quotes `Authorization: tma <initData>`: text, never markup.
    assert "tma &lt;initData&gt;" in index.text
    assert "<initData>" not in index.text


@pytest.mark.parametrize("side", ["tma", "crm"])
@pytest.mark.parametrize(
    ("settings", "served"),
    [
        ({}, True),
        ({"api_docs_enabled": False}, False),
        (PRODUCTION, False),
        ({**PRODUCTION, "api_docs_enabled": True}, True),
    ],
    ids=["development", "development, turned off", "production", "production, turned on"],
)
async def test_docs_are_served_where_the_settings_say(
    side: str, settings: dict[str, Any], served: bool, tmp_path: Path
) -> None:
    async with serving(side, tmp_path, **settings) as client:
        answers = [await client.get(path) for path in ("/docs", "/docs/openapi.yaml")]
    assert [a.status_code for a in answers] == ([200, 200] if served else [404, 404])


@pytest.mark.parametrize("side", ["tma", "crm"])
def test_the_setting_is_read_from_the_environment(
    side: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = side.upper()
    settings_class = TmaSettings if side == "tma" else CrmSettings
    secrets = {k: v for k, v in PRODUCTION.items() if k != "environment"}
    if side == "tma":
        secrets["bot_token"] = FAKE_BOT_TOKEN
    monkeypatch.setenv(f"{prefix}_ENVIRONMENT", "production")
    assert not settings_class(_env_file=None, **secrets).serves_api_docs
    monkeypatch.setenv(f"{prefix}_API_DOCS_ENABLED", "true")
    assert settings_class(_env_file=None, **secrets).serves_api_docs
