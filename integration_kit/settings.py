"""Settings shared by both backends; each backend subclasses with its own env prefix."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from integration_kit.db import database_url_problem
from integration_kit.legacy_settings import LegacyRouteSettings
from integration_kit.ratelimit import check_storage_url, parse_limits
from integration_kit.settings_rules import (
    PLACEHOLDERS,
    Secret,
    env_name,
    is_secret,
    secret_problems,
    setting_error,
)
from integration_kit.signing import secret_error

__all__ = ["PLACEHOLDERS", "Environment", "IntegrationSettings", "RetrySettings", "Secret"]

# Per peer token on /api/integration; docs/rate-limits.md gives the measured traffic below it.
INTEGRATION_RATE_LIMIT = "10000/second"


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
    inbound_tokens: Annotated[list[str], NoDecode, Secret()] = Field(default_factory=list)
    # Where the peer listens and the token it accepts from us.
    peer_url: str = ""
    peer_token: Annotated[str, Secret()] = ""
    peer_timeout_seconds: float = Field(10.0, gt=0)
    # Standard Webhooks secrets (`whsec_` + base64 of 24-64 random bytes, docs/delivery.md):
    # those a peer's signature may match (several, for a rotation), and the one we sign with.
    inbound_signing_secrets: Annotated[list[str], NoDecode, Secret()] = Field(default_factory=list)
    peer_signing_secret: Annotated[str, Secret()] = ""

    retry: RetrySettings = Field(default_factory=RetrySettings)
    dispatcher_enabled: bool = True  # run the dispatcher inside the web process
    dispatcher_poll_seconds: float = Field(1.0, gt=0)
    dispatcher_batch_size: int = Field(200, ge=1, le=5000)
    dispatcher_concurrency: int = Field(64, ge=1, le=1000)
    lease_seconds: float = Field(60.0, gt=0)
    retention_days: int = Field(30, ge=1)
    # While the database does not answer, the dispatcher tries again after this, doubling up to
    # the cap: seconds, so delivery resumes soon after the database is back.
    database_retry_base_seconds: float = Field(1.0, gt=0)
    database_retry_cap_seconds: float = Field(30.0, gt=0)
    # The audited old routes during the cut-over window (docs/cutover.md); off by default.
    legacy: LegacyRouteSettings = Field(default_factory=LegacyRouteSettings)
    # /docs: the backend's own API document (integration_kit/api_docs.py). Unset: served in
    # development only; production turns it on explicitly if it wants it public.
    api_docs_enabled: bool | None = None
    # Run `reconcile` this often inside each process that delivers (serve with its dispatcher,
    # or worker); 0 leaves it to the command line.
    reconcile_interval_seconds: float = Field(0.0, ge=0)

    # Rate limits (docs/rate-limits.md), in `limits`' notation ("600/second",
    # "50/second;1000/minute", "" for none): the integration API's limit per peer token. The
    # default sits far above what `make bench` and the fault harness drive; each backend adds the
    # limit of its own people's API.
    integration_rate_limit: str = INTEGRATION_RATE_LIMIT
    # "" keeps counters in this process; redis://host:6379/0 shares them between API processes.
    rate_limit_storage_url: str = ""
    # Keys in Redis start with "<prefix>:<tma|crm>:", so deployments can share one Redis.
    rate_limit_key_prefix: str = Field("ratelimit", min_length=1, max_length=100)

    @field_validator("inbound_tokens", "inbound_signing_secrets", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        # TMA_INBOUND_TOKENS=new,old: a comma-separated list in the environment.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @classmethod
    def env_prefix(cls) -> str:
        return str(cls.model_config.get("env_prefix", ""))

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        problem = database_url_problem(value) if value else None
        if problem:
            raise setting_error(
                f"{cls.env_prefix()}DATABASE_URL {problem}: use sqlite:///path/to/file.db or "
                "postgresql://user@host:5432/database"
            )
        return value

    @field_validator("peer_url")
    @classmethod
    def _https_peer_in_production(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("environment") is Environment.production and not value.startswith(
            "https://"
        ):
            raise setting_error(f"{cls.env_prefix()}PEER_URL must be an https:// URL in production")
        return value

    # Every field, so secret settings a subclass adds (or a later change) are checked too. Field
    # validators, not one model validator: pydantic then reports every problem at once, beside
    # any malformed value.
    @field_validator("*")
    @classmethod
    def _secrets_are_real_in_production(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name
        marker = is_secret(name, cls.model_fields[name]) if name else None
        # `environment` comes first, so it is validated by now (absent if it was malformed).
        if marker is None or info.data.get("environment") is not Environment.production:
            return value
        problems = secret_problems(
            env_name(cls.env_prefix(), [name] if name else []),
            value,
            marker=marker,
            published=cls._development_secrets(),
        )
        if problems:
            raise setting_error("; ".join(problems))
        return value

    @field_validator("inbound_signing_secrets", "peer_signing_secret")
    @classmethod
    def _signing_secrets_well_formed(cls, value: Any, info: ValidationInfo) -> Any:
        # In every environment: a malformed secret would fail every request, not the start.
        for secret in value if isinstance(value, list) else [value] if value else []:
            error = secret_error(secret)
            if error:
                variable = env_name(cls.env_prefix(), [info.field_name or ""])
                raise setting_error(f"{variable}: a signing secret {error}")
        return value

    @field_validator("integration_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        parse_limits(value)
        return value

    @field_validator("rate_limit_storage_url")
    @classmethod
    def _rate_limit_storage(cls, value: str) -> str:
        return check_storage_url(value)

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> Self:
        # The dispatcher only starts a send that can finish within its lease; a lease shorter
        # than the peer timeout would claim and release events forever without sending any.
        if self.lease_seconds <= self.peer_timeout_seconds:
            prefix = self.env_prefix()
            raise setting_error(
                f"{prefix}LEASE_SECONDS ({self.lease_seconds:g}) must be longer than "
                f"{prefix}PEER_TIMEOUT_SECONDS ({self.peer_timeout_seconds:g})"
            )
        return self

    @classmethod
    def _development_secrets(cls) -> set[str]:
        """The defaults of the secret settings: published in this repository, so never secret."""
        published: set[str] = set()
        for name, field in cls.model_fields.items():
            if is_secret(name, field) is None:
                continue
            default = field.get_default(call_default_factory=True)
            values = default if isinstance(default, list) else [default]
            published.update(str(value).lower() for value in values if value)
        return published

    @property
    def serves_api_docs(self) -> bool:
        if self.api_docs_enabled is None:
            return self.environment is Environment.development
        return self.api_docs_enabled

    def resolved_database_url(self, name: str) -> str:
        """DATABASE_URL if set, else a SQLite file `<data_dir>/<name>.db`."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / (name + '.db')}"
