"""The user API's OpenAPI document (spec/user-api.yaml): what it covers and says up front."""

from __future__ import annotations

from integration_kit.api_docs import LONG_POLL, ApiDocument

USER_API = ApiDocument(
    name="user-api",
    title="Mini App support: user API",
    version="1.0.0",
    prefix="/api/support",
    description=f"""\
The API the Telegram Mini App calls for its user, under `/api/support` on the TMA backend. Not
part of the integration contract (spec/integration.yaml): this document is made from the app by
`make generate` and served at `/docs` where `TMA_API_DOCS_ENABLED` allows it.

Every request carries `Authorization: tma <initData>`, the launch data Telegram signed with the
bot's token. A user id outside Telegram's range (1 to 2^52-1) is refused; display fields that do
not fit (names over 64 characters, a username or language code that is not one) are cut or left
out, never refused.

The client makes ticket and message ids, so a retried write creates nothing new (200 instead of
201); the same id with other content answers 409. Someone else's ticket answers 404 like a missing
one.

Request bodies are `application/json`, read as JSON Schema reads them (no `"5"` for an integer,
hyphenated UUIDs, no `null` for a field), at most 1 MiB. Errors are `application/problem+json`
(RFC 9457); each response names its problem type.

An operation that streams or long-polls says so with `{LONG_POLL}: true` or a
`text/event-stream` answer; stateless fuzzing leaves it out.
""",
)
