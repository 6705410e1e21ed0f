"""Generated from spec/integration.yaml by `make generate`. Do not edit by hand.

- `generated.models`: pydantic v2 models of every schema (datamodel-code-generator).
- `generated.client`: a typed httpx client (openapi-python-client), used to call the peer.
- `CONTRACT_VERSION`: the spec's `info.version`, which both sides announce (docs/design.md §6).
"""

CONTRACT_VERSION = "1.1.0"
