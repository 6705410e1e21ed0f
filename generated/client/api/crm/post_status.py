from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.problem import Problem
from ...models.status_accepted import StatusAccepted
from ...models.status_request import StatusRequest
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    body: StatusRequest,
    contract_version: str | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(contract_version, Unset):
        headers["Contract-Version"] = contract_version

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/api/integration/status",
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Problem | StatusAccepted | None:
    if response.status_code == 200:
        response_200 = StatusAccepted.from_dict(response.json())

        return response_200

    if response.status_code == 400:
        response_400 = Problem.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = Problem.from_dict(response.json())

        return response_401

    if response.status_code == 404:
        response_404 = Problem.from_dict(response.json())

        return response_404

    if response.status_code == 405:
        response_405 = Problem.from_dict(response.json())

        return response_405

    if response.status_code == 409:
        response_409 = Problem.from_dict(response.json())

        return response_409

    if response.status_code == 413:
        response_413 = Problem.from_dict(response.json())

        return response_413

    if response.status_code == 415:
        response_415 = Problem.from_dict(response.json())

        return response_415

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
) -> Response[Problem | StatusAccepted]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    body: StatusRequest,
    contract_version: str | Unset = UNSET,
) -> Response[Problem | StatusAccepted]:
    """Deliver a status change of a ticket to the other side

     Last writer wins by `changed_at`: a change older than or equal to the one the receiver has
    applied is acknowledged with `applied: false` and changes nothing. A close that is older
    than a customer message the receiver holds is applied, and answered with status `open`:
    that message reopens the ticket, as it does on the other side.

    Args:
        contract_version (str | Unset):
        body (StatusRequest): A status change of a ticket made on the sending side.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Problem | StatusAccepted]
    """

    kwargs = _get_kwargs(
        body=body,
        contract_version=contract_version,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    body: StatusRequest,
    contract_version: str | Unset = UNSET,
) -> Problem | StatusAccepted | None:
    """Deliver a status change of a ticket to the other side

     Last writer wins by `changed_at`: a change older than or equal to the one the receiver has
    applied is acknowledged with `applied: false` and changes nothing. A close that is older
    than a customer message the receiver holds is applied, and answered with status `open`:
    that message reopens the ticket, as it does on the other side.

    Args:
        contract_version (str | Unset):
        body (StatusRequest): A status change of a ticket made on the sending side.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Problem | StatusAccepted
    """

    return sync_detailed(
        client=client,
        body=body,
        contract_version=contract_version,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    body: StatusRequest,
    contract_version: str | Unset = UNSET,
) -> Response[Problem | StatusAccepted]:
    """Deliver a status change of a ticket to the other side

     Last writer wins by `changed_at`: a change older than or equal to the one the receiver has
    applied is acknowledged with `applied: false` and changes nothing. A close that is older
    than a customer message the receiver holds is applied, and answered with status `open`:
    that message reopens the ticket, as it does on the other side.

    Args:
        contract_version (str | Unset):
        body (StatusRequest): A status change of a ticket made on the sending side.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Problem | StatusAccepted]
    """

    kwargs = _get_kwargs(
        body=body,
        contract_version=contract_version,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    body: StatusRequest,
    contract_version: str | Unset = UNSET,
) -> Problem | StatusAccepted | None:
    """Deliver a status change of a ticket to the other side

     Last writer wins by `changed_at`: a change older than or equal to the one the receiver has
    applied is acknowledged with `applied: false` and changes nothing. A close that is older
    than a customer message the receiver holds is applied, and answered with status `open`:
    that message reopens the ticket, as it does on the other side.

    Args:
        contract_version (str | Unset):
        body (StatusRequest): A status change of a ticket made on the sending side.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Problem | StatusAccepted
    """

    return (
        await asyncio_detailed(
            client=client,
            body=body,
            contract_version=contract_version,
        )
    ).parsed
