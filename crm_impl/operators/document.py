"""The operator API's OpenAPI document (spec/operator-api.yaml): what it covers and says."""

from __future__ import annotations

from integration_kit.api_docs import LONG_POLL, ApiDocument

OPERATOR_API = ApiDocument(
    name="operator-api",
    title="CRM helpdesk: operator API",
    version="1.0.0",
    prefix="/api/crm",
    description=f"""\
The API the helpdesk's operators (and their console) call, under `/api/crm` on the CRM backend.
Not part of the integration contract (spec/integration.yaml): this document is made from the app
by `make generate` and served at `/docs` where `CRM_API_DOCS_ENABLED` allows it.

Every request carries `Authorization: Bearer <token>`, an operator's token made on the command
line (`python -m crm_impl operators add NAME`); a revoked token is refused.

Lists are paged with `limit` (1 to 200) and `offset` (0 to 1,000,000). A reply may carry a
client-made `id`, so a retried reply is stored once (200 instead of 201); the same id with another
body answers 409.

Request bodies are `application/json`, read as JSON Schema reads them (no `"5"` for an integer,
hyphenated UUIDs, no `null` for a field), at most 1 MiB. Errors are `application/problem+json`
(RFC 9457); each response names its problem type.

An operation that streams or long-polls says so with `{LONG_POLL}: true` or a
`text/event-stream` answer; stateless fuzzing leaves it out.
""",
)
