"""The header edits the plugin asks for: strip what the sender forged, add SA's.

Edits apply sequentially, each against the result of the previous one (as milter
replies do), and ``delete(name, n)`` counts occurrences per name. Deleting from
the last header backwards keeps every earlier occurrence number valid, so one
pass over the original header list gives a correct edit list.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mxscan import Header, HeaderEdit

from .answer import KEEP_FOLDED, SpamdAnswer, refold, unfold
from .levels import Decision, format_score

__all__ = ["forged_removals", "sent_fields", "spam_header_edits", "subject_edits"]

PREFIX = "x-spam-"


def forged_removals(headers: Sequence[Header]) -> list[HeaderEdit]:
    """Delete every ``X-Spam-*`` header, last first.

    A sender who writes ``X-Spam-Flag: YES`` could otherwise get their own mail
    discarded by a downstream rule, or write ``X-Spam-Status: No`` to look clean.
    """
    seen: dict[str, int] = {}
    targets: list[tuple[str, int]] = []
    for header in headers:
        lowered = header.name.lower()
        seen[lowered] = seen.get(lowered, 0) + 1
        if lowered.startswith(PREFIX):
            targets.append((header.name, seen[lowered]))
    return [HeaderEdit.delete(name, occurrence) for name, occurrence in reversed(targets)]


def sent_fields(headers: Iterable[Header]) -> frozenset[tuple[str, str]]:
    """The X-Spam-* fields that went to spamd, to tell SA's own apart from them.

    SpamAssassin keeps X-Spam-* fields it does not manage; with
    ``remove_existing`` off those stay in the message and must not be added twice.
    """
    result = set()
    for header in headers:
        if header.name.lower().startswith(PREFIX):
            raw = header.raw_value.decode("utf-8", "surrogateescape")
            lowered = header.name.lower()
            result.add((lowered, refold(raw) if lowered in KEEP_FOLDED else unfold(raw)))
    return frozenset(result)


def _status(value: str, decision: Decision) -> str:
    """SA's X-Spam-Status with our own Yes/No and required=, rest untouched.

    With ``spam_score`` set, mxscan and not spamd decides spam, and the header must
    agree with X-Spam-Flag, or Sieve rules on ``X-Spam-Status: Yes`` misfire.
    Custom ``add_header`` templates that do not look like SA's default stay as they are.
    """
    yes_no, comma, rest = value.partition(",")
    if not comma or yes_no.strip() not in ("Yes", "No"):
        return value
    words = rest.split(" ")
    for index, word in enumerate(words):
        if word.startswith("required="):
            words[index] = f"required={format_score(decision.threshold)}"
    return ("Yes" if decision.is_spam else "No") + comma + " ".join(words)


def spam_header_edits(
    answer: SpamdAnswer,
    decision: Decision,
    sent: frozenset[tuple[str, str]] = frozenset(),
    *,
    subject_rewritten: bool = False,
) -> list[HeaderEdit]:
    """SpamAssassin's X-Spam-* fields as edits, in SA's order, made to agree with
    the decision (X-Spam-Flag and X-Spam-Report only on spam).

    X-Spam-Prev-Subject comes from a spamd with ``rewrite_header Subject``, but
    mxscan never takes spamd's Subject: the field is kept only when mxscan
    rewrote the Subject itself (``subject_tag``), else it would name a
    "previous" subject that is the current one."""
    if not decision.tag:
        return []
    fields: list[tuple[str, str]] = []
    has_status = False
    for name, value in answer.headers:
        lowered = name.lower()
        if lowered == "x-spam-status":
            has_status = True
        if (lowered, value) in sent:
            continue
        if lowered in ("x-spam-flag", "x-spam-report") and not decision.is_spam:
            continue
        if lowered == "x-spam-prev-subject" and not subject_rewritten:
            continue
        if lowered == "x-spam-flag":
            value = "YES"
        elif lowered == "x-spam-status":
            value = _status(value, decision)
        fields.append((name, value))
    if not has_status:
        # spamd configured with clear_headers: still say what was decided, in
        # SA's shape, so downstream rules have something to match.
        fields.append(
            (
                "X-Spam-Status",
                f"{'Yes' if decision.is_spam else 'No'}, score={format_score(answer.score)}"
                f" required={format_score(decision.threshold)} tests=none",
            )
        )
    if decision.is_spam and not any(n.lower() == "x-spam-flag" for n, _ in fields):
        position = next(
            (i + 1 for i, (n, _) in enumerate(fields) if n.lower() == "x-spam-checker-version"),
            0,
        )
        fields.insert(position, ("X-Spam-Flag", "YES"))
    return [HeaderEdit.add(name, value) for name, value in fields]


def subject_edits(subject: str | None, tag: str | None, decision: Decision) -> list[HeaderEdit]:
    """SpamAssassin's ``rewrite_header Subject``: opt-in, since it breaks DKIM."""
    if not tag or not decision.is_spam:
        return []
    if subject is None:
        return [HeaderEdit.add("Subject", tag)]
    if subject.startswith(tag):
        return []
    return [HeaderEdit.change("Subject", 1, f"{tag} {subject}")]
