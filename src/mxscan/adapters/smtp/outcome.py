"""A scan ``Result`` -> what to do per recipient group, decided without I/O.

Each policy group of the result is handled on its own (in LMTP each group's
recipients get that group's reply; in SMTP the session keeps a transaction to
one policy, so there is one group):

* ACCEPT: relay the group's message (edits applied) to the next hop; the group's
  reply is the next hop's, so ``250`` only once the next hop said ``250``;
* DISCARD: ``250``, nothing relayed;
* REJECT: the verdict's 5xx (Postfix bounces the message to the sender);
* TEMPFAIL: the verdict's 4xx (Postfix keeps the message and retries);
* QUARANTINE: with a ``[quarantine]`` store the core's keeper step has stored
  the message and turned the action into DISCARD, so it is answered ``250``
  through the DISCARD branch. A QUARANTINE that reaches this adapter means no
  store is configured (or the message was over its ``max_size``): an after-queue
  filter has no hold queue to put it in, so it answers ``451 4.3.5`` and the mail
  stays in Postfix's queue rather than be delivered or dropped.
"""

from __future__ import annotations

from typing import assert_never

import attrs

from mxscan.message import Message
from mxscan.verdict import Action, Result

from .session import reply

__all__ = ["Answer", "Relay", "plan"]


@attrs.frozen
class Relay:
    recipients: tuple[str, ...]
    message: Message
    policy: str


@attrs.frozen
class Answer:
    recipients: tuple[str, ...]
    reply: bytes


QUARANTINE_UNSET = reply(451, "4.3.5", "Quarantine requested but no quarantine is configured")
DISCARDED = reply(250, "2.0.0", "Ok: discarded by mxscan")


def plan(
    result: Result, recipients: tuple[str, ...], *, per_group: bool = True
) -> list[Relay | Answer]:
    """``per_group=False`` (SMTP, one reply after DATA): a split result is handled
    as one group, the most severe verdict with its message for every recipient,
    as the milter does with ``--no-split-policies``; answering each group on its
    own could not be said in one reply without retrying what was relayed."""
    steps: list[Relay | Answer] = []
    groups = result.groups if per_group else (result,)
    for group in groups:
        rcpts = group.recipients if (group.recipients and len(groups) > 1) else recipients
        verdict = group.verdict
        action = verdict.action
        match action:
            case Action.ACCEPT:
                steps.append(Relay(rcpts, group.message, group.policy))
            case Action.DISCARD:
                steps.append(Answer(rcpts, DISCARDED))
            case Action.REJECT | Action.TEMPFAIL:
                smtp = verdict.smtp_reply
                assert smtp is not None  # smtp_reply has a default for both
                steps.append(Answer(rcpts, reply(smtp.code, smtp.status, smtp.text)))
            case Action.QUARANTINE:
                steps.append(Answer(rcpts, QUARANTINE_UNSET))
            case _:
                assert_never(action)
    return steps
