"""service.lifecycle: the ready line, drain on SIGTERM, reload on SIGHUP."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import pytest

from mxscan.message import Message
from mxscan.service.engines import EngineHolder, EngineLike
from mxscan.service.lifecycle import Reloader, run_until_signalled
from mxscan.verdict import Result

log = logging.getLogger("mxscan.test")


class Fake:
    closed = 0

    async def scan(self, message: Message) -> Result:  # pragma: no cover
        raise NotImplementedError

    def policy_for(self, recipient: str) -> str:
        return "default"

    async def aclose(self) -> None:
        self.closed += 1


async def test_ready_then_sigterm_drains(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "mxscan")
    drained: list[float] = []

    async def drain(timeout: float) -> None:
        drained.append(timeout)

    class OnReady(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("ready (pid"):
                os.kill(os.getpid(), signal.SIGTERM)  # handled by then: ready means so

    handler = OnReady()
    log.addHandler(handler)
    try:
        await asyncio.wait_for(run_until_signalled(log, drain=drain, drain_timeout=7.0), 5)
    finally:
        log.removeHandler(handler)
    assert f"ready (pid {os.getpid()})" in caplog.text
    assert "stopping: draining scans in flight (up to 7.0s)" in caplog.text
    assert drained == [7.0]


async def test_sighup_reloads_and_a_bad_file_keeps_the_old(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "mxscan")
    first, second = Fake(), Fake()
    holder: EngineHolder[EngineLike] = EngineHolder(first)
    builds: list[object] = [ValueError("line 3: bad key"), second]
    outcomes: list[bool] = []

    def build() -> EngineLike:
        item = builds.pop(0)
        if isinstance(item, Exception):
            raise item
        assert isinstance(item, Fake)
        return item

    reloader = Reloader(holder, build, "/etc/mxscan.toml", log, on_reload=outcomes.append)
    assert not await reloader.reload()
    assert holder.current is first
    assert "reload failed, keeping the old configuration: line 3: bad key" in caplog.text
    reloader.start()  # as the SIGHUP handler does
    assert reloader._running is not None
    await reloader._running
    assert holder.current is second
    assert "configuration reloaded from /etc/mxscan.toml" in caplog.text
    assert outcomes == [False, True]
    await asyncio.sleep(0)
    assert first.closed == 1
