"""schemathesis command-line hooks for `make contract` (loaded through SCHEMATHESIS_HOOKS).

The same hooks and checks as the pytest contract tests: generated requests mostly name the tickets
scripts/contract.py seeded into the server under test (CONTRACT_SIDE says which), so messages and
status changes are stored rather than answered 404; valid cases keep to the instants the spec
allows in words.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

from tests.contract import checks  # noqa: F401  (registers the checks of the spec's prose)
from tests.contract.seeding import aim_at_seeded_tickets, names_representable_instants

SIDE = os.environ.get("CONTRACT_SIDE", "")
if SIDE not in ("crm", "tma"):
    raise RuntimeError("set CONTRACT_SIDE to the side under test: crm or tma")


@schemathesis.hook
def map_case(context: schemathesis.HookContext, case: Any) -> Any:
    return aim_at_seeded_tickets("crm" if SIDE == "crm" else "tma", case)


@schemathesis.hook
def filter_case(context: schemathesis.HookContext, case: Any) -> bool:
    return names_representable_instants(case)
