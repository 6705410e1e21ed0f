"""TMA settings, from TMA_* environment variables (see .env.example)."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from integration_kit.settings import PLACEHOLDERS, Environment, IntegrationSettings
from tma_impl.telegram import DEFAULT_BOT_API_BASE_URL


class TmaSettings(IntegrationSettings):
    model_config = SettingsConfigDict(
        env_prefix="TMA_", env_file=".env", extra="ignore", env_nested_delimiter="__"
    )

    port: int = 8000
    # Development defaults so `make run` works out of the box; refused outside development.
    inbound_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["dev-crm-to-tma"]
    )
    peer_url: str = "http://127.0.0.1:8001"
    peer_token: str = "dev-tma-to-crm"

    # Telegram. Without a bot token (development only) notifications go to the log.
    bot_token: str = ""
    bot_api_base_url: str = DEFAULT_BOT_API_BASE_URL
    # The Mini App's https URL; a notification's button opens it at the ticket (?ticket=<id>).
    webapp_url: str = ""
    init_data_max_age_seconds: int = Field(24 * 3600, ge=60)
    # The Mini App's live stream: how often an open stream looks for events another API process
    # wrote (this process's own wake it at once), and how long one response lasts before the
    # page reconnects from its last event.
    live_poll_seconds: float = Field(1.0, gt=0, le=60)
    live_stream_seconds: float = Field(300.0, gt=0)

    @model_validator(mode="after")
    def _require_bot_token(self) -> Self:
        if self.environment is not Environment.development and (
            self.bot_token.lower() in PLACEHOLDERS
        ):
            raise ValueError("refusing to start in production: bot_token is empty or a placeholder")
        return self

    @property
    def dev_bot_token(self) -> str:
        """The token that signs initData: the real one, or a fixed development one."""
        return self.bot_token or "000000:development-only-bot-token"
