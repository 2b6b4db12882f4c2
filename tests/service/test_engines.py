"""service.engines: reload swaps engines without closing one a scan still uses."""

from __future__ import annotations

import asyncio

from mxscan.message import Message
from mxscan.service.engines import EngineHolder
from mxscan.verdict import Result


class Fake:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = 0

    async def scan(self, message: Message) -> Result:  # pragma: no cover - not called
        raise NotImplementedError

    def policy_for(self, recipient: str) -> str:
        return "default"

    async def aclose(self) -> None:
        self.closed += 1


async def test_retired_engine_closes_only_after_its_last_scan() -> None:
    old, new = Fake("old"), Fake("new")
    holder: EngineHolder[Fake] = EngineHolder(old)
    async with holder.use() as engine:
        assert engine is old
        holder.replace(new)
        assert holder.current is new
        await asyncio.sleep(0)
        assert old.closed == 0  # still scanning with it
    await asyncio.sleep(0)
    assert old.closed == 1
    assert new.closed == 0


async def test_unused_engine_closes_at_once_on_replace() -> None:
    old, new = Fake("old"), Fake("new")
    holder: EngineHolder[Fake] = EngineHolder(old)
    holder.replace(new)
    await asyncio.sleep(0)
    assert old.closed == 1


async def test_wait_idle_and_aclose() -> None:
    engine = Fake("e")
    holder: EngineHolder[Fake] = EngineHolder(engine)
    assert await holder.wait_idle(0.01)
    done = asyncio.Event()

    async def scan() -> None:
        async with holder.use():
            await done.wait()

    task = asyncio.ensure_future(scan())
    await asyncio.sleep(0)
    assert holder.active == 1
    assert not await holder.wait_idle(0.05)
    done.set()
    await task
    assert await holder.wait_idle(0.01)
    await holder.aclose()
    assert engine.closed == 1


async def test_a_failing_close_is_logged_not_raised(caplog) -> None:  # type: ignore[no-untyped-def]
    class Broken(Fake):
        async def aclose(self) -> None:
            raise OSError("socket gone")

    holder: EngineHolder[Fake] = EngineHolder(Broken("b"))
    await holder.aclose()
    assert "error while closing the scanners: socket gone" in caplog.text
