"""The X-Virus-Scanned / X-Virus-Status headers, in clamav-milter's format.

Admins' header_checks and downstream filters already match clamav-milter's
``X-Virus-Status: Clean`` / ``Infected (NAME)``, so the same words are kept. Any
copy the sender wrote is deleted first: otherwise a forged ``Clean`` (or a forged
``Infected`` that gets someone's mail discarded) would survive next to ours.
"""

from __future__ import annotations

from mxscan import HeaderEdit, Message

__all__ = ["SCANNED", "STATUS", "infected_status", "remove_forged", "tag", "unchecked_status"]

SCANNED = "X-Virus-Scanned"
STATUS = "X-Virus-Status"


def remove_forged(message: Message) -> list[HeaderEdit]:
    """Deletes for every existing X-Virus-Scanned / X-Virus-Status header.

    Edits apply one after the other, so deleting occurrence 1 would renumber the
    rest; deleting from the last occurrence down to the first removes exactly the
    ones that are there, whether the edits are applied in sequence (mxscan,
    Postfix) or each against the original header.
    """
    edits: list[HeaderEdit] = []
    for name in (SCANNED, STATUS):
        count = len(message.get_all(name))
        edits.extend(HeaderEdit.delete(name, occurrence) for occurrence in range(count, 0, -1))
    return edits


def tag(message: Message, *, scanned_by: str, status: str) -> list[HeaderEdit]:
    """Replace the sender's X-Virus-* headers with ours, appended at the end as
    clamav-milter's ``AddHeader Replace`` does."""
    return [
        *remove_forged(message),
        HeaderEdit.add(SCANNED, scanned_by),
        HeaderEdit.add(STATUS, status),
    ]


def infected_status(signatures: tuple[str, ...] | list[str]) -> str:
    """clamav-milter names one virus; several (AllMatchScanning) are comma-joined."""
    return f"Infected ({', '.join(signatures)})"


def unchecked_status(limits: tuple[str, ...] | list[str]) -> str:
    """Not a clamav-milter word: neither ``Clean`` nor ``Infected`` is true of a
    message clamd stopped scanning at a limit."""
    return f"Unchecked ({', '.join(limits)})"
