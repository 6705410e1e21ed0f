"""CRM settings, from CRM_* environment variables (see .env.example)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import NoDecode, SettingsConfigDict

from integration_kit.settings import IntegrationSettings


class CrmSettings(IntegrationSettings):
    model_config = SettingsConfigDict(
        env_prefix="CRM_", env_file=".env", extra="ignore", env_nested_delimiter="__"
    )

    port: int = 8001
    # Development defaults so `make run` works out of the box; refused outside development.
    inbound_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["dev-tma-to-crm"]
    )
    peer_url: str = "http://127.0.0.1:8000"
    peer_token: str = "dev-crm-to-tma"

    # The operator console (/console/): how long a sign-in lasts, how often an open event stream
    # looks for changes made by other processes, and how long one stream stays open before the
    # browser reconnects (resuming from Last-Event-ID), so no connection is held forever.
    console_session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12
    console_poll_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    console_stream_seconds: Annotated[float, Field(gt=0, le=3600)] = 300
