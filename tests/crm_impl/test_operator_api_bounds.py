"""Regressions: the operator API's paging answered 500 for an offset beyond 64 bits (SQLite and
PostgreSQL overflowed); every query value is bounded where it enters and answers 422."""

from __future__ import annotations

import pytest

from crm_impl.operators.endpoints import MAX_OFFSET
from tests.e2e.helpers import assert_problem, linked_ticket
from tests.support.pair import Pair

VALIDATION = "urn:tma-crm:problem:validation"


@pytest.mark.parametrize(
    "query",
    [
        "offset=9223372036854775808",  # overflowed SQLite INTEGER / asyncpg int64: 500 before
        "offset=99999999999999999999999",
        f"offset={MAX_OFFSET + 1}",
        "offset=-1",
        "limit=0",
        "limit=201",
        "limit=9223372036854775808",
        "status=bogus",
        "mine=maybe",
    ],
)
async def test_out_of_range_paging_and_filters_are_422(pair: Pair, query: str) -> None:
    response = await pair.crm.get(f"/api/crm/tickets?{query}", headers=pair.operator_headers)
    problem = assert_problem(response, 422, VALIDATION)
    assert problem.errors
    assert problem.errors[0].loc[0] == "query"


async def test_the_largest_offset_is_served(pair: Pair) -> None:
    await linked_ticket(pair)
    response = await pair.crm.get(
        f"/api/crm/tickets?offset={MAX_OFFSET}&limit=200", headers=pair.operator_headers
    )
    assert response.status_code == 200, response.text
    assert response.json() == []
