"""What a scanner decides, and what the pipeline decides from all of them."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

import attrs

from .body import Body
from .edits import HeaderEdit
from .header import fold_long_lines

if TYPE_CHECKING:
    from .message import Message

__all__ = ["Action", "Result", "Route", "SmtpReply", "Verdict"]


class Action(enum.IntEnum):
    """Ordered by severity, so combining verdicts is ``max()``."""

    ACCEPT = 0
    TEMPFAIL = 1
    QUARANTINE = 2
    DISCARD = 3
    REJECT = 4

    @classmethod
    def parse(cls, text: str) -> Action:
        try:
            return cls[text.strip().upper()]
        except (KeyError, AttributeError):
            names = ", ".join(a.name.lower() for a in cls)
            raise ValueError(f"expected one of {names}, got {text!r}") from None

    def __str__(self) -> str:
        return self.name.lower()


_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")


@attrs.frozen
class SmtpReply:
    """An SMTP reply for REJECT or TEMPFAIL: only 4xx and 5xx make sense there."""

    code: int
    status: str
    text: str

    def __attrs_post_init__(self) -> None:
        if not 400 <= self.code <= 599:
            raise ValueError(f"an SMTP reply code must be 4xx or 5xx, got {self.code}")
        if not _STATUS.fullmatch(self.status) or self.status[0] != str(self.code)[0]:
            raise ValueError(f"enhanced status {self.status!r} does not fit reply code {self.code}")
        if "\r" in self.text or "\n" in self.text:
            raise ValueError("an SMTP reply text cannot hold CR or LF")

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"


DEFAULT_REJECT = SmtpReply(550, "5.7.1", "Message rejected")
DEFAULT_TEMPFAIL = SmtpReply(451, "4.7.1", "Message cannot be scanned now, try again later")


@attrs.frozen
class Route:
    """A delivery change a scanner asks for (header_checks REDIRECT, BCC,
    FILTER). Only adapters that control delivery can act on it."""

    kind: Literal["redirect", "bcc", "filter"]
    target: str


def _strs(value: Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _fitted(edit: HeaderEdit) -> HeaderEdit:
    """The edit with a value whose lines all fit in 998 bytes (RFC 5322)."""
    if edit.value is None:
        return edit
    value = fold_long_lines(edit.name, edit.value)
    return edit if value is edit.value else attrs.evolve(edit, value=value)


def _edits(value: Iterable[HeaderEdit]) -> tuple[HeaderEdit, ...]:
    """Every header mxscan writes fits RFC 5322's line limit, whatever the
    scanner built: folded here, once, so that the milter (whose MTA would
    break the line mid-word) and the written message agree."""
    edits = tuple(value)
    fitted = tuple(_fitted(edit) for edit in edits)
    if all(a is b for a, b in zip(fitted, edits, strict=True)):
        return edits  # a tuple given is kept as it is (the pipeline re-stamps verdicts)
    return fitted


def _routes(value: Iterable[Route]) -> tuple[Route, ...]:
    return tuple(value)


@attrs.frozen
class Verdict:
    """One scanner's decision. ``status`` is the short token in the log line
    (``clean``, ``infected(NAME)``, ``skipped(oversize)``); the pipeline fills
    ``scanner`` with the configured instance name."""

    action: Action = Action.ACCEPT
    scanner: str = ""
    reason: str = ""
    status: str = ""
    score: float | None = None
    #: The score at which ``score`` counts as spam (SpamAssassin's required_score),
    #: for adapters that report both, such as the rspamd-protocol HTTP API.
    threshold: float | None = None
    findings: tuple[str, ...] = attrs.field(default=(), converter=_strs)
    edits: tuple[HeaderEdit, ...] = attrs.field(default=(), converter=_edits)
    reply: SmtpReply | None = None
    routes: tuple[Route, ...] = attrs.field(default=(), converter=_routes)
    #: A replacement body (e.g. header rules that edit MIME-part headers). The
    #: pipeline applies it after the stage's header edits. A scanner that
    #: replaces the body should be alone in its stage: the body it builds is
    #: derived from the body it saw, so two replacements in one stage cannot
    #: both hold; if several do, the last in stage order wins. Scanners that
    #: may set it say so with a true ``changes_body`` attribute, so adapters
    #: can ask the MTA for the right to replace the body.
    body: Body | None = None
    #: Set by the pipeline: the scanner runs in shadow mode, so this verdict is
    #: logged and counted but neither its action nor its edits are applied.
    shadow: bool = False
    #: Set by the pipeline: seconds the scanner took.
    elapsed: float | None = None
    #: Set by the pipeline: seconds of ``elapsed`` spent waiting for a free
    #: slot (``max_concurrent``); None when the scanner has no bound.
    waited: float | None = None

    def _recorded(
        self, scanner: str, shadow: bool, elapsed: float, waited: float | None = None
    ) -> Verdict:
        """This verdict as the pipeline records it. Every field written out:
        attrs.evolve() looks them all up by name, which cost twice as much, on
        every step of every message. test_verdict_fields makes a new field fail
        until it is added here."""
        if type(self) is not Verdict:  # a subclass may have fields of its own
            return attrs.evolve(
                self, scanner=scanner, shadow=shadow, elapsed=elapsed, waited=waited
            )
        return Verdict(
            action=self.action,
            scanner=scanner,
            reason=self.reason,
            status=self.status,
            score=self.score,
            threshold=self.threshold,
            findings=self.findings,
            edits=self.edits,
            reply=self.reply,
            routes=self.routes,
            body=self.body,
            shadow=shadow,
            elapsed=elapsed,
            waited=waited,
        )

    @property
    def token(self) -> str:
        """``status`` or, when a scanner gave none, the action's name; shadow
        verdicts are marked so a log reader never mistakes them for applied."""
        token = self.status or ("clean" if self.action is Action.ACCEPT else str(self.action))
        return f"shadow:{token}" if self.shadow else token

    @property
    def smtp_reply(self) -> SmtpReply | None:
        """The reply to give the client: the scanner's own or a default."""
        if self.reply is not None:
            return self.reply
        if self.action is Action.REJECT:
            return DEFAULT_REJECT
        if self.action is Action.TEMPFAIL:
            return DEFAULT_TEMPFAIL
        return None


@attrs.frozen(eq=False)
class Result:
    """The pipeline's outcome for one message.

    ``edits`` are every applied edit in order (what a milter replays to
    Postfix); ``message`` has them applied. ``body_replaced`` says a scanner
    replaced the body: ``message.body`` is then not the body that came in, and
    an adapter must deliver it (or refuse the message) - never the original.
    When recipients fall under different policies, ``splits`` holds one
    result per group and the top-level fields describe the most severe of them.
    """

    verdict: Verdict
    verdicts: tuple[Verdict, ...]
    message: Message
    edits: tuple[HeaderEdit, ...] = ()
    policy: str = "default"
    recipients: tuple[str, ...] = ()
    splits: tuple[Result, ...] = ()
    body_replaced: bool = False

    @property
    def action(self) -> Action:
        return self.verdict.action

    @property
    def groups(self) -> tuple[Result, ...]:
        """One result per recipient policy group (just ``self`` when not split)."""
        return self.splits or (self,)
