"""An mxscan ``Result`` -> the full JSON of ``POST /v1/scan`` (sans-I/O).

For applications rather than MTAs: every verdict, every applied edit, the
policy groups and the log line, in mxscan's own words.
"""

from __future__ import annotations

from typing import Any

from mxscan.edits import HeaderEdit
from mxscan.logline import format_result
from mxscan.verdict import Result, SmtpReply, Verdict

__all__ = ["result_json"]


def _reply(reply: SmtpReply | None) -> dict[str, Any] | None:
    if reply is None:
        return None
    return {"code": reply.code, "status": reply.status, "text": reply.text}


def _edit(edit: HeaderEdit) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": edit.kind.value, "name": edit.name}
    for key in ("value", "index", "occurrence"):
        value = getattr(edit, key)
        if value is not None:
            out[key] = value
    return out


def _verdict(verdict: Verdict) -> dict[str, Any]:
    return {
        "scanner": verdict.scanner,
        "action": str(verdict.action),
        "token": verdict.token,
        "reason": verdict.reason,
        "score": verdict.score,
        "threshold": verdict.threshold,
        "findings": list(verdict.findings),
        "edits": [_edit(e) for e in verdict.edits],
        "reply": _reply(verdict.reply),
        "routes": [{"kind": r.kind, "target": r.target} for r in verdict.routes],
        "body_replaced": verdict.body is not None,
        "shadow": verdict.shadow,
        "elapsed": verdict.elapsed,
    }


def _group(result: Result) -> dict[str, Any]:
    return {
        "action": str(result.action),
        "reply": _reply(result.verdict.smtp_reply),
        "reason": result.verdict.reason,
        "policy": result.policy,
        "recipients": list(result.recipients),
        "verdicts": [_verdict(v) for v in result.verdicts],
        "edits": [_edit(e) for e in result.edits],
        "body_replaced": result.body_replaced,
    }


def result_json(result: Result, *, elapsed: float) -> dict[str, Any]:
    out = _group(result)
    out["splits"] = [_group(g) for g in result.splits]
    out["log"] = format_result(result, elapsed=elapsed)
    out["elapsed"] = round(elapsed, 6)
    return out
