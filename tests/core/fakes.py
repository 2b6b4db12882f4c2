"""Small scanners for tests: each does one thing, so a failure points at the core."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from mxscan import Action, HeaderEdit, Message, ScannerError, Verdict


class FakeScanner:
    """Returns a fixed verdict (or runs ``fn``) and records what it saw."""

    def __init__(
        self,
        name: str = "fake",
        *,
        action: Action = Action.ACCEPT,
        edits: tuple[HeaderEdit, ...] = (),
        delay: float = 0.0,
        fn: Callable[[Message], Any] | None = None,
        **verdict: Any,
    ) -> None:
        self.name = name
        self.action = action
        self.edits = edits
        self.delay = delay
        self.fn = fn
        self.verdict = verdict
        self.seen: list[Message] = []
        self.closed = 0
        self.started: list[float] = []

    async def scan(self, message: Message) -> Verdict:
        self.started.append(asyncio.get_running_loop().time())
        self.seen.append(message)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fn is not None:
            return self.fn(message)  # type: ignore[no-any-return]
        return Verdict(self.action, edits=self.edits, **self.verdict)

    async def aclose(self) -> None:
        self.closed += 1


def raising(name: str, exc: BaseException) -> FakeScanner:
    def fn(message: Message) -> Verdict:
        raise exc

    return FakeScanner(name, fn=fn)


def down(name: str = "down") -> FakeScanner:
    return raising(name, ScannerError("connect to unix:/nowhere failed: No such file"))
