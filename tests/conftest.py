"""Fixtures shared by the suite: every database test runs on SQLite and, with
TEST_DATABASE_URL set, on PostgreSQL too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.databases import backends, drop_templates
from tests.support.pair import Pair, wired_pair


@pytest.fixture(params=backends())
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def pair(db_kind: str, tmp_path: Path) -> AsyncIterator[Pair]:
    async with wired_pair(db_kind, tmp_path) as wired:
        yield wired


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    drop_templates()
