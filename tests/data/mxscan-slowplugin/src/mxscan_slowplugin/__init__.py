"""A scanner that only waits: with ``seconds = 0`` it is the no-op scanner of the
milter benchmark (the cost of the milter round trip itself), with a few seconds it
is the slow scan that proves mxscan's progress keepalives outlast Postfix's
``milter_content_timeout``. It goes through the real entry-point machinery, so it
can run inside an ``mxscan milter`` subprocess."""

from __future__ import annotations

import asyncio

import mxscan


class Sleep:
    def __init__(self, *, name: str, seconds: float | int = 0.0) -> None:
        if not isinstance(seconds, int | float) or seconds < 0:
            raise mxscan.ConfigError(f"scanner {name}: seconds must be a number >= 0")
        self.name = name
        self.seconds = float(seconds)

    async def scan(self, message: mxscan.Message) -> mxscan.Verdict:
        if self.seconds:
            await asyncio.sleep(self.seconds)
        return mxscan.Verdict(status=f"slept({self.seconds:g})")

    async def aclose(self) -> None:
        return None
