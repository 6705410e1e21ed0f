"""TMA settings, from TMA_* environment variables (see .env.example)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from integration_kit.ratelimit import parse_limits
from integration_kit.settings import IntegrationSettings, Secret
from tma_impl.telegram import DEFAULT_BOT_API_BASE_URL

# See docs/rate-limits.md for the measured traffic this sits above.
USER_RATE_LIMIT = "100/second"


class TmaSettings(IntegrationSettings):
    model_config = SettingsConfigDict(
        env_prefix="TMA_", env_file=".env", extra="ignore", env_nested_delimiter="__"
    )

    port: int = 8000
    # Development defaults so `make run` works out of the box; refused outside development.
    inbound_tokens: Annotated[list[str], NoDecode, Secret()] = Field(
        default_factory=lambda: ["dev-crm-to-tma"]
    )
    peer_url: str = "http://127.0.0.1:8001"
    # S105: a development default, published on purpose; production refuses it (Secret).
    peer_token: Annotated[str, Secret()] = "dev-tma-to-crm"  # noqa: S105
    inbound_signing_secrets: Annotated[list[str], NoDecode, Secret()] = Field(
        default_factory=lambda: ["whsec_ZGV2ZWxvcG1lbnQtb25seSBjcm0tdG8tdG1hIHNpZ25pbmcgc2VjcmV0"]
    )
    peer_signing_secret: Annotated[str, Secret()] = (
        "whsec_ZGV2ZWxvcG1lbnQtb25seSB0bWEtdG8tY3JtIHNpZ25pbmcgc2VjcmV0"  # noqa: S105
    )

    # Telegram. Without a bot token (development only) notifications go to the log.
    bot_token: Annotated[str, Secret()] = ""
    bot_api_base_url: str = DEFAULT_BOT_API_BASE_URL
    # The Mini App's https URL; a notification's button opens it at the ticket (?ticket=<id>).
    webapp_url: str = ""
    init_data_max_age_seconds: int = Field(24 * 3600, ge=60)
    # Per Telegram user on the user API (/api/support); "" for none (docs/rate-limits.md).
    user_rate_limit: str = USER_RATE_LIMIT
    # The Mini App's live stream: how often an open stream looks for events another API process
    # wrote (this process's own wake it at once), and how long one response lasts before the
    # page reconnects from its last event.
    live_poll_seconds: float = Field(1.0, gt=0, le=60)
    live_stream_seconds: float = Field(300.0, gt=0)

    @field_validator("user_rate_limit")
    @classmethod
    def _user_rate_limit(cls, value: str) -> str:
        parse_limits(value)
        return value

    @property
    def dev_bot_token(self) -> str:
        """The token that signs initData: the real one, or a fixed development one."""
        return self.bot_token or "000000:development-only-bot-token"
