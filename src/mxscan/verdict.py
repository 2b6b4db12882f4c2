"""What a scanner decides, and what the pipeline decides from all of them."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal, assert_never

import attrs

from .body import Body
from .edits import HeaderEdit
from .header import fold_long_lines

if TYPE_CHECKING:
    from .message import Message

__all__ = ["ENHANCED_STATUS", "Action", "Result", "Route", "SmtpReply", "Verdict"]


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


ENHANCED_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
"""An RFC 3463 enhanced status code, ``class.subject.detail`` (``5.7.1``).

The one pattern every check of a status uses (SmtpReply, the milter's reply
encoder, the pipe adapter's DSN line, header rules' REJECT text), so they
cannot disagree on what Postfix will take. Use ``fullmatch``: ``match`` would
take ``5.7.1x``; ``ENHANCED_STATUS.pattern`` composes into a
larger expression. Whether the class fits the reply code is the caller's
check (``5.x.x`` only with a 5xx)."""


@attrs.frozen
class SmtpReply:
    """An SMTP reply for REJECT or TEMPFAIL: only 4xx and 5xx make sense there."""

    code: int
    status: str
    text: str

    def __attrs_post_init__(self) -> None:
        if not 400 <= self.code <= 599:
            raise ValueError(f"an SMTP reply code must be 4xx or 5xx, got {self.code}")
        if not ENHANCED_STATUS.fullmatch(self.status) or self.status[0] != str(self.code)[0]:
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


#: A state's word (a skip reason, an error kind, a limit): it goes into the log
#: line bare, inside ``skipped(...)``, and into a metrics label, so it is one
#: short run of letters, digits, ``_``, ``.`` and ``-``.
_STATE_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,47}")
#: The tokens the state fields write; a ``status`` that starts with one but
#: has no field set would be a state that metrics and adapters cannot see.
_STATE_TOKENS = ("skipped(", "error(", "unchecked(")


def _check_word(field: str, word: str) -> None:
    if not isinstance(word, str) or not _STATE_WORD.fullmatch(word):
        raise ValueError(
            f"Verdict {field} must be a short token (letters, digits, _ . -; "
            f"at most 48), got {word!r}"
        )


@attrs.frozen
class Verdict:
    """One scanner's decision. ``status`` is the short token in the log line
    (``clean``, ``infected(NAME)``); the pipeline fills ``scanner`` with the
    configured instance name.

    A scan that did not happen, or not all of it, says so in a field, not in
    text: ``skip`` (built by [`Verdict.skipped`][mxscan.Verdict.skipped]),
    ``error`` or ``unchecked``. At most one is set, each word is a short token
    (a bad one raises ``ValueError`` here), and ``status`` is derived from it
    (``skipped(oversize)``, ``error(timeout)``, ``unchecked(MaxFiles)``), so
    the log line, the metrics and the adapters read one fact. A ``status``
    given with a field must start with that token; one that looks like a state
    without its field is refused."""

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
    #: The scan was not done, and why, as one short word: ``oversize``,
    #: ``authenticated``, ``network`` or a plugin's own. Logged ``skipped(WORD)``
    #: and counted in ``mxscan_scanner_skipped_total{reason=WORD}``.
    skip: str | None = None
    #: The scan could not be done, and the kind of failure: the pipeline's
    #: ``timeout``, ``failed``, ``crashed``, ``garbage``, the quarantine's
    #: ``store`` (its final verdict). Logged ``error(KIND)``; a scanner's is
    #: counted in ``mxscan_scanner_errors_total``.
    error: str | None = None
    #: The limits that stopped the scan part-way (the core's ``max_parts``,
    #: clamd's ``MaxRecursion``): logged ``unchecked(A,B)``, each counted in
    #: ``mxscan_unchecked_total{limit=...}``.
    unchecked: tuple[str, ...] = attrs.field(default=(), converter=_strs)

    def __attrs_post_init__(self) -> None:
        if self.skip is None and self.error is None and not self.unchecked:
            if self.status.startswith(_STATE_TOKENS):
                raise ValueError(
                    f"Verdict status {self.status!r} names a state its fields do not "
                    "hold: use Verdict.skipped(REASON), error=KIND or unchecked=(LIMIT,)"
                )
            return
        token = self._state_token()
        if not self.status:
            object.__setattr__(self, "status", token)  # frozen: set once, here
        elif not self.status.startswith(token):
            raise ValueError(f"Verdict status {self.status!r} does not start with {token!r}")

    def _state_token(self) -> str:
        """``skipped(WORD)``, ``error(KIND)`` or ``unchecked(A,B)``, checked."""
        states = [
            (name, value)
            for name, value in (("skip", self.skip), ("error", self.error))
            if value is not None
        ]
        if self.unchecked:
            states.append(("unchecked", ",".join(self.unchecked)))
            for limit in self.unchecked:
                _check_word("unchecked", limit)
        if len(states) > 1:
            names = " and ".join(name for name, _ in states)
            raise ValueError(f"a Verdict is in one state at most, not {names}")
        name, value = states[0]
        if name != "unchecked":
            _check_word(name, value)
        return f"{'skipped' if name == 'skip' else name}({value})"

    @classmethod
    def skipped(
        cls,
        skip: str,
        /,
        *,
        reason: str = "",
        action: Action = Action.ACCEPT,
        scanner: str = "",
        edits: Iterable[HeaderEdit] = (),
        reply: SmtpReply | None = None,
    ) -> Verdict:
        """A scan not done: ``skip`` is the one-word why (``oversize``), for
        the log token and the metrics label; ``reason`` the sentence a reader
        wants. ``action`` is what the scanner's policy makes of it (a plugin's
        ``on_oversize``); by default the message goes on unscanned."""
        return cls(
            action=action, scanner=scanner, reason=reason, edits=edits, reply=reply, skip=skip
        )

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
            skip=self.skip,
            error=self.error,
            unchecked=self.unchecked,
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
        action = self.action
        match action:  # mypy names this when Action gains a member
            case Action.REJECT:
                return DEFAULT_REJECT
            case Action.TEMPFAIL:
                return DEFAULT_TEMPFAIL
            case Action.ACCEPT | Action.QUARANTINE | Action.DISCARD:
                return None
            case _:
                assert_never(action)


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
