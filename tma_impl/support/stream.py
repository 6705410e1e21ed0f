"""A conversation's event stream: the events after a given one, then each new one as it commits.

Served as NDJSON over an ordinary response read with fetch(), not as Server-Sent Events:
EventSource cannot send the `Authorization: tma <initData>` header, and initData must never go in
a URL (it would land in logs and histories). Long polling would work too, but costs a request
(and an initData check) per event; one streamed response carries them all. The client resumes
after the last `seq` it saw; `seq` is per ticket and gapless (see events.py), so a reconnect
neither misses nor repeats an event.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

from integration_kit.db import Database
from tma_impl.support import events, service
from tma_impl.support.live import TicketEventHub
from tma_impl.support.schemas import EventOut, MessageOut

BATCH = 200
KEEPALIVE_SECONDS = 15.0


def event_line(event: events.Event) -> bytes:
    message = None
    if event.message is not None:
        message = MessageOut.model_validate(
            {**service.message_view(event.message), "seq": event.seq}
        )
    out = EventOut.model_validate(
        {
            "seq": event.seq,
            "kind": event.kind,
            "status": event.status,
            "at": event.at,
            "message": message,
        }
    )
    return out.model_dump_json(exclude_none=True).encode() + b"\n"


async def conversation_stream(
    *,
    db: Database,
    hub: TicketEventHub,
    ticket_id: uuid.UUID,
    after: int,
    poll_seconds: float,
    stream_seconds: float,
) -> AsyncIterator[bytes]:
    """Lines: first `{"kind": "open", "seq": after}`, then events in order, `{"kind": "ping"}`
    when idle; ends after `stream_seconds`, or when the server stops (the client reconnects
    from its last seq)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + stream_seconds
    last = after
    yield json.dumps({"kind": "open", "seq": after}).encode() + b"\n"
    quiet_since = loop.time()
    with hub.listen(ticket_id) as woken:
        while (remaining := deadline - loop.time()) > 0 and not hub.stopping:
            woken.clear()  # before reading: a commit from now on wakes the wait below
            async with db.transaction() as session:
                batch = await events.events_after(
                    session, ticket_id=ticket_id, after=last, limit=BATCH
                )
            for event in batch:
                yield event_line(event)
                last = event.seq
            if batch:
                quiet_since = loop.time()
                if len(batch) == BATCH:
                    continue
            elif loop.time() - quiet_since >= KEEPALIVE_SECONDS:
                yield b'{"kind":"ping"}\n'  # keeps proxies from closing an idle response
                quiet_since = loop.time()
            try:
                await asyncio.wait_for(woken.wait(), timeout=min(poll_seconds, remaining))
            except TimeoutError:
                pass  # another process may have written: read again
