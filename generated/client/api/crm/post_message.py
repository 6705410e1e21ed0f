from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.message_accepted import MessageAccepted
from ...models.message_request import MessageRequest
from ...models.problem import Problem
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    body: MessageRequest,
    contract_version: str | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    if not isinstance(contract_version, Unset):
        headers["Contract-Version"] = contract_version

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/api/integration/messages",
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> MessageAccepted | Problem | None:
    if response.status_code == 200:
        response_200 = MessageAccepted.from_dict(response.json())

        return response_200

    if response.status_code == 201:
        response_201 = MessageAccepted.from_dict(response.json())

        return response_201

    if response.status_code == 400:
        response_400 = Problem.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = Problem.from_dict(response.json())

        return response_401

    if response.status_code == 403:
        response_403 = Problem.from_dict(response.json())

        return response_403

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
) -> Response[MessageAccepted | Problem]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    body: MessageRequest,
    contract_version: str | Unset = UNSET,
) -> Response[MessageAccepted | Problem]:
    """Deliver one message of a ticket to the other side

     Idempotent on (`sender`, `external_message_id`): the first delivery answers 201, a replay 200
    with the same receiver message id; the same `external_message_id` with a different body
    answers 409. A message from the TMA on a closed ticket reopens it.

    Args:
        contract_version (str | Unset):
        body (MessageRequest): One message of a ticket, written on the sending side.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[MessageAccepted | Problem]
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
    body: MessageRequest,
    contract_version: str | Unset = UNSET,
) -> MessageAccepted | Problem | None:
    """Deliver one message of a ticket to the other side

     Idempotent on (`sender`, `external_message_id`): the first delivery answers 201, a replay 200
    with the same receiver message id; the same `external_message_id` with a different body
    answers 409. A message from the TMA on a closed ticket reopens it.

    Args:
        contract_version (str | Unset):
        body (MessageRequest): One message of a ticket, written on the sending side.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        MessageAccepted | Problem
    """

    return sync_detailed(
        client=client,
        body=body,
        contract_version=contract_version,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    body: MessageRequest,
    contract_version: str | Unset = UNSET,
) -> Response[MessageAccepted | Problem]:
    """Deliver one message of a ticket to the other side

     Idempotent on (`sender`, `external_message_id`): the first delivery answers 201, a replay 200
    with the same receiver message id; the same `external_message_id` with a different body
    answers 409. A message from the TMA on a closed ticket reopens it.

    Args:
        contract_version (str | Unset):
        body (MessageRequest): One message of a ticket, written on the sending side.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[MessageAccepted | Problem]
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
    body: MessageRequest,
    contract_version: str | Unset = UNSET,
) -> MessageAccepted | Problem | None:
    """Deliver one message of a ticket to the other side

     Idempotent on (`sender`, `external_message_id`): the first delivery answers 201, a replay 200
    with the same receiver message id; the same `external_message_id` with a different body
    answers 409. A message from the TMA on a closed ticket reopens it.

    Args:
        contract_version (str | Unset):
        body (MessageRequest): One message of a ticket, written on the sending side.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        MessageAccepted | Problem
    """

    return (
        await asyncio_detailed(
            client=client,
            body=body,
            contract_version=contract_version,
        )
    ).parsed
