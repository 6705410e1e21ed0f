"""The settings of the audited old routes (docs/cutover.md), apart from the routes themselves so
that reading settings does not load the web stack."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

log = logging.getLogger(__name__)

RECOMMENDED_TOKEN_LENGTH = 32


class LegacyRouteSettings(BaseModel):
    """<PREFIX>LEGACY__ROUTES_ENABLED, __DEPLOY_TOKEN, __SUNSET (plain, like RetrySettings)."""

    model_config = ConfigDict(extra="forbid")

    routes_enabled: bool = Field(False, description="Serve the audited old routes.")
    # The old peer's DEPLOY_TOKEN, whatever its length: it cannot be changed on the old side.
    deploy_token: str = Field("", repr=False)
    sunset: datetime | None = Field(None, description="When the old routes will stop answering.")

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> Self:
        if not self.routes_enabled:
            return self
        if not self.deploy_token.strip():
            raise ValueError("legacy.routes_enabled needs legacy.deploy_token (the old peer's)")
        if self.sunset is None:
            raise ValueError("legacy.routes_enabled needs legacy.sunset (when they stop answering)")
        if self.sunset.tzinfo is None:
            raise ValueError("legacy.sunset needs a time zone (say Z for UTC)")
        if len(self.deploy_token) < RECOMMENDED_TOKEN_LENGTH:
            # Exempt from the new tokens' rules: the old peer's token cannot be changed. Said
            # loudly, so it is not mistaken for an accepted practice.
            log.warning(
                "legacy.deploy_token is shorter than %d characters: accepted for the cut-over "
                "window only; turn the old routes off as soon as the old peer is gone",
                RECOMMENDED_TOKEN_LENGTH,
            )
        return self
