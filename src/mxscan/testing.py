"""Test doubles for code that uses mxscan: a scanner and an engine that answer
what the test says, and record what they were given.

The one public submodule besides the package itself (as ``httpx`` ships
``MockTransport``): it is not imported by ``import mxscan``, so production code
never loads it, and it is built only from mxscan's public API, as a plugin is.
Use ``StaticScanner`` next to your own scanner in a ``Pipeline`` (what a later
stage sees, how verdicts combine), and ``FakeEngine`` where your code takes an
``PolicyRouter`` (``mxscan.scan(data, config=engine)``, an adapter of your own).
"""

from __future__ import annotations

import asyncio

import attrs

from mxscan import HeaderEdit, Message, Pipeline, PolicyRouter, Result, Step, Verdict

__all__ = ["FakeEngine", "StaticScanner"]


class StaticScanner:
    """Answers every message with ``verdict`` (ACCEPT by default), plus ``edits``.

    ``error``: raised by every scan instead (a ``mxscan.ScannerError`` is a
    daemon that could not be asked: the pipeline's ``on_error`` decides).
    ``hold``: each scan waits for this event first (a scan in flight for as
    long as the test wants). ``messages`` are the messages scanned, in order,
    unless ``record=False`` (a long benchmark); a message's body may be closed
    once its scan is over, so read what you need in the test before that.

    ``entered`` is set when a scan begins, so a test waits for "a scan is in
    flight" instead of sleeping and hoping; ``cancelled`` is set when a scan
    held by ``hold`` was cancelled (the step's timeout, a client gone, a
    drain), so a test can tell "cancelled" from "left running".
    """

    def __init__(
        self,
        verdict: Verdict | None = None,
        *,
        name: str = "static",
        edits: tuple[HeaderEdit, ...] = (),
        error: BaseException | None = None,
        hold: asyncio.Event | None = None,
        record: bool = True,
    ) -> None:
        verdict = verdict if verdict is not None else Verdict()
        self.name = name
        self.verdict = attrs.evolve(verdict, edits=(*verdict.edits, *edits)) if edits else verdict
        self.error = error
        self.hold = hold
        self.record = record
        self.messages: list[Message] = []
        #: How many times ``aclose()`` was called (an engine closes it once).
        self.closed = 0
        #: Set by every scan as it begins (never cleared: ``clear()`` it to wait again).
        self.entered = asyncio.Event()
        #: Set when a scan waiting on ``hold`` was cancelled.
        self.cancelled = asyncio.Event()

    async def scan(self, message: Message) -> Verdict:
        if self.record:
            self.messages.append(message)
        self.entered.set()
        if self.hold is not None:
            try:
                await self.hold.wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        if self.error is not None:
            raise self.error
        return self.verdict

    async def aclose(self) -> None:
        self.closed += 1


class FakeEngine(PolicyRouter):
    """A real ``PolicyRouter`` over one ``StaticScanner``: results are built by the
    pipeline as in production (edits applied, the scanner named, policies
    routed), from the verdict the test chose.

    ``crash``: raised by ``scan()`` itself, as a bug in mxscan would be (not a
    scanner failure, which ``error`` gives). ``messages``, ``closed``,
    ``entered`` and ``cancelled`` are the scanner's; ``scanner`` is the
    ``StaticScanner`` to reach the rest.
    """

    def __init__(
        self,
        verdict: Verdict | None = None,
        *,
        edits: tuple[HeaderEdit, ...] = (),
        error: BaseException | None = None,
        hold: asyncio.Event | None = None,
        crash: BaseException | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.scanner = StaticScanner(verdict, edits=edits, error=error, hold=hold)
        self.crash = crash
        super().__init__(Pipeline([[Step(self.scanner, timeout=timeout)]]))

    @property
    def messages(self) -> list[Message]:
        return self.scanner.messages

    @property
    def closed(self) -> int:
        return self.scanner.closed

    @property
    def entered(self) -> asyncio.Event:
        return self.scanner.entered

    @property
    def cancelled(self) -> asyncio.Event:
        return self.scanner.cancelled

    async def scan(self, message: Message) -> Result:
        if self.crash is not None:
            raise self.crash
        return await super().scan(message)
