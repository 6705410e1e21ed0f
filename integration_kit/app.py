"""The FastAPI app both backends build the same way around their own routers."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, FastAPI

from integration_kit.allow_header import CompleteAllowHeader
from integration_kit.contract_version import AnnounceContractVersion
from integration_kit.health import router as health_router
from integration_kit.problems import install_problem_handlers
from integration_kit.request_context import RequestContext
from integration_kit.runtime import Runtime, lifespan_for


def create_backend_app(runtime: Runtime, *, title: str, routers: Sequence[APIRouter]) -> FastAPI:
    """An app serving `routers` plus health and metrics, with problem+json errors everywhere and
    a request id on every request (integration_kit/request_context.py), and the contract version
    on every integration answer (integration_kit/contract_version.py).

    No generated /openapi.json or docs: the contract is spec/integration.yaml, and an app's own
    derived schema would only invite checking the app against itself.
    """
    app = FastAPI(
        title=title,
        lifespan=lifespan_for(runtime),
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.runtime = runtime
    install_problem_handlers(app)
    app.add_middleware(CompleteAllowHeader)
    # Outermost (added last): every answer, a 413 or a 500 included, carries the request id.
    app.add_middleware(RequestContext)
    # Outside that: the last-resort 500 announces the contract version as well.
    app.add_middleware(AnnounceContractVersion)
    for router in routers:
        app.include_router(router)
    app.include_router(health_router)
    return app
