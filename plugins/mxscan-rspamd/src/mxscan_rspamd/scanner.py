"""The ``rspamd`` scanner: rspamd's action, mapped by the admin's table."""

from __future__ import annotations

import logging

from mxscan import Action, HeaderEdit, Message, ScannerError, SmtpReply, Verdict

from . import options as opts
from .answer import RspamdAnswer
from .client import RspamdClient
from .edits import forged_removals, milter_edits, unfold
from .options import OnOversize
from .request import envelope_headers, settings_header

__all__ = ["Rspamd"]

log = logging.getLogger("mxscan.rspamd")

OVERSIZE_TEMPFAIL = SmtpReply(452, "4.3.4", "Message too big for spam checking, try again later")
OVERSIZE_REJECT = SmtpReply(552, "5.3.4", "Message too big for spam checking")
DEFAULT_TEMPFAIL_TEXT = "Try again later"


def _reply_text(text: str | None, default: str) -> str:
    """rspamd's own SMTP message when it is one printable line, else ours."""
    if text and text.isprintable() and text.strip():
        return text.strip()
    return default


class Rspamd:
    """Asks rspamd (``/checkv2`` on its normal worker) and maps its action.

    Options are keyword arguments, as the core passes ``[scanner.NAME]``; see
    docs/rspamd.md. A per-domain ``[policy."example.net"] rspamd.reject_score``
    builds another instance with that threshold, sent to rspamd per request.
    """

    #: The declaration of every option, read by the core (``mxscan.options``).
    options_class = opts.RspamdOptions

    def __init__(self, name: str = "rspamd", **values: object) -> None:
        self.name = name
        self.options = opts.RspamdOptions.parse(values)
        timeout_s = self.options.timeout
        # Just inside the pipeline's step deadline (the same ``timeout``), so
        # the error in the log is ours, naming the rspamd, not "no verdict".
        self.client = RspamdClient(
            self.options.address,
            timeout=timeout_s - min(0.5, timeout_s * 0.05),
            connect_timeout=self.options.connect_deadline,
            controller=self.options.controller,
            password=self.options.password,
        )
        self._extra: list[tuple[str, str]] = []
        settings = settings_header(self.options.thresholds)
        if settings is not None:
            self._extra.append(("Settings", settings))
        if self.options.settings_id is not None:
            self._extra.append(("Settings-ID", self.options.settings_id))

    def __repr__(self) -> str:
        where = ", ".join(str(a) for a in self.options.address)
        return f"Rspamd(name={self.name!r}, address=[{where}])"

    async def aclose(self) -> None:
        await self.client.aclose()

    async def scan(self, message: Message) -> Verdict:
        removals = forged_removals(message.headers) if self.options.remove_existing else []
        to_scan = message.apply(removals) if removals else message
        size = to_scan.size
        if size > self.options.max_size:
            return self._oversize(message, size, removals)
        headers = [*envelope_headers(message.envelope), *self._extra]
        _, answer = await self.client.check(to_scan.chunks, size, headers)
        return self._verdict(message, to_scan, answer, removals)

    async def learn(self, message: Message, spam: bool) -> str:
        """Teach rspamd's statistics (``/learnspam`` / ``/learnham`` on the
        controller, with ``password``). Optional: no core hook calls it yet."""
        return await self.client.learn(message.chunks, message.size, spam)

    def _verdict(
        self, message: Message, scanned: Message, answer: RspamdAnswer, removals: list[HeaderEdit]
    ) -> Verdict:
        try:
            action = self.options.actions[answer.action]
        except KeyError:
            mapped = ", ".join(sorted(self.options.actions))
            raise ScannerError(
                f"rspamd answered action {answer.action!r}, which [scanner.{self.name}] actions "
                f"does not map (mapped: {mapped})"
            ) from None
        edits = [*removals, *milter_edits(answer, scanned.headers, adds=self.options.add_headers)]
        if self.options.rewrite_subject and answer.subject is not None:
            edits.append(HeaderEdit.change("Subject", 1, unfold("Subject", answer.subject)))
        reply = None
        if action is Action.REJECT:
            text = self.options.reject_message or _reply_text(
                answer.smtp_message, opts.DEFAULT_REJECT_MESSAGE
            )
            reply = SmtpReply(550, "5.7.1", text)
        elif action is Action.TEMPFAIL:
            reply = SmtpReply(451, "4.7.1", _reply_text(answer.smtp_message, DEFAULT_TEMPFAIL_TEXT))
        score = f"{answer.score:.2f}/{answer.required_score:.2f}"
        reason = f"rspamd action {answer.action!r}, score {score}"
        if action is not Action.ACCEPT:
            reason += f": {action}"
        return Verdict(
            action=action,
            scanner=self.name,
            reason=reason,
            status=f"{answer.action.replace(' ', '-')}({score})",
            score=answer.score,
            findings=answer.symbols,
            edits=tuple(edits),
            reply=reply,
        )

    def _oversize(self, message: Message, size: int, removals: list[HeaderEdit]) -> Verdict:
        """Never silently pass an unchecked message: say so in verdict and log."""
        on_oversize = self.options.on_oversize
        reason = (
            f"message is {size} bytes, over max_size {self.options.max_size}: not spam-checked; "
            f"on_oversize = {on_oversize.value}"
        )
        log.warning("%s: %s: %s", message.envelope.queue_id or "NOQUEUE", self.name, reason)
        action, reply = {
            OnOversize.ACCEPT: (Action.ACCEPT, None),
            OnOversize.TEMPFAIL: (Action.TEMPFAIL, OVERSIZE_TEMPFAIL),
            OnOversize.REJECT: (Action.REJECT, OVERSIZE_REJECT),
        }[on_oversize]
        return Verdict.skipped(
            "oversize",
            action=action,
            scanner=self.name,
            reason=reason,
            edits=tuple(removals),
            reply=reply,
        )
