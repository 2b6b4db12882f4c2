"""The ``spamassassin`` scanner: spamd's score, mxscan's levels and headers."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from mxscan import (
    Action,
    Address,
    HeaderEdit,
    Message,
    ScannerError,
    SmtpReply,
    Verdict,
    received_header,
)

from .client import Content, ask_spamd, tell_spamd
from .edits import forged_removals, sent_fields, spam_header_edits, subject_edits
from .levels import Levels, decide
from .options import DEFAULT_REJECT_MESSAGE, SpamAssassinOptions
from .oversize import OnOversize, truncated, truncated_status
from .ping import ping_spamd

__all__ = ["SpamAssassin"]

log = logging.getLogger("mxscan.spamassassin")


def _trace(message: Message) -> bytes:
    """This hop's Received: line, which a milter's MTA keeps from us: for
    spamd's eyes only, never an edit (the delivered bytes stay as they are)."""
    trace = received_header(message.envelope, eol=message.eol)
    return trace.raw if trace is not None else b""


def _content(to_scan: Message, message: Message) -> Content:
    """What spamd gets: an mbox ``From `` line (which must stay first), this
    hop's Received: line, the rest of the header, then the body, which the
    client streams from its spool (never joined into one bytes object)."""
    head = b"".join(h.raw for h in to_scan.headers) + to_scan.separator
    return Content(to_scan.mbox_from + _trace(message) + head, to_scan.body)


def _with_trace(data: bytes, to_scan: Message, message: Message) -> bytes:
    trace = _trace(message)
    if not trace:
        return data
    mbox = len(to_scan.mbox_from)
    return data[:mbox] + trace + data[mbox:]


class SpamAssassin:
    """Asks spamd (``HEADERS``) for a score and turns it into a verdict.

    Options are keyword arguments, as the core passes ``[scanner.NAME]``,
    declared in ``SpamAssassinOptions`` (docs/spamassassin.md explains each).
    """

    #: The core's ``max_concurrent`` default: spamd's own ``--max-children``
    #: default, so that no scan waits in spamd's backlog while its timeout runs.
    max_concurrent = 5

    #: The declaration of every option, read by the core (``mxscan.options``).
    options_class = SpamAssassinOptions

    def __init__(self, name: str = "spamassassin", **values: object) -> None:
        self.name = name
        self.options = opts = SpamAssassinOptions.parse(values)
        self.addresses = opts.address
        self.timeout = opts.timeout
        self.user = opts.user
        self.compress = opts.compress
        self.levels = Levels(
            tag_score=opts.tag_score,
            spam_score=opts.spam_score,
            discard_score=opts.discard_score,
            reject_score=opts.reject_score,
        )
        self.subject_tag = opts.subject_tag
        self.remove_existing = opts.remove_existing
        self.max_size = opts.max_size
        self.on_oversize = opts.on_oversize
        self.reject_message = opts.reject_message or DEFAULT_REJECT_MESSAGE

    def __repr__(self) -> str:
        where = ", ".join(str(a) for a in self.addresses)
        return f"SpamAssassin(name={self.name!r}, address=[{where}], levels={self.levels})"

    def probes(self) -> list[tuple[str, Callable[[], Awaitable[str]]]]:
        """mxscan's optional per-address probe (``config check --connect``): the
        health probe's PING, to each spamd on its own, so each address is judged."""
        return [(str(a), functools.partial(self._ping_one, a)) for a in self.addresses]

    async def _ping_one(self, address: Address) -> str:
        await ping_spamd([address], timeout=self._budget())
        return "PONG"

    def _budget(self) -> float:
        """Our deadline, a little inside the pipeline's step timeout (the same
        ``timeout`` option): ours should fire first, because its error names
        the spamd address, and the pipeline's can only say "no verdict"."""
        return self.timeout - min(0.5, self.timeout * 0.05)

    async def aclose(self) -> None:
        """Nothing to release: each request opens (and closes) its own connection."""

    async def ping(self) -> None:
        """mxscan's optional health-probe hook: spamd's PING, the addresses in order."""
        await ping_spamd(self.addresses, timeout=self._budget())

    async def learn(self, message: Message, spam: bool) -> None:
        """mxscan's optional learning hook: spamd's TELL into its Bayes database
        (``mxscan learn``, ``mxscan quarantine release --as-ham``). spamd must run
        with ``--allow-tell``; the message is sent as it is, up to ``max_size``."""
        if message.size > self.max_size:
            raise ScannerError(
                f"spamassassin: {message.size} bytes is over max_size {self.max_size}: not learned"
            )
        learned = await tell_spamd(
            self.addresses, message.as_bytes(), spam=spam, timeout=self._budget(),
            user=self.user,
        )  # fmt: skip
        log.info(
            "spamassassin: spamd %s the message as %s",
            "learned" if learned else "already knew",
            "spam" if spam else "ham",
        )

    async def scan(self, message: Message) -> Verdict:
        removals: list[HeaderEdit] = (
            forged_removals(message.headers) if self.remove_existing else []
        )
        to_scan = message.apply(removals) if removals else message
        size = to_scan.size
        note = ""
        data: bytes | Content
        if size > self.max_size:
            if self.on_oversize is not OnOversize.TRUNCATE:
                return self._oversize(message, size, removals)
            head = truncated(to_scan, self.max_size)
            note = (
                f" (truncated: header and the first {len(head) - len(to_scan.head_bytes())}"
                f" body bytes scanned, {len(head)} of {size}: over max_size {self.max_size})"
            )
            data = _with_trace(head, to_scan, message)
        else:
            data = _content(to_scan, message)
        _, answer = await ask_spamd(
            self.addresses, data, timeout=self._budget(), user=self.user, compress=self.compress
        )
        decision = decide(answer, self.levels)
        subject = subject_edits(message.get("Subject"), self.subject_tag, decision)
        edits = [
            *removals,
            *spam_header_edits(
                answer, decision, sent_fields(to_scan.headers), subject_rewritten=bool(subject)
            ),
            *subject,
        ]
        reply = None
        if decision.action is Action.REJECT:
            reply = SmtpReply(550, "5.7.1", self.reject_message)
        return Verdict(
            action=decision.action,
            scanner=self.name,
            reason=decision.reason + note,
            status=truncated_status(decision.status) if note else decision.status,
            score=answer.score,
            threshold=decision.threshold,
            findings=answer.tests,
            edits=tuple(edits),
            reply=reply,
        )

    def _oversize(self, message: Message, size: int, removals: list[HeaderEdit]) -> Verdict:
        """Never silently pass an unchecked message: say so in verdict and log."""
        reason = f"message is {size} bytes, over max_size {self.max_size}: not spam-checked"
        queue_id = message.envelope.queue_id or "NOQUEUE"
        log.warning(
            "%s: %s: %s (on_oversize=%s)", queue_id, self.name, reason, self.on_oversize.value
        )
        action = Action.ACCEPT
        reply = None
        if self.on_oversize is OnOversize.TEMPFAIL:
            action = Action.TEMPFAIL
            reply = SmtpReply(451, "4.3.4", "Message too big for spam checking, try again later")
        elif self.on_oversize is OnOversize.REJECT:
            action = Action.REJECT
            reply = SmtpReply(552, "5.3.4", "Message too big for spam checking")
        return Verdict.skipped(
            "oversize",
            action=action,
            scanner=self.name,
            reason=reason,
            edits=tuple(removals),
            reply=reply,
        )
