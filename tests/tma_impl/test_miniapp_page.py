"""How the TMA serves the Mini App page: its security headers, compression and caching, and the
development identity that exists only in development."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import httpx

from tests.e2e.helpers import http_layer_only
from tests.support.pair import Pair
from tests.tma_impl.telegram.fake_bot_api import FAKE_BOT_TOKEN
from tma_impl.app import build_runtime, create_app
from tma_impl.miniapp.assets import load_assets
from tma_impl.settings import TmaSettings
from tma_impl.telegram import parse_init_data

TELEGRAM_SCRIPT = "https://telegram.org/js/telegram-web-app.js"


def directives(csp: str) -> dict[str, list[str]]:
    parsed = {}
    for part in csp.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


@http_layer_only
async def test_the_page_forbids_inline_script_and_every_other_site_but_telegrams(
    pair: Pair,
) -> None:
    response = await pair.tma.get("/app/")
    assert response.status_code == 200
    csp = directives(response.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'", TELEGRAM_SCRIPT]
    assert csp["connect-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'"]
    assert "https://web.telegram.org" in csp["frame-ancestors"]
    assert not any("unsafe" in value for values in csp.values() for value in values)
    assert response.headers["x-content-type-options"] == "nosniff"
    # The HTML itself has no inline script or style, and loads only its own files and Telegram's.
    html = response.text
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts
    assert all('src="' in attrs and not body.strip() for attrs, body in scripts)
    assert "<style" not in html
    assert " style=" not in html
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert all(s.startswith("/app/assets/") or s == TELEGRAM_SCRIPT for s in sources), sources


@http_layer_only
async def test_assets_are_gzipped_versioned_and_cached_for_good(pair: Pair) -> None:
    index = await pair.tma.get("/app/", headers={"Accept-Encoding": "gzip"})
    assert index.headers["cache-control"] == "no-cache"
    version = load_assets().version
    assert f"/app/assets/{version}/app.js" in index.text
    raw = await pair.tma.get(f"/app/assets/{version}/app.js", headers={"Accept-Encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert raw.headers["content-type"].startswith("text/javascript")
    assert int(raw.headers["content-length"]) < len(raw.content)  # httpx decoded it for us
    again = await pair.tma.get(
        f"/app/assets/{version}/app.js", headers={"If-None-Match": raw.headers["etag"]}
    )
    assert again.status_code == 304
    stale = await pair.tma.get("/app/assets/0000/app.js")
    assert stale.status_code == 404
    assert (await pair.tma.get("/app/assets/{version}/../../settings.py")).status_code == 404
    assert gzip.decompress(load_assets().files["app.js"].gzipped) == raw.content


@http_layer_only
async def test_the_development_identity_is_valid_initdata(pair: Pair) -> None:
    answer = await pair.tma.post("/app/dev-identity", json={"language_code": "ru"})
    assert answer.status_code == 200
    parsed = parse_init_data(
        answer.json()["init_data"],
        bot_token=FAKE_BOT_TOKEN,
        max_age_seconds=60,
        now=pair.clock.now(),
    )
    assert parsed.user.language_code == "ru"


async def test_production_has_no_development_identity(tmp_path: Path) -> None:
    settings = TmaSettings(
        environment="production",
        database_url=f"sqlite:///{tmp_path / 'tma.db'}",
        inbound_tokens=["inbound-7f3a9c2e5b8d4f1a6c0e9b3d7a2f5c8e"],
        peer_url="https://crm.example.test",
        peer_token="peer-4c1d8e6b2a9f7c3e5d0b8a6f4e2c9d1b",
        # Standard Webhooks secrets, for versions that sign integration requests.
        inbound_signing_secrets=["whsec_dMIn+dgOCeYm9vg0arxqQd5UuYU9xn2SybrScQEVsRY="],
        peer_signing_secret="whsec_CpUp4dBVGjbx9m4sjEdWuvZt52GE/Dw+5MS8P99wO+I=",
        bot_token=FAKE_BOT_TOKEN,
    )
    runtime = build_runtime(settings)
    transport = httpx.ASGITransport(app=create_app(runtime))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://tma.test") as client:
            assert (await client.post("/app/dev-identity", json={})).status_code == 404
            assert (await client.get("/app/")).status_code == 200
    finally:
        await runtime.close()
