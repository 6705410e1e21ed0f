"""Reading request bodies of the contract strictly, as its JSON Schema does.

Pydantic is laxer than JSON Schema where it matters here: it takes "5" and false for integers,
unix timestamps, "1700000000" and dates without seconds for date-times, UUIDs without hyphens,
and null for optional fields the schema does not let be null. A peer that relies on any of that
would break against another implementation of the same spec, so these bodies are read strictly:
JSON types as JSON Schema has them (strict mode, but an integral 5.0 is an integer), RFC 3339
date-times (a leap second is held as the last microsecond of its minute), hyphenated UUIDs, and
no null for a known field (no request property of the spec is nullable; unknown fields are still
ignored, tolerant reader).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, ValidationError

from integration_kit.problems import UNSUPPORTED_MEDIA_TYPE, ProblemError

B = TypeVar("B", bound=BaseModel)

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
_NOT_RFC3339 = "Input should be an RFC 3339 date-time"


def contract_body(model: type[B]) -> Callable[[Request], Awaitable[B]]:
    """A FastAPI dependency that reads the request body as `model`, strictly (see above).

    A body not declared `application/json` is a 415, one that is not JSON a 400, one that breaks
    the schema a 422 listing the fields.
    """

    async def read(request: Request) -> B:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            # Read as JSON whatever it claims to be, a text/plain body was stored before.
            raise ProblemError(
                415,
                UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type",
                "A contract request body is application/json.",
            )
        raw = await request.body()
        huge: list[str] = []

        def parse_int(digits: str) -> int | float:
            # Valid JSON however long, but past Python's conversion limit: out of any range.
            if len(digits) > 4000:
                huge.append(digits)
                return float("-inf") if digits.startswith("-") else float("inf")
            return int(digits)

        try:
            # JSON between systems is UTF-8 (RFC 8259); json.loads alone would take UTF-16 too.
            data = json.loads(raw.decode(), parse_constant=_reject_constant, parse_int=parse_int)
        except (ValueError, RecursionError):
            raise RequestValidationError(
                [{"type": "json_invalid", "loc": ("body",), "msg": "Invalid JSON"}]
            ) from None
        reading = _Reading()
        conformed = _conform(model, data, ("body",), reading)
        if reading.errors:
            # One answer lists every problem: pydantic's findings elsewhere too (a missing field
            # beside a malformed one), so a peer does not fix its request one error at a time.
            raise RequestValidationError(
                reading.errors + _errors_elsewhere(model, conformed, reading.errors)
            )
        # Usually nothing needed rewriting, and pydantic reads the raw body as it came.
        body = json.dumps(conformed) if reading.rewritten or huge else raw
        try:
            return model.model_validate_json(body, strict=True)
        except ValidationError as exc:
            raise RequestValidationError(
                [
                    {"type": err["type"], "loc": ("body", *err["loc"]), "msg": err["msg"]}
                    for err in exc.errors(include_url=False)
                ]
            ) from None

    return read


def _errors_elsewhere(
    model: type[BaseModel], conformed: Any, known: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """pydantic's errors for the body at places the strict reading has not reported already."""
    try:
        model.model_validate_json(json.dumps(conformed), strict=True)
    except ValidationError as exc:
        reported = {tuple(error["loc"]) for error in known}
        return [
            {"type": err["type"], "loc": ("body", *err["loc"]), "msg": err["msg"]}
            for err in exc.errors(include_url=False)
            if ("body", *err["loc"]) not in reported
        ]
    return []


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@dataclass
class _Reading:
    errors: list[dict[str, Any]] = field(default_factory=list)
    rewritten: bool = False  # a value was rewritten for pydantic to read it as JSON Schema does


def _conform(annotation: Any, value: Any, loc: tuple[str | int, ...], reading: _Reading) -> Any:
    """`value` with JSON Schema's reading applied where pydantic's differs; errors noted."""
    annotation = _without_none(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not isinstance(value, dict):
            return value
        conformed = dict(value)
        for name, info in annotation.model_fields.items():
            key = info.alias or name
            if key not in value:
                continue
            if value[key] is None:
                reading.errors.append(_error((*loc, key), "null_not_allowed", "Leave it out"))
                continue
            conformed[key] = _conform(info.annotation, value[key], (*loc, key), reading)
        return conformed
    if get_origin(annotation) is list and isinstance(value, list):
        (item,) = get_args(annotation)
        return [_conform(item, v, (*loc, i), reading) for i, v in enumerate(value)]
    if annotation is uuid.UUID and isinstance(value, str) and not _UUID.fullmatch(value):
        reading.errors.append(_error(loc, "uuid_format", "Input should be a hyphenated UUID"))
    elif annotation in (datetime, AwareDatetime) and isinstance(value, str):
        return _rfc3339(value, loc, reading)
    elif annotation is int and isinstance(value, float) and value.is_integer():
        reading.rewritten = True
        return int(value)  # JSON Schema: 5.0 is an integer
    return value


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _rfc3339(value: str, loc: tuple[str | int, ...], reading: _Reading) -> str:
    """The date-time in a form pydantic reads the same, or `value` with an error appended."""
    found = _DATE_TIME.fullmatch(value)
    if found is None:
        reading.errors.append(_error(loc, "datetime_format", _NOT_RFC3339))
        return value
    year, month, day, hour, minute, second = (int(part) for part in found.group(1, 2, 3, 4, 5, 6))
    fraction, sign, zone_hours, zone_minutes = found.group(7, 8, 9, 10)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    offset = timedelta(hours=int(zone_hours or 0), minutes=int(zone_minutes or 0))
    try:
        if second > 60 or int(zone_minutes or 0) > 59:
            raise ValueError
        zone = timezone(-offset if sign == "-" else offset)  # ValueError from 24:00 on
        moment = datetime(year or 1, month, day, hour, minute, min(second, 59), micro, zone)
    except ValueError:
        reading.errors.append(_error(loc, "datetime_format", _NOT_RFC3339))
        return value
    try:
        if year == 0:
            raise OverflowError
        in_utc = moment.astimezone(UTC)
    except OverflowError:
        reading.errors.append(_error(loc, "datetime_range", "Date-time outside years 1-9999 UTC"))
        return value
    if second != 60:
        return value  # pydantic reads it as it is
    if (in_utc.hour, in_utc.minute) != (23, 59):
        reading.errors.append(_error(loc, "datetime_format", "Second 60 only at a leap second"))
        return value
    reading.rewritten = True
    return moment.replace(microsecond=999999).isoformat()


def _error(loc: tuple[str | int, ...], type_: str, msg: str) -> dict[str, Any]:
    return {"type": type_, "loc": loc, "msg": msg}
