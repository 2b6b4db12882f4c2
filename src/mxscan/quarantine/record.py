"""What the quarantine keeps next to the message bytes: envelope and verdicts.

A record is plain data (JSON-able) so that every store keeps the same thing and
``mxscan quarantine list --json`` prints it as it is stored.
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from typing import Any, Protocol

import attrs

from ..message import Message
from ..verdict import Result, Verdict

__all__ = ["COLUMNS", "Record", "new_id", "verdict_json"]

#: The record's columns in every store, in this order.
COLUMNS = (
    "id, stored_at, host, queue_id, sender, recipients, client_address, client_name, helo, "
    "size, action, score, scanner, reason, verdicts, released_at, released_to, releases"
)


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


class _Row(Protocol):
    def __getitem__(self, key: str) -> Any: ...


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

    @classmethod
    def from_row(cls, row: _Row) -> Record:
        """A stored row (sqlite3.Row, asyncpg.Record) of ``COLUMNS``; the lists
        are kept as JSON text so every store holds the same thing."""
        return cls(
            id=row["id"], stored_at=row["stored_at"], host=row["host"], queue_id=row["queue_id"],
            sender=row["sender"], recipients=tuple(json.loads(row["recipients"])),
            client_address=row["client_address"], client_name=row["client_name"],
            helo=row["helo"], size=row["size"], action=row["action"], score=row["score"],
            scanner=row["scanner"], reason=row["reason"],
            verdicts=tuple(json.loads(row["verdicts"])), released_at=row["released_at"],
            released_to=row["released_to"], releases=row["releases"],
        )  # fmt: skip

    @property
    def findings(self) -> list[str]:
        return [f for v in self.verdicts for f in v.get("findings", ())]

    def as_json(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["recipients"] = list(self.recipients)
        data["verdicts"] = list(self.verdicts)
        return data
