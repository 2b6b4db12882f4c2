"""Header edits: strip what the sender forged, then apply what rspamd asked for.

Edits apply in sequence and ``delete(name, n)`` counts per name, so deletions
of one name go from the last occurrence back to the first (each earlier
occurrence number stays valid), as in the spamassassin plugin.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mxscan import Header, HeaderEdit, ScannerError

from .answer import HeaderAdd, RspamdAnswer

__all__ = ["forged_removals", "is_spam_header", "milter_edits", "unfold"]

_FOLD = re.compile(r"\r?\n([ \t])")


def is_spam_header(name: str) -> bool:
    """The names a scanner's verdict travels in: ``X-Spam-*``, rspamd's
    ``X-Spam`` / ``X-Spamd-*`` / ``X-Rspamd-*``. A sender who writes them could
    get their mail discarded by a downstream rule or pass as checked."""
    lowered = name.lower()
    return lowered == "x-spam" or lowered.startswith(("x-spam-", "x-spamd-", "x-rspamd-"))


def forged_removals(headers: Sequence[Header]) -> list[HeaderEdit]:
    """Delete every spam-verdict header the message came with, last first."""
    seen: dict[str, int] = {}
    targets: list[tuple[str, int]] = []
    for header in headers:
        lowered = header.name.lower()
        seen[lowered] = seen.get(lowered, 0) + 1
        if is_spam_header(header.name):
            targets.append((header.name, seen[lowered]))
    return [HeaderEdit.delete(name, occurrence) for name, occurrence in reversed(targets)]


def unfold(name: str, value: str) -> str:
    """rspamd's value on one line: each fold (CRLF or LF, then a space or tab)
    becomes that whitespace, as RFC 5322 unfolding does.

    Any other CR or LF would end the header and start one the daemon (or whoever
    controls its Lua rules) chose: refused as a ScannerError naming the header.
    """
    flat = _FOLD.sub(r"\1", value)
    if "\r" in flat or "\n" in flat or "\0" in flat:
        raise ScannerError(
            f"rspamd asked to add {name} with a line break that is not a fold: {value[:60]!r}"
        )
    return flat


def _removal_edits(headers: Sequence[Header], name: str, which: int) -> list[HeaderEdit]:
    count = sum(1 for header in headers if header.name.lower() == name.lower())
    if which == 0:
        return [HeaderEdit.delete(name, n) for n in range(count, 0, -1)]
    occurrence = which if which > 0 else count + which + 1
    if 1 <= occurrence <= count:
        return [HeaderEdit.delete(name, occurrence)]
    return []


def milter_edits(
    answer: RspamdAnswer, headers: Sequence[Header], *, adds: bool = True
) -> list[HeaderEdit]:
    """rspamd's ``milter`` block as edits, removals first (as rspamd's own milter
    applies them), against ``headers``: the message as rspamd saw it. With
    ``adds`` false only the removals (the plugin's ``add_headers = false``)."""
    edits: list[HeaderEdit] = []
    for name, which in answer.remove_headers:
        edits += _removal_edits(headers, name, which)
    if adds:
        edits += [_add(add) for add in answer.add_headers]
    return edits


def _add(add: HeaderAdd) -> HeaderEdit:
    value = unfold(add.name, add.value)
    try:
        if add.order is None:
            return HeaderEdit.add(add.name, value)
        return HeaderEdit.insert(add.order, add.name, value)
    except ValueError as error:  # InvalidHeader: a bad name
        raise ScannerError(f"rspamd asked for a header mxscan cannot add: {error}") from None
