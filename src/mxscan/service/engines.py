"""What a long-running adapter needs from an engine, and the holder it keeps it in.

The holder is the core's (``mxscan.holder``, the function adapter's too): each
scan holds the engine it started with, a reload installs the new engine for
scans that start afterwards, and an old engine is closed (its daemon
connections released) only once its last scan has ended. ``wait_idle()`` is
how a drain waits for the scans in flight.
"""

from __future__ import annotations

from typing import Protocol

from mxscan.holder import EngineHolder
from mxscan.message import Message
from mxscan.verdict import Result

__all__ = ["EngineHolder", "EngineLike"]


class EngineLike(Protocol):
    """What an adapter (and the metrics around one) needs from ``mxscan.PolicyRouter``:
    the one spelling of it, so tests and embedders can pass small fakes."""

    async def scan(self, message: Message) -> Result: ...

    def policy_for(self, recipient: str) -> str: ...

    async def aclose(self) -> None: ...
