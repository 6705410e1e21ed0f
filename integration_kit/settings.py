"""Settings shared by both backends; each backend subclasses with its own env prefix."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDERS = {"", "changeme", "change-me", "secret", "token", "placeholder", "xxx", "todo"}


class Environment(StrEnum):
    development = "development"
    production = "production"


class RetrySettings(BaseModel):
    """How the dispatcher retries a failed delivery (docs/design.md §5).

    Set as <PREFIX>RETRY__<FIELD>.
    """

    # A plain model, not BaseSettings: that would also read unprefixed JITTER, CAP_SECONDS, ...
    # from the environment. Forbid unknown keys so a misspelt TMA_RETRY__... fails at start.
    model_config = ConfigDict(extra="forbid")

    base_seconds: float = Field(1.0, gt=0, description="First retry delay.")
    cap_seconds: float = Field(600.0, gt=0, description="Longest delay between two attempts.")
    max_age_seconds: float = Field(72 * 3600.0, gt=0, description="After this, an event goes dead.")
    jitter: float = Field(0.2, ge=0, le=1, description="Random fraction added to each delay.")


class IntegrationSettings(BaseSettings):
    """What every backend needs: where it stores, who may call it, whom it calls, how it retries."""

    # hide_input_in_errors: a settings error must not print the tokens it was given.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", env_nested_delimiter="__", hide_input_in_errors=True
    )

    environment: Environment = Environment.development
    database_url: str = ""
    # PostgreSQL connections per process: the pool, and how many more a burst may open. Every
    # API and worker process has its own, so processes x (size + overflow) must stay below the
    # server's max_connections. SQLite always uses one connection (one writer).
    database_pool_size: int = Field(10, ge=1, le=200)
    database_max_overflow: int = Field(10, ge=0, le=200)
    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = ""

    # Tokens the peer may present to us (several, so a token can be rotated without downtime).
    inbound_tokens: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Where the peer listens and the token it accepts from us.
    peer_url: str = ""
    peer_token: str = ""
    peer_timeout_seconds: float = Field(10.0, gt=0)

    retry: RetrySettings = Field(default_factory=RetrySettings)
    dispatcher_enabled: bool = True  # run the dispatcher inside the web process
    dispatcher_poll_seconds: float = Field(1.0, gt=0)
    dispatcher_batch_size: int = Field(200, ge=1, le=5000)
    dispatcher_concurrency: int = Field(64, ge=1, le=1000)
    lease_seconds: float = Field(60.0, gt=0)
    retention_days: int = Field(30, ge=1)
    # Run `reconcile` this often inside each process that delivers (serve with its dispatcher,
    # or worker); 0 leaves it to the command line.
    reconcile_interval_seconds: float = Field(0.0, ge=0)

    @field_validator("inbound_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        # TMA_INBOUND_TOKENS=new,old: a comma-separated list in the environment.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> Self:
        # The dispatcher only starts a send that can finish within its lease; a lease shorter
        # than the peer timeout would claim and release events forever without sending any.
        if self.lease_seconds <= self.peer_timeout_seconds:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds:g}) must be longer than "
                f"peer_timeout_seconds ({self.peer_timeout_seconds:g})"
            )
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Self:
        if self.environment is Environment.development:
            return self
        problems = []
        # The development defaults are published in the repository: placeholders as well.
        placeholders = PLACEHOLDERS | self._development_tokens()
        if not self.inbound_tokens or any(t.lower() in placeholders for t in self.inbound_tokens):
            problems.append("inbound_tokens is empty or a placeholder")
        if self.peer_token.lower() in placeholders:
            problems.append("peer_token is empty or a placeholder")
        if not self.peer_url.startswith("https://"):
            problems.append("peer_url must be https outside development")
        if problems:
            raise ValueError("refusing to start in production: " + "; ".join(problems))
        return self

    @classmethod
    def _development_tokens(cls) -> set[str]:
        tokens: set[str] = set()
        for name in ("inbound_tokens", "peer_token"):
            default = cls.model_fields[name].get_default(call_default_factory=True)
            tokens.update(default if isinstance(default, list) else [default])
        return {token.lower() for token in tokens}

    def resolved_database_url(self, name: str) -> str:
        """DATABASE_URL if set, else a SQLite file `<data_dir>/<name>.db`."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / (name + '.db')}"
