"""What the quarantine keeps next to the message bytes: envelope and verdicts.

A record is plain data (JSON-able) so that every store keeps the same thing and
``mxscan quarantine list --json`` prints it as it is stored.
"""

from __future__ import annotations

import secrets
import socket
import time
from typing import Any

import attrs

from ..message import Message
from ..verdict import Result, Verdict

__all__ = ["Record", "new_id", "verdict_json"]


def new_id() -> str:
    """A sortable, collision-free id across MX hosts: time first, then randomness
    (no sequence, which two hosts sharing one store would have to agree on)."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(5)}"


def verdict_json(verdict: Verdict) -> dict[str, Any]:
    return {
        "scanner": verdict.scanner,
        "action": str(verdict.action),
        "status": verdict.token,
        "score": verdict.score,
        "findings": list(verdict.findings),
        "reason": verdict.reason,
        "shadow": verdict.shadow,
    }


@attrs.frozen
class Record:
    """One quarantined message's facts (its bytes live in the store's chunks)."""

    id: str
    stored_at: float
    host: str
    queue_id: str | None
    sender: str
    recipients: tuple[str, ...]
    client_address: str | None
    client_name: str | None
    helo: str | None
    size: int
    action: str
    score: float | None
    scanner: str
    reason: str
    verdicts: tuple[dict[str, Any], ...]
    released_at: float | None = None
    released_to: str | None = None
    releases: int = 0

    @classmethod
    def of(cls, result: Result, message: Message, action: str) -> Record:
        """``action`` is the final verdict's (a stored quarantine was answered as a discard)."""
        env = message.envelope
        scores = [v.score for v in result.verdicts if v.score is not None]
        return cls(
            id=new_id(),
            stored_at=time.time(),
            # The MX that took it (Postfix's myhostname), as several share one store.
            host=env.receiver or socket.gethostname(),
            queue_id=env.queue_id,
            sender=env.sender,
            recipients=tuple(result.recipients or env.recipients),
            client_address=env.client_address,
            client_name=env.client_name,
            helo=env.helo,
            size=message.size,
            action=action,
            score=max(scores) if scores else None,
            scanner=result.verdict.scanner,
            reason=result.verdict.reason,
            verdicts=tuple(verdict_json(v) for v in result.verdicts),
        )

    @property
    def findings(self) -> list[str]:
        return [f for v in self.verdicts for f in v.get("findings", ())]

    def as_json(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["recipients"] = list(self.recipients)
        data["verdicts"] = list(self.verdicts)
        return data
