"""CRM settings, from CRM_* environment variables (see .env.example)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from integration_kit.ratelimit import parse_limits
from integration_kit.settings import IntegrationSettings

# See docs/rate-limits.md for the measured traffic this sits above.
OPERATOR_RATE_LIMIT = "1000/second"


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
    # Per operator on the operator API and console; "" for none (docs/rate-limits.md).
    operator_rate_limit: str = OPERATOR_RATE_LIMIT

    @field_validator("operator_rate_limit")
    @classmethod
    def _operator_rate_limit(cls, value: str) -> str:
        parse_limits(value)
        return value
