"""A scanner that only waits: with ``seconds = 0`` it is the no-op scanner of the
milter benchmark (the cost of the milter round trip itself), with a few seconds it
is the slow scan that proves mxscan's progress keepalives outlast Postfix's
``milter_content_timeout``. It goes through the real entry-point machinery, so it
can run inside an ``mxscan milter`` subprocess."""

from __future__ import annotations

import asyncio
from pathlib import Path

import mxscan


class Sleep:
    """``started_file``: a file this scanner appends a line to as each scan begins,
    so a test can signal the milter while a scan is certainly in flight (a fixed
    sleep only guesses how long Postfix takes to hand the message over)."""

    def __init__(self, *, name: str, seconds: float | int = 0.0, started_file: str = "") -> None:
        if not isinstance(seconds, int | float) or seconds < 0:
            raise mxscan.ConfigError(f"scanner {name}: seconds must be a number >= 0")
        self.name = name
        self.seconds = float(seconds)
        self.started_file = started_file

    async def scan(self, message: mxscan.Message) -> mxscan.Verdict:
        if self.started_file:
            with Path(self.started_file).open("a") as f:  # noqa: ASYNC230 (tiny, test only)
                f.write("scanning\n")
        if self.seconds:
            await asyncio.sleep(self.seconds)
        return mxscan.Verdict(status=f"slept({self.seconds:g})")

    async def aclose(self) -> None:
        return None
