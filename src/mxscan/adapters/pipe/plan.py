"""What to do with a scanned message, decided without any I/O.

pipe(8) gives one exit status for all recipients of one invocation, while the
engine can give each recipient-policy group its own verdict. The rules, in order:

1. Any group TEMPFAIL (a scanner down with ``on_error = "tempfail"``): re-inject
   nothing and exit 75. Postfix retries every recipient later; nothing is lost
   and nothing is delivered twice.
2. Any group QUARANTINE while no quarantine is configured: exit 75 too, so the
   admin sees deferrals in the log instead of quarantined mail being delivered.
3. Every group REJECT: exit 69 with the first group's ``5.x.x text``; Postfix
   bounces the message to the sender.
4. Otherwise exit 0 after re-injecting: ACCEPT groups to their recipients,
   QUARANTINE groups to the hold queue or the quarantine address, DISCARD
   groups nowhere. A REJECT group *mixed* with others cannot be bounced on its
   own (the exit status would bounce the accepted recipients too), so it is
   dropped like DISCARD and logged as ``rejected-as-discard``. With
   ``mxscan_destination_recipient_limit = 1`` (the recommended main.cf) each
   invocation has one recipient, so this case never happens.

Headers that only mxscan may write (the hold and quarantine markers) are removed
from every message before re-injection, so a sender cannot forge them to get
mail held.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, assert_never

import attrs

from mxscan import Action, HeaderEdit, Message, Result, Verdict

from .exitcodes import ExitCode, dsn_line

__all__ = ["HOLD_HEADER", "QUARANTINE_HEADER", "Delivery", "Plan", "Quarantine", "plan"]

#: Added to quarantined mail re-injected in ``hold`` mode; the re-injection
#: cleanup's ``header_checks`` (docs/snippets/pipe-hold.regexp) HOLDs it.
HOLD_HEADER = "X-Mxscan-Hold"
#: Added to mail re-injected to the quarantine address: why, and for whom.
QUARANTINE_HEADER = "X-Mxscan-Quarantine"
MARKER_HEADERS = (HOLD_HEADER, QUARANTINE_HEADER)
_MAX_VALUE = 400


@attrs.frozen
class Quarantine:
    """``mode="hold"``: re-inject to the original recipients with the hold marker;
    ``mode="address"``: re-inject to ``address`` instead."""

    mode: Literal["hold", "address"]
    address: str = ""


@attrs.frozen
class Delivery:
    kind: Literal["deliver", "hold", "quarantine"]
    recipients: tuple[str, ...]
    message: Message
    policy: str


@attrs.frozen
class Plan:
    exit_code: ExitCode
    deliveries: tuple[Delivery, ...] = ()
    output: str = ""  # the status line for Postfix (empty on success)
    notes: tuple[str, ...] = ()


def _clean(text: str) -> str:
    return " ".join(text.split())[:_MAX_VALUE]


def strip_markers(message: Message) -> Message:
    """Remove every hold/quarantine marker header the message arrived with."""
    edits = []
    for name in MARKER_HEADERS:
        edits += [HeaderEdit.delete(name, 1)] * len(message.get_all(name))
    return message.apply(edits)


def _why(verdict: Verdict) -> str:
    return _clean(f"{verdict.scanner}: {verdict.reason or verdict.token}")


def _routes(group: Result, recipients: tuple[str, ...]) -> tuple[str, ...]:
    """header_checks REDIRECT replaces the recipients, BCC adds one: the pipe
    adapter controls delivery, so it can honour them (a milter cannot)."""
    extra: list[str] = []
    for verdict in group.verdicts:
        for route in verdict.routes:
            if route.kind == "redirect":
                recipients = (route.target,)
            elif route.kind == "bcc":
                extra.append(route.target)
    return tuple(dict.fromkeys((*recipients, *extra)))


def plan(
    result: Result,
    *,
    quarantine: Quarantine | None,
    queue_id: str | None = None,
    recipients: Sequence[str] | None = None,
) -> Plan:
    groups = result.groups
    qid = queue_id or "NOQUEUE"

    for group in groups:
        if group.action is Action.TEMPFAIL:
            reply = group.verdict.smtp_reply
            status = reply.status if reply else "4.3.0"
            text = reply.text if reply else "try again later"
            return Plan(ExitCode.TEMPFAIL, output=dsn_line(ExitCode.TEMPFAIL, status, text))
    if quarantine is None and any(g.action is Action.QUARANTINE for g in groups):
        return Plan(
            ExitCode.TEMPFAIL,
            output=dsn_line(
                ExitCode.TEMPFAIL,
                "4.3.5",
                "mxscan pipe: quarantine requested but neither --quarantine hold "
                "nor --quarantine-to ADDRESS is configured",
            ),
        )
    if all(g.action is Action.REJECT for g in groups):
        reply = groups[0].verdict.smtp_reply
        status = reply.status if reply else "5.7.1"
        text = reply.text if reply else "message content rejected"
        return Plan(ExitCode.UNAVAILABLE, output=dsn_line(ExitCode.UNAVAILABLE, status, text))

    deliveries: list[Delivery] = []
    notes: list[str] = []
    for group in groups:
        rcpts = group.recipients or tuple(recipients or ())
        action = group.action
        match action:  # mypy names this adapter when Action gains a member
            case Action.ACCEPT:
                message = strip_markers(group.message)
                deliveries.append(Delivery("deliver", _routes(group, rcpts), message, group.policy))
            case Action.QUARANTINE:
                assert quarantine is not None
                message = strip_markers(group.message)
                why = _why(group.verdict)
                if quarantine.mode == "hold":
                    edit = HeaderEdit.add(HOLD_HEADER, _clean(f"{qid} {why}"))
                    deliveries.append(Delivery("hold", rcpts, message.apply([edit]), group.policy))
                else:
                    value = _clean(f"{qid} {why}; recipients={', '.join(rcpts)}")
                    edit = HeaderEdit.add(QUARANTINE_HEADER, value)
                    deliveries.append(
                        Delivery(
                            "quarantine", (quarantine.address,), message.apply([edit]), group.policy
                        )
                    )
            case Action.REJECT:
                notes.append(
                    f"policy={group.policy} rcpts={','.join(rcpts)} rejected-as-discard: other "
                    "recipients of this delivery were not rejected (set "
                    "mxscan_destination_recipient_limit = 1)"
                )
            case Action.DISCARD:
                pass  # taken from Postfix and not delivered: what discard means
            case Action.TEMPFAIL:
                raise AssertionError("a tempfail group ends the plan above")
            case _:
                assert_never(action)
    return Plan(ExitCode.OK, tuple(d for d in deliveries if d.recipients), notes=tuple(notes))
