"""Request bodies of the backends' own APIs, read as strictly as the contract's (415, 400, 422).

FastAPI reads a body model laxly ("5" and false for an integer, a UUID without hyphens, a body
sent as text/plain), and before any dependency runs, so a request without credentials learnt
whether its body parsed before hearing 401. Here a body is a dependency instead, read by
`contract_body` after the router's authentication:

    NewTicketBody = Annotated[NewTicket, Depends(strict_body(NewTicket))]

    @router.post("/tickets", openapi_extra=request_body(NewTicket))
    async def open_ticket(body: NewTicketBody, ...)

`request_body` puts the model's schema in the operation's document, since FastAPI no longer
sees a body parameter; integration_kit.api_docs moves its definitions into the components.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel

from integration_kit.contract_body import contract_body
from integration_kit.problems import UNSUPPORTED_MEDIA_TYPE, ProblemError

__all__ = ["request_body", "strict_body"]

B = TypeVar("B", bound=BaseModel)


def strict_body(model: type[B]) -> Callable[[Request], Awaitable[B]]:
    """A dependency: 415 unless the body is JSON; then `contract_body(model)` (400, 422)."""
    read = contract_body(model)

    async def dependency(request: Request) -> B:
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            raise ProblemError(
                415,
                UNSUPPORTED_MEDIA_TYPE,
                "Unsupported media type",
                "The request body must be application/json.",
            )
        return await read(request)

    return dependency


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra=` of a route whose body is `JsonBody[model]`."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
