"""A small HTTP/1.1 proxy on 127.0.0.1 between one backend's dispatchers and the other backend's
API processes, which breaks requests when told to.

It is written on raw asyncio streams rather than a web framework so that every failure is exact:
a reset is a real TCP RST, a dropped response is a connection closed after the peer answered, a
held request waits for the test to release it. Upstream calls go through one pooled aiohttp
session, round-robin across the peer's API processes, skipping one that refuses connections the
way a load balancer would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import aiohttp

# Headers that belong to one connection, not to the request or response being relayed.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "upgrade",
    "content-length",
    "host",
}


class FaultKind(StrEnum):
    """What the proxy can do to the next matching request."""

    drop_response = "response_dropped"  # forwarded and processed; the answer never comes back
    duplicate = "request_duplicated"  # forwarded twice at once; one answer comes back
    reset = "connection_reset"  # a TCP RST instead of forwarding: the peer never sees it
    slow = "slow_response"  # answered (or forwarded) only after the client's timeout
    refuse = "request_refused"  # a permanent 422 without forwarding: the event goes dead
    hold = "request_held"  # waits until released (the test kills the sender meanwhile)


@dataclass
class Fault:
    """One armed fault; it applies to the next request whose path ends with `path_suffix`."""

    kind: FaultKind
    path_suffix: str = ""
    delay_seconds: float = 0.0
    # slow: forward first and answer late (True), or forward late (False: a stale request).
    # hold: forward first and hold the answer (True), or hold before forwarding (False).
    forward_first: bool = True
    fired: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    # Filled in when it fires: the sender's source port, and the id the request carried.
    client_port: int | None = None
    key: str | None = None


@dataclass
class _Request:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    keep_alive: bool


@dataclass
class _Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


def request_key(path: str, body: bytes) -> str:
    """What identifies a delivery on the wire, so re-sends of it can be counted."""
    try:
        data = json.loads(body)
    except ValueError:
        return path
    if not isinstance(data, dict):
        return path
    if path.endswith("/status"):
        return f"{path}:{data.get('external_ticket_id')}:{data.get('changed_at')}"
    return f"{path}:{data.get('external_message_id')}"


class FaultProxy:
    """Forwards to `upstream_ports` on 127.0.0.1; `arm()` breaks the next matching request."""

    def __init__(self, name: str, upstream_ports: Sequence[int]) -> None:
        self.name = name
        self.upstream_ports = list(upstream_ports)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._session: aiohttp.ClientSession | None = None
        self._armed: deque[Fault] = deque()
        self._next = 0
        self._handlers: set[asyncio.Task[None]] = set()
        self.received: Counter[str] = Counter()  # requests from the senders, by delivery
        self.forwarded = 0
        self.upstream_failures = 0
        self.fired: Counter[str] = Counter()

    async def start(self) -> int:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, force_close=False),
            timeout=aiohttp.ClientTimeout(total=60),
            auto_decompress=False,
        )
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        for fault in self._armed:
            fault.release.set()
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        if self._session is not None:
            await self._session.close()

    def arm(self, fault: Fault) -> Fault:
        self._armed.append(fault)
        return fault

    def disarm(self, fault: Fault) -> None:
        with contextlib.suppress(ValueError):
            self._armed.remove(fault)
        fault.release.set()

    def _take(self, request: _Request) -> Fault | None:
        path = request.target.split("?", 1)[0]
        for fault in self._armed:
            if path.endswith(fault.path_suffix):
                self._armed.remove(fault)
                return fault
        return None

    # --- one client connection ---------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                    return
                if request is None:
                    return
                if not await self._relay(request, writer):
                    return
                if not request.keep_alive:
                    return
        except asyncio.CancelledError:
            pass
        finally:
            self._handlers.discard(task)
            with contextlib.suppress(Exception):
                writer.close()

    async def _relay(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        """Handle one request; False when the connection must end here."""
        path = request.target.split("?", 1)[0]
        key = request_key(path, request.body)
        self.received[key] += 1
        fault = self._take(request)
        if fault is None:
            return await _answer(writer, await self._forward(request))
        fault.key = key
        peer = writer.get_extra_info("peername")
        fault.client_port = int(peer[1]) if peer else None
        self.fired[fault.kind] += 1
        if fault.kind is FaultKind.reset:
            fault.fired.set()
            _reset(writer)
            return False
        if fault.kind is FaultKind.refuse:
            fault.fired.set()
            return await _answer(writer, _refusal())
        if fault.kind is FaultKind.duplicate:
            fault.fired.set()
            first, second = await asyncio.gather(self._forward(request), self._forward(request))
            return await _answer(writer, first if first.status < 500 else second)
        if fault.kind is FaultKind.drop_response:
            await self._forward(request)
            fault.fired.set()
            return False  # closed without an answer, after the peer processed it
        if fault.kind is FaultKind.slow:
            fault.fired.set()
            if fault.forward_first:
                response = await self._forward(request)
                await asyncio.sleep(fault.delay_seconds)
            else:
                await asyncio.sleep(fault.delay_seconds)
                response = await self._forward(request)
            return await _answer(writer, response)
        # hold: the test kills the sender while this waits, then releases it.
        if fault.forward_first:
            response = await self._forward(request)
            fault.fired.set()
            await fault.release.wait()
        else:
            fault.fired.set()
            await fault.release.wait()
            response = await self._forward(request)
        return await _answer(writer, response)

    async def _forward(self, request: _Request) -> _Response:
        """Send to the next live upstream; 502 when none answers (the peer is down)."""
        assert self._session is not None
        headers = [(k, v) for k, v in request.headers if k.lower() not in HOP_BY_HOP]
        for _ in range(len(self.upstream_ports)):
            port = self.upstream_ports[self._next % len(self.upstream_ports)]
            self._next += 1
            url = f"http://127.0.0.1:{port}{request.target}"
            try:
                async with self._session.request(
                    request.method, url, data=request.body, headers=headers
                ) as upstream:
                    body = await upstream.read()
                    self.forwarded += 1
                    return _Response(
                        upstream.status,
                        upstream.reason or "",
                        [
                            (k, v)
                            for k, v in upstream.headers.items()
                            if k.lower() not in HOP_BY_HOP
                        ],
                        body,
                    )
            except aiohttp.ClientConnectorError:
                continue  # this process is down: try the next one, like a load balancer
            except (aiohttp.ClientError, TimeoutError, OSError):
                break  # it died mid-request: it may have processed it; report a bad gateway
        self.upstream_failures += 1
        return _bad_gateway()


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None  # the client closed an idle connection
        raise
    lines = head[:-4].decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    lowered = {name.lower(): value for name, value in headers}
    if "chunked" in lowered.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    else:
        body = await reader.readexactly(int(lowered.get("content-length", "0") or 0))
    keep_alive = lowered.get("connection", "").lower() != "close"
    return _Request(method, target, headers, body, keep_alive)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def _answer(writer: asyncio.StreamWriter, response: _Response) -> bool:
    head = [f"HTTP/1.1 {response.status} {response.reason}"]
    head += [f"{name}: {value}" for name, value in response.headers]
    head.append(f"content-length: {len(response.body)}")
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)
        await writer.drain()
    except (ConnectionError, RuntimeError):
        return False  # the sender gave up (timeout) or was killed meanwhile
    return not writer.is_closing()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (linger 0), the way a crashed middlebox or peer does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _problem(status: int, reason: str, type_: str, detail: str) -> _Response:
    body = json.dumps({"type": type_, "title": reason, "status": status, "detail": detail})
    return _Response(status, reason, [("content-type", "application/problem+json")], body.encode())


def _bad_gateway() -> _Response:
    return _problem(502, "Bad Gateway", "about:blank", "No upstream process answered.")


def _refusal() -> _Response:
    return _problem(
        422,
        "Unprocessable Content",
        "urn:tma-crm:problem:validation",
        "Refused by the fault proxy (injected permanent failure).",
    )
