"""Test-only scanners: the variants mxscan's own tests need beyond
``mxscan.testing`` (which is what plugin authors get, and what these are built on
where they can be): a keyword rule on the Subject, a body replacer, a slow scan,
a scanner with a bug, an engine that crashes, and ``FakeScanner``, a
``StaticScanner`` that can compute its verdict or sleep first. Real Scanner
protocol, no daemons."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from mxscan import ScannerError
from mxscan.body import Body, BodyBuilder
from mxscan.edits import HeaderEdit
from mxscan.message import Message
from mxscan.pipeline import Pipeline, Step
from mxscan.router import PolicyRouter
from mxscan.testing import FakeEngine, StaticScanner
from mxscan.verdict import Action, SmtpReply, Verdict


class FakeScanner(StaticScanner):
    """A ``StaticScanner`` named first, with the verdict's fields as keywords
    (``FakeScanner("av", action=Action.REJECT, reply=...)``), that can instead
    answer ``fn(message)`` or sleep ``delay`` seconds before it answers.
    ``seen`` is ``messages``."""

    def __init__(
        self,
        name: str = "fake",
        *,
        action: Action = Action.ACCEPT,
        edits: tuple[HeaderEdit, ...] = (),
        delay: float = 0.0,
        fn: Callable[[Message], Any] | None = None,
        error: BaseException | None = None,
        **verdict: Any,
    ) -> None:
        super().__init__(Verdict(action, edits=edits, **verdict), name=name, error=error)
        self.delay = delay
        self.fn = fn

    @property
    def seen(self) -> list[Message]:
        return self.messages

    async def scan(self, message: Message) -> Verdict:
        verdict = await super().scan(message)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fn is not None:
            return self.fn(message)  # type: ignore[no-any-return]
        return verdict


def raising(name: str, exc: BaseException) -> FakeScanner:
    return FakeScanner(name, error=exc)


def down(name: str = "down") -> FakeScanner:
    return raising(name, ScannerError("connect to unix:/nowhere failed: No such file"))


class AddHeader(StaticScanner):
    """Adds one header field to every message (status ``tagged``)."""

    def __init__(self, name: str = "tagger", header: str = "X-Scanned", value: str = "mxscan"):
        super().__init__(
            Verdict(status="tagged"), name=name, edits=(HeaderEdit.add(header, value),)
        )


class Broken(StaticScanner):
    """A scanner with a bug: every scan raises RuntimeError (not a ScannerError)."""

    def __init__(self) -> None:
        super().__init__(name="broken", error=RuntimeError("scanner bug"))


class Gate(StaticScanner):
    """Holds each scan until ``release`` is set: a scan is in flight for exactly
    as long as the test wants, however slow the machine (``entered`` says it
    began, ``cancelled`` that it was cancelled before the release)."""

    def __init__(self, name: str = "gate", *, status: str = "clean") -> None:
        self.release = asyncio.Event()
        super().__init__(Verdict(status=status), name=name, hold=self.release)


class Slow(StaticScanner):
    """Sleeps ``seconds`` in every scan (a daemon slower than the step's timeout);
    ``started`` is set once a scan began."""

    def __init__(self, seconds: float) -> None:
        super().__init__(Verdict(status="slow"), name="slow")
        self.seconds = seconds
        self.started = self.entered

    async def scan(self, message: Message) -> Verdict:
        verdict = await super().scan(message)
        await asyncio.sleep(self.seconds)
        return verdict


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


def engine(*scanners: object, policies: dict[str, Pipeline] | None = None) -> PolicyRouter:
    """One stage of ``scanners`` (60 s timeout each), and the ``policies`` given."""
    return PolicyRouter(Pipeline([[Step(s, timeout=60.0) for s in scanners]]), policies)  # type: ignore[arg-type]


def RaisingEngine() -> FakeEngine:
    """An engine whose scan itself raises (not a scanner error the pipeline catches)."""
    return FakeEngine(crash=RuntimeError("engine exploded"))
