"""Rules every backend's settings follow, and how their errors are told to a person.

A setting that holds a secret (a token, a signing secret, a list of either) is marked with
`Secret()` in its annotation, e.g. `peer_token: Annotated[str, Secret()] = ""`. In production a
marked setting must be set, must not be a placeholder or a development default published in this
repository, and every value must be at least `MIN_SECRET_LENGTH` characters long. A field whose
name ends in `_token`, `_tokens`, `_secret` or `_secrets` counts as marked even without it, so a
new secret setting is never left unchecked by an oversight.

Errors name the environment variable a person sets (`TMA_INBOUND_TOKENS`), not the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

PLACEHOLDERS = {"", "changeme", "change-me", "secret", "token", "placeholder", "xxx", "todo"}

# 32 characters: the length of a random 128-bit secret in hex (`secrets.token_hex(16)`), and of
# a 192-bit one in base64 (`secrets.token_urlsafe(24)`).
MIN_SECRET_LENGTH = 32

SECRET_NAME_SUFFIXES = ("_token", "_tokens", "_secret", "_secrets")

# The error type of the rules below: their message already names the environment variable.
SETTING_ERROR = "setting"


@dataclass(frozen=True)
class Secret:
    """Marks a setting as a secret (a string, or a list of strings that are all accepted)."""

    required: bool = True  # False: may stay empty in production; when set, the rules apply


def is_secret(name: str, field: FieldInfo) -> Secret | None:
    """The `Secret` marker of a field, or a default one for a field named like a secret."""
    for item in field.metadata:
        if isinstance(item, Secret):
            return item
    return Secret() if name.endswith(SECRET_NAME_SUFFIXES) else None


def env_name(prefix: str, loc: Sequence[str | int]) -> str:
    """The environment variable of a field's location: ("retry", "cap_seconds") with prefix
    TMA_ is TMA_RETRY__CAP_SECONDS; list positions are dropped."""
    return prefix + "__".join(part for part in loc if isinstance(part, str)).upper()


def setting_error(message: str) -> PydanticCustomError:
    """An error whose message is shown as it is (it names its environment variable itself)."""
    return PydanticCustomError(SETTING_ERROR, message)


def secret_problems(variable: str, value: Any, *, marker: Secret, published: set[str]) -> list[str]:
    """What is wrong with a secret setting in production, never showing its value."""
    values = value if isinstance(value, list) else [value]
    values = [str(item) for item in values if str(item).strip()]
    if not values:
        return [f"{variable} is empty: set it"] if marker.required else []
    problems = []
    for position, item in enumerate(values, start=1):
        which = variable if len(values) == 1 else f"{variable} (value {position} of {len(values)})"
        if item.strip().lower() in PLACEHOLDERS | published:
            problems.append(f"{which} is a placeholder or a published development value")
        elif len(item) < MIN_SECRET_LENGTH:
            problems.append(f"{which} is shorter than {MIN_SECRET_LENGTH} characters")
    if problems:
        problems[-1] += ": use long random values, e.g. from `openssl rand -hex 32`"
    return problems


def describe_settings_error(exc: ValidationError, prefix: str) -> str:
    """Every problem of a settings error in one line, each naming its environment variable."""
    problems = []
    for error in exc.errors():
        if error["type"] == SETTING_ERROR or not any(isinstance(p, str) for p in error["loc"]):
            problems.append(error["msg"])
        else:
            problems.append(f"{env_name(prefix, error['loc'])}: {error['msg']}")
    return "; ".join(problems)
