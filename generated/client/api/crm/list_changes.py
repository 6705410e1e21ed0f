from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.change_page import ChangePage
from ...models.problem import Problem
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    after: str | Unset = UNSET,
    limit: int | Unset = 100,
    contract_version: str | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(contract_version, Unset):
        headers["Contract-Version"] = contract_version

    params: dict[str, Any] = {}

    params["after"] = after

    params["limit"] = limit

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/api/integration/changes",
        "params": params,
    }

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ChangePage | Problem | None:
    if response.status_code == 200:
        response_200 = ChangePage.from_dict(response.json())

        return response_200

    if response.status_code == 400:
        response_400 = Problem.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = Problem.from_dict(response.json())

        return response_401

    if response.status_code == 405:
        response_405 = Problem.from_dict(response.json())

        return response_405

    if response.status_code == 413:
        response_413 = Problem.from_dict(response.json())

        return response_413

    if response.status_code == 422:
        response_422 = Problem.from_dict(response.json())

        return response_422

    if response.status_code == 429:
        response_429 = Problem.from_dict(response.json())

        return response_429

    if response.status_code == 500:
        response_500 = Problem.from_dict(response.json())

        return response_500

    if response.status_code == 503:
        response_503 = Problem.from_dict(response.json())

        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[ChangePage | Problem]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    after: str | Unset = UNSET,
    limit: int | Unset = 100,
    contract_version: str | Unset = UNSET,
) -> Response[ChangePage | Problem]:
    """Read the tickets, messages and status changes this side holds, in a stable order

     The change feed: what this side originated and what it received for the integration, so
    the peer can compare and repair (`reconcile`). Each item uses the request shape of its
    kind, filled as if this side were sending it now: `external_*` ids are this side's,
    `ticket_id` and the item's `peer_*` ids are the reader's, when this side knows them.

    Pages are ordered by a database sequence, never by time, and a cursor never skips a
    change: a change that commits after a page was read appears on a later page. Start
    without `after`, then pass each page's `next_cursor`; an empty page with `has_more`
    false means the reader is up to date (call again later with the same cursor).

    Args:
        after (str | Unset):
        limit (int | Unset):  Default: 100.
        contract_version (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ChangePage | Problem]
    """

    kwargs = _get_kwargs(
        after=after,
        limit=limit,
        contract_version=contract_version,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    after: str | Unset = UNSET,
    limit: int | Unset = 100,
    contract_version: str | Unset = UNSET,
) -> ChangePage | Problem | None:
    """Read the tickets, messages and status changes this side holds, in a stable order

     The change feed: what this side originated and what it received for the integration, so
    the peer can compare and repair (`reconcile`). Each item uses the request shape of its
    kind, filled as if this side were sending it now: `external_*` ids are this side's,
    `ticket_id` and the item's `peer_*` ids are the reader's, when this side knows them.

    Pages are ordered by a database sequence, never by time, and a cursor never skips a
    change: a change that commits after a page was read appears on a later page. Start
    without `after`, then pass each page's `next_cursor`; an empty page with `has_more`
    false means the reader is up to date (call again later with the same cursor).

    Args:
        after (str | Unset):
        limit (int | Unset):  Default: 100.
        contract_version (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ChangePage | Problem
    """

    return sync_detailed(
        client=client,
        after=after,
        limit=limit,
        contract_version=contract_version,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    after: str | Unset = UNSET,
    limit: int | Unset = 100,
    contract_version: str | Unset = UNSET,
) -> Response[ChangePage | Problem]:
    """Read the tickets, messages and status changes this side holds, in a stable order

     The change feed: what this side originated and what it received for the integration, so
    the peer can compare and repair (`reconcile`). Each item uses the request shape of its
    kind, filled as if this side were sending it now: `external_*` ids are this side's,
    `ticket_id` and the item's `peer_*` ids are the reader's, when this side knows them.

    Pages are ordered by a database sequence, never by time, and a cursor never skips a
    change: a change that commits after a page was read appears on a later page. Start
    without `after`, then pass each page's `next_cursor`; an empty page with `has_more`
    false means the reader is up to date (call again later with the same cursor).

    Args:
        after (str | Unset):
        limit (int | Unset):  Default: 100.
        contract_version (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ChangePage | Problem]
    """

    kwargs = _get_kwargs(
        after=after,
        limit=limit,
        contract_version=contract_version,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    after: str | Unset = UNSET,
    limit: int | Unset = 100,
    contract_version: str | Unset = UNSET,
) -> ChangePage | Problem | None:
    """Read the tickets, messages and status changes this side holds, in a stable order

     The change feed: what this side originated and what it received for the integration, so
    the peer can compare and repair (`reconcile`). Each item uses the request shape of its
    kind, filled as if this side were sending it now: `external_*` ids are this side's,
    `ticket_id` and the item's `peer_*` ids are the reader's, when this side knows them.

    Pages are ordered by a database sequence, never by time, and a cursor never skips a
    change: a change that commits after a page was read appears on a later page. Start
    without `after`, then pass each page's `next_cursor`; an empty page with `has_more`
    false means the reader is up to date (call again later with the same cursor).

    Args:
        after (str | Unset):
        limit (int | Unset):  Default: 100.
        contract_version (str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ChangePage | Problem
    """

    return (
        await asyncio_detailed(
            client=client,
            after=after,
            limit=limit,
            contract_version=contract_version,
        )
    ).parsed
