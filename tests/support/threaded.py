"""Run a MilterServer on its own event loop in a thread, for tests whose client is a
blocking external program (miltertest, Postfix)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from mxscan.adapters.milter.server import MilterServer
from mxscan.addresses import Address


class ThreadedMilter:
    def __init__(self, make_server: Callable[[], MilterServer], address: Address) -> None:
        self._make_server = make_server
        self.address = address
        self.server: MilterServer | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self.server = self._make_server()
            await self.server.listen(self.address)

        try:
            self._loop.run_until_complete(start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> ThreadedMilter:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self

    def stop(self, drain_timeout: float = 5.0) -> None:
        if self.server is not None and self._loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self.server.stop(drain_timeout), self._loop)
            future.result(drain_timeout + 15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
