"""An mxscan ``Result`` -> rspamd's ``/checkv2`` JSON answer (sans-I/O).

rspamd's clients (rspamc, Haraka's rspamd plugin, Exim, OpenSMTPD's
filter-rspamd) act on ``action`` and apply ``milter.add_headers`` /
``milter.remove_headers`` themselves, so a verdict must say everything through
those fields. docs/http.md has the table this module implements.
"""

from __future__ import annotations

import re
from typing import Any, assert_never

from mxscan.edits import EditKind, HeaderEdit
from mxscan.verdict import Action, Result, SmtpReply, Verdict

__all__ = [
    "ACTIONS",
    "action_name",
    "error_answer",
    "legacy_answer",
    "rspamd_answer",
    "symbol_name",
]


#: mxscan's action -> rspamd's. ACCEPT is refined by ``action_name``.
def rspamd_action(action: Action) -> str:
    """rspamd's name for ``action`` (an accepted message may be refined by
    ``action_name``). A ``match`` so that mypy names this adapter when ``Action``
    gains a member."""
    match action:
        case Action.ACCEPT:
            return "no action"
        case Action.TEMPFAIL:
            return "soft reject"
        case Action.QUARANTINE:
            return "quarantine"
        case Action.DISCARD:
            return "discard"
        case Action.REJECT:
            return "reject"
        case _:
            assert_never(action)


ACTIONS = {action: rspamd_action(action) for action in Action}

_SYMBOL_CHARS = re.compile(r"[^A-Z0-9_]+")


def symbol_name(scanner: str) -> str:
    """``header-rules`` -> ``HEADER_RULES``: rspamd symbols are upper-case words."""
    return _SYMBOL_CHARS.sub("_", scanner.upper()).strip("_") or "MXSCAN"


def _scored(result: Result) -> Verdict | None:
    """The verdict that carries a score (SpamAssassin's), if any applied one."""
    for verdict in result.verdicts:
        if verdict.score is not None and not verdict.shadow:
            return verdict
    return None


def _subject_changed(result: Result) -> bool:
    return any(e.name.lower() == "subject" and e.kind is not EditKind.DELETE for e in result.edits)


def action_name(result: Result) -> str:
    """rspamd's action: an accepted message is ``rewrite subject`` when a scanner
    changed the Subject, ``add header`` when the scored verdict is spam, else
    ``no action``; the other actions map one to one."""
    action = result.verdict.action
    if action is not Action.ACCEPT:
        return ACTIONS[action]
    if _subject_changed(result):
        return "rewrite subject"
    scored = _scored(result)
    if scored and scored.score is not None and scored.threshold is not None:
        return "add header" if scored.score >= scored.threshold else "no action"
    return "no action"


def _symbols(result: Result) -> dict[str, dict[str, Any]]:
    symbols: dict[str, dict[str, Any]] = {}
    for verdict in result.verdicts:
        name = symbol_name(verdict.scanner)
        if verdict.shadow:
            name = f"SHADOW_{name}"
        score = float(verdict.score) if verdict.score is not None else 0.0
        description = f"{verdict.token}: {verdict.reason}" if verdict.reason else verdict.token
        symbol: dict[str, Any] = {
            "name": name,
            "score": score,
            "metric_score": score,
            "description": description,
        }
        if verdict.findings:
            symbol["options"] = list(verdict.findings)
        symbols.setdefault(name, symbol)
    return symbols


def _milter(result: Result) -> dict[str, Any]:
    """The applied header edits as rspamd's milter block. rspamd's clients apply
    removals before additions, so a ``change`` is a removal of that occurrence and
    an addition; several deletions of one name that leave none of its original
    fields are "remove all" (0)."""
    add: dict[str, list[dict[str, Any]]] = {}
    deletions: dict[str, list[int]] = {}
    names: dict[str, str] = {}
    for edit in result.edits:
        key = edit.name.lower()
        names.setdefault(key, edit.name)
        if edit.kind in (EditKind.DELETE, EditKind.CHANGE):
            assert edit.occurrence is not None
            deletions.setdefault(key, []).append(edit.occurrence)
        if edit.kind is not EditKind.DELETE:
            add.setdefault(key, []).append(_added(edit))
    remove: dict[str, int] = {}
    for key, occurrences in deletions.items():
        remove[names[key]] = (
            occurrences[0] if len(occurrences) == 1 else _all_or_first(result, key, occurrences)
        )
    block: dict[str, Any] = {}
    if add:
        block["add_headers"] = {
            names[key]: values[0] if len(values) == 1 else values for key, values in add.items()
        }
    if remove:
        block["remove_headers"] = remove
    return block


def _added(edit: HeaderEdit) -> dict[str, Any]:
    order = edit.index if edit.kind is EditKind.INSERT and edit.index is not None else -1
    return {"value": edit.value, "order": order}


def _all_or_first(result: Result, key: str, occurrences: list[int]) -> int:
    added = sum(1 for e in result.edits if e.name.lower() == key and e.kind is not EditKind.DELETE)
    left = sum(1 for h in result.message.headers if h.name.lower() == key)
    return 0 if left <= added else occurrences[0]


def _reply_text(reply: SmtpReply | None) -> str | None:
    return f"{reply.status} {reply.text}" if reply is not None else None


def rspamd_answer(result: Result, *, elapsed: float) -> dict[str, Any]:
    """The JSON object rspamd's normal worker answers to ``/checkv2``."""
    scored = _scored(result)
    answer: dict[str, Any] = {
        "is_skipped": bool(result.verdicts) and all(v.skip is not None for v in result.verdicts),
        "score": float(scored.score) if scored and scored.score is not None else 0.0,
        "required_score": (
            float(scored.threshold) if scored and scored.threshold is not None else 0.0
        ),
        "action": action_name(result),
        "symbols": _symbols(result),
        "messages": {},
    }
    smtp = _reply_text(result.verdict.smtp_reply)
    if smtp is not None:
        answer["messages"]["smtp_message"] = smtp
    message_id = result.message.get("Message-ID")
    if message_id is not None:
        answer["message-id"] = message_id.strip().strip("<>")
    if answer["action"] == "rewrite subject":
        answer["subject"] = result.message.get("Subject", "")
    answer["time_real"] = round(elapsed, 6)
    milter = _milter(result)
    if milter:
        answer["milter"] = milter
    return answer


def error_answer(action: Action, reply: SmtpReply, *, elapsed: float) -> dict[str, Any]:
    """The answer when the scan itself failed (the adapter's default action)."""
    return {
        "is_skipped": True,
        "score": 0.0,
        "required_score": 0.0,
        "action": ACTIONS[action],
        "symbols": {},
        "messages": {"smtp_message": _reply_text(reply)} if action is not Action.ACCEPT else {},
        "time_real": round(elapsed, 6),
    }


def legacy_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """The same answer in the pre-1.6 ``/check`` shape: the verdict and the symbols
    inside a ``default`` metric object, the rest beside it."""
    metric = {
        "is_spam": answer["action"] not in ("no action", "greylist"),
        "is_skipped": answer["is_skipped"],
        "score": answer["score"],
        "required_score": answer["required_score"],
        "action": answer["action"],
        **answer["symbols"],
    }
    out: dict[str, Any] = {"default": metric}
    for key, value in answer.items():
        if key not in metric and key != "symbols":
            out[key] = value
    return out
