"""CRM settings, from CRM_* environment variables (see .env.example)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from integration_kit.ratelimit import parse_limits
from integration_kit.settings import IntegrationSettings, Secret

# See docs/rate-limits.md for the measured traffic this sits above.
OPERATOR_RATE_LIMIT = "1000/second"


class CrmSettings(IntegrationSettings):
    model_config = SettingsConfigDict(
        env_prefix="CRM_", env_file=".env", extra="ignore", env_nested_delimiter="__"
    )

    port: int = 8001
    # Development defaults so `make run` works out of the box; refused outside development.
    inbound_tokens: Annotated[list[str], NoDecode, Secret()] = Field(
        default_factory=lambda: ["dev-tma-to-crm"]
    )
    peer_url: str = "http://127.0.0.1:8000"
    # S105: a development default, published on purpose; production refuses it (Secret).
    peer_token: Annotated[str, Secret()] = "dev-crm-to-tma"  # noqa: S105
    inbound_signing_secrets: Annotated[list[str], NoDecode, Secret()] = Field(
        default_factory=lambda: ["whsec_ZGV2ZWxvcG1lbnQtb25seSB0bWEtdG8tY3JtIHNpZ25pbmcgc2VjcmV0"]
    )
    peer_signing_secret: Annotated[str, Secret()] = (
        "whsec_ZGV2ZWxvcG1lbnQtb25seSBjcm0tdG8tdG1hIHNpZ25pbmcgc2VjcmV0"  # noqa: S105
    )
    # Per operator on the operator API and console; "" for none (docs/rate-limits.md).
    operator_rate_limit: str = OPERATOR_RATE_LIMIT

    @field_validator("operator_rate_limit")
    @classmethod
    def _operator_rate_limit(cls, value: str) -> str:
        parse_limits(value)
        return value

    # The operator console (/console/): how long a sign-in lasts, how often an open event stream
    # looks for changes made by other processes, and how long one stream stays open before the
    # browser reconnects (resuming from Last-Event-ID), so no connection is held forever.
    console_session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12
    console_poll_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    console_stream_seconds: Annotated[float, Field(gt=0, le=3600)] = 300
