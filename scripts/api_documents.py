"""The OpenAPI documents of the backends' own APIs, made from the apps (integration_kit/api_docs).

Used by scripts/codegen.py: `make generate` writes them, `make check-generated` compares.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from crm_impl.app import build_runtime as build_crm
from crm_impl.app import create_app as create_crm_app
from crm_impl.operators.document import OPERATOR_API
from crm_impl.settings import CrmSettings
from integration_kit.api_docs import build_document, render_yaml
from integration_kit.runtime import Runtime
from tma_impl.app import build_runtime as build_tma
from tma_impl.app import create_app as create_tma_app
from tma_impl.settings import TmaSettings
from tma_impl.support.document import USER_API


def render_documents() -> dict[str, str]:
    """{repository path: text} of spec/user-api.yaml and spec/operator-api.yaml."""
    with tempfile.TemporaryDirectory() as folder:
        # The documents must not depend on this machine: no .env, a throw-away database that is
        # never opened. The environment's TMA_/CRM_ variables change no route or schema.
        database = f"sqlite+aiosqlite:///{Path(folder) / 'unused.db'}"
        tma = build_tma(
            TmaSettings(_env_file=None, environment="development", database_url=database)
        )
        crm = build_crm(
            CrmSettings(_env_file=None, environment="development", database_url=database)
        )
        try:
            return {
                USER_API.file: render_yaml(build_document(create_tma_app(tma), USER_API)),
                OPERATOR_API.file: render_yaml(build_document(create_crm_app(crm), OPERATOR_API)),
            }
        finally:
            asyncio.run(_close(tma, crm))


async def _close(*runtimes: Runtime) -> None:
    for runtime in runtimes:
        await runtime.close()
