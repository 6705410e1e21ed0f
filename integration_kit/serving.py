"""uvicorn as `serve` runs it: told at once when it is asked to stop.

uvicorn waits for open requests to finish before it stops, and a Mini App event stream lasts
minutes; so the runtime's `on_stopping` hooks run as soon as SIGTERM or SIGINT arrives, and the
streams end themselves. `timeout_graceful_shutdown` (in the config) cuts whatever is left.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import FrameType
from typing import Any

import uvicorn

from integration_kit.runtime import Runtime


class StoppingServer(uvicorn.Server):
    def __init__(self, config: Any, runtime: Runtime) -> None:
        super().__init__(config)
        self.runtime = runtime

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.runtime.stopping.set()  # the console's streams watch this (a threading.Event)
        super().handle_exit(sig, frame)
        with contextlib.suppress(RuntimeError):  # no loop running yet: nothing is open
            loop = asyncio.get_running_loop()
            for callback in self.runtime.on_stopping:
                loop.call_soon_threadsafe(callback)
