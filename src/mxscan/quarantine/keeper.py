"""The engine step that keeps copies: after the scan, before any adapter answers.

Every adapter (milter, pipe, a Python caller) gets its result from
``PolicyRouter.scan``, so a copy is committed before the MTA hears DISCARD or REJECT,
by the same code whichever adapter runs. A QUARANTINE verdict becomes DISCARD
once its copy is stored; a copy that cannot be stored makes the answer TEMPFAIL
(``on_store_error = "tempfail"``), so the client retries and nothing is lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import attrs

from ..message import Message
from ..verdict import Action, Result, SmtpReply, Verdict
from .record import Record
from .settings import QuarantineSettings, keepable
from .store import CHUNK_SIZE, Store, StoreError

__all__ = ["STORE_TEMPFAIL", "Keeper"]

log = logging.getLogger("mxscan.quarantine")

STORE_TEMPFAIL = SmtpReply(451, "4.3.0", "Quarantine unavailable, try again later")


@attrs.define
class KeeperEvents:
    """Hooks for metrics: ``stored(action, seconds)``, ``failed(seconds)``."""

    stored: Callable[[str, float], None] | None = None
    failed: Callable[[float], None] | None = None


class Keeper:
    def __init__(self, store: Store, settings: QuarantineSettings) -> None:
        self.store = store
        self.settings = settings
        self.events = KeeperEvents()

    async def keep(self, result: Result, message: Message) -> Result:
        """``result`` with each kept group's verdict as the MTA must hear it."""
        if not result.splits:
            verdict = await self._keep_group(result, message)
            return result if verdict is result.verdict else attrs.evolve(result, verdict=verdict)
        splits = []
        for group in result.splits:
            envelope = attrs.evolve(message.envelope, recipients=group.recipients)
            verdict = await self._keep_group(group, message.with_envelope(envelope))
            splits.append(
                group if verdict is group.verdict else attrs.evolve(group, verdict=verdict)
            )
        worst = max(splits, key=lambda r: r.verdict.action)
        return attrs.evolve(result, verdict=worst.verdict, splits=tuple(splits))

    async def _keep_group(self, result: Result, message: Message) -> Verdict:
        verdict = result.verdict
        settings = self.settings
        if not keepable(verdict.action):
            return verdict
        if not settings.keeps(verdict.action, verdict.scanner):
            return verdict
        queue_id = message.envelope.queue_id or "NOQUEUE"
        storing = verdict.action is Action.QUARANTINE and settings.quarantine_action == "store"
        if settings.max_size is not None and message.size > settings.max_size:
            # Too big to keep: a quarantine goes to Postfix's hold queue instead
            # (never dropped), the others proceed without a copy.
            log.warning(
                "%s: %d bytes is over the quarantine's max_size %d: not stored%s",
                queue_id, message.size, settings.max_size,
                " (held by the MTA instead)" if storing else "",
            )  # fmt: skip
            return verdict
        record = Record.of(result, message, str(verdict.action))
        start = time.monotonic()
        try:
            await self.store.put(record, message.chunks(CHUNK_SIZE))
        except StoreError as exc:
            seconds = time.monotonic() - start
            if self.events.failed:
                self.events.failed(seconds)
            if settings.on_store_error == "tempfail":
                log.error("%s: cannot store in the quarantine: %s: tempfailing", queue_id, exc)
                return Verdict(
                    action=Action.TEMPFAIL,
                    scanner="quarantine",
                    reason=f"cannot store a copy ({verdict.action} by {verdict.scanner}): {exc}",
                    error="store",
                    reply=STORE_TEMPFAIL,
                )
            log.error("%s: cannot store in the quarantine: %s: proceeding", queue_id, exc)
            return verdict if not storing else attrs.evolve(verdict, action=Action.DISCARD)
        seconds = time.monotonic() - start
        if self.events.stored:
            self.events.stored(str(verdict.action), seconds)
        log.info("%s: quarantined as %s (%s by %s)", queue_id, record.id, verdict.action,
                 verdict.scanner)  # fmt: skip
        status = f"{verdict.token}+quarantined({record.id})"
        if storing:
            return attrs.evolve(verdict, action=Action.DISCARD, status=status)
        return attrs.evolve(verdict, status=status)

    async def aclose(self) -> None:
        await self.store.aclose()
