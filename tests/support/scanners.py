"""Small in-test scanners for the milter tests (real Scanner protocol, no daemons)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from mxscan import ScannerError
from mxscan.body import Body, BodyBuilder
from mxscan.edits import HeaderEdit
from mxscan.engine import Engine
from mxscan.message import Message
from mxscan.pipeline import Pipeline, Step
from mxscan.verdict import Action, SmtpReply, Verdict


class AddHeader:
    def __init__(self, name: str = "tagger", header: str = "X-Scanned", value: str = "mxscan"):
        self.name = name
        self.header = header
        self.value = value
        self.closed = False

    async def scan(self, message: Message) -> Verdict:
        return Verdict(edits=(HeaderEdit.add(self.header, self.value),), status="tagged")

    async def aclose(self) -> None:
        self.closed = True


class SubjectRule:
    """DISCARD / REJECT / QUARANTINE / TEMPFAIL on a keyword in the Subject."""

    name = "subject"

    async def scan(self, message: Message) -> Verdict:
        subject = message.get("Subject") or ""
        if "discard-me" in subject:
            return Verdict(Action.DISCARD, reason="subject", status="discard")
        if "reject-me" in subject:
            return Verdict(
                Action.REJECT, reply=SmtpReply(554, "5.7.1", "Rejected: 100% bad"), status="bad"
            )
        if "hold-me" in subject:
            return Verdict(Action.QUARANTINE, reason="held for review", status="hold")
        if "later-me" in subject:
            return Verdict(Action.TEMPFAIL, status="later")
        if "change-me" in subject:
            return Verdict(edits=(HeaderEdit.change("Subject", 1, "changed"),), status="changed")
        return Verdict(status="clean")

    async def aclose(self) -> None:
        pass


class Slow:
    name = "slow"

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = asyncio.Event()

    async def scan(self, message: Message) -> Verdict:
        self.started.set()
        await asyncio.sleep(self.seconds)
        return Verdict(status="slow")

    async def aclose(self) -> None:
        pass


class ReplaceBody:
    """Replaces the body with ``size`` bytes spooled to disk, and keeps each body it
    made so a test can check that the milter closed it."""

    name = "rebody"
    changes_body = True

    def __init__(self, size: int, spool_dir: str | None = None) -> None:
        self.size = size
        self.spool_dir = spool_dir
        self.made: list[Body] = []

    def new_body(self) -> bytes:
        line = b"replaced body line\r\n"
        return (line * (self.size // len(line) + 1))[: self.size]

    async def scan(self, message: Message) -> Verdict:
        builder = BodyBuilder(threshold=64 * 1024, spool_dir=self.spool_dir)
        builder.write(self.new_body())
        body = builder.finish()
        self.made.append(body)
        return Verdict(body=body, status="rebodied")

    async def aclose(self) -> None:
        pass


class Gate:
    """Holds each scan until released: a scan is in flight for exactly as long as
    the test wants, however slow the machine."""

    name = "gate"

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    async def scan(self, message: Message) -> Verdict:
        self.entered.set()
        await self.release.wait()
        return Verdict(status="clean")

    async def aclose(self) -> None:
        pass


class Broken:
    name = "broken"

    async def scan(self, message: Message) -> Verdict:
        raise RuntimeError("scanner bug")

    async def aclose(self) -> None:
        pass


def engine(*scanners: object, policies: dict[str, Pipeline] | None = None) -> Engine:
    return Engine(Pipeline([[Step(s, timeout=60.0) for s in scanners]]), policies)  # type: ignore[arg-type]


class RaisingEngine:
    """An engine whose scan itself raises (not a scanner error the pipeline catches)."""

    async def scan(self, message: Message) -> object:
        raise RuntimeError("engine exploded")

    def policy_for(self, recipient: str) -> str:
        return "default"

    async def aclose(self) -> None:
        pass


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
