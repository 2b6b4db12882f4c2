"""A pipeline ``mxscan.Result`` -> the end-of-message replies for Postfix.

Edits are replayed one for one (they are sequential in both mxscan and Postfix), with
Postfix's index rules:

* CHGHEADER / delete: 1-based per name, counted over the headers the milter saw
  (Postfix hides its own Received: header from milters and skips it when counting);
* INSHEADER: Postfix counts its own (hidden) Received: header as position 0, so
  "before the n-th visible header" is index n + 1 on the wire;
* changing the *first* instance of a header is sent as insert-before + delete-old,
  a workaround for a Postfix quirk with changing a first instance; the bytes that come out are
  the same as an in-place change.

Only actions the MTA granted in the negotiation are used (Postfix would drop the
connection otherwise). An edit is sent whole or not at all: a header edit that needs
an action the MTA did not grant raises :class:`NotGranted`, and the session answers
with its default action (tempfail unless configured otherwise) rather than deliver a
half-applied REPLACE (two Subjects, or none). A replaced body without SMFIF_CHGBODY
is tempfailed for the same reason.

Sendmail (detected from the ``v`` macro, or ``--mta``) numbers INSHEADER positions
over its whole internal header list, which holds entries the milter never sees
(see :meth:`HeaderEditor._insert_index`): there, a change is always an in-place
CHGHEADER, a REPLACE (delete + insert of a same-named field where it was) becomes
one too, a field inserted first goes to index 1, one added or inserted last goes
past the end of the list (``SENDMAIL_END``), and a field inserted anywhere else
cannot be placed and refuses the result.

A replaced body goes out as SMFIR_REPLBODY packets of at most 65535 bytes, as it
is: the milter built the message from Postfix's CRLF body, and scanners keep the
body's own line endings. The packets are not built here: ``Replies`` carries
the body itself, and the writer streams it from its spool file packet by packet
(``body_packets``), so a replaced 100 MB body is never held in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal, assert_never

import attrs

from mxscan.adapters.milter import replies
from mxscan.adapters.milter.constants import BODY_CHUNK_SIZE
from mxscan.adapters.milter.constants import ModifyFlag as Flag
from mxscan.body import Body
from mxscan.editbuffer import EditBuffer
from mxscan.edits import EditKind, HeaderEdit
from mxscan.verdict import Action, Result, SmtpReply

log = logging.getLogger("mxscan.milter")


def wire_value(value: str, leading_space: bool) -> bytes:
    """The value as the MTA must receive it to write ``Name: value`` exactly."""
    # A folded value: Postfix joins a field's lines with a bare LF, both ways.
    raw = value.encode("utf-8", "surrogateescape").replace(b"\r\n", b"\n")
    if leading_space:
        # With SMFIP_HDR_LEADSPC Postfix writes "Name:" + value verbatim.
        return raw if raw[:1] in (b" ", b"\t") else b" " + raw
    # Without it Postfix inserts one space itself.
    return raw[1:] if raw[:1] == b" " else raw


class CannotApply(ValueError):
    """An edit that this MTA cannot be made to apply as mxscan applied it: the whole
    result is refused (the session answers with its default action), never half
    applied."""


class NotGranted(CannotApply):
    """An edit needs an action the MTA did not grant."""


#: An INSHEADER index past the end of any header list Sendmail holds (it reads the
#: index as a signed int: the largest positive one).
SENDMAIL_END = 0x7FFFFFFF

#: How the MTA numbers header positions (see the module docstring and docs/milter.md).
Mta = Literal["postfix", "sendmail"]


class HeaderEditor:
    """Replays edits over the header names the MTA showed, to compute wire indexes.

    The names live in an :class:`~mxscan.editbuffer.EditBuffer`, so a batch of
    20,000 deletions costs linear time here too (it rescanned the list per edit).
    """

    def __init__(
        self, names: Iterable[str], actions: Flag, leading_space: bool, mta: Mta = "postfix"
    ) -> None:
        self.names: EditBuffer[str] = EditBuffer(names, str)  # (it lower-cases keys)
        self.actions = actions
        self.leading_space = leading_space
        self.mta = mta
        # Looked up per edit: a set, not a Flag operation (20,000 deletions).
        self._granted = {flag for flag in (Flag.ADDHDRS, Flag.CHGHDRS) if actions & flag}

    def _require(self, flag: Flag, edit: HeaderEdit) -> None:
        if flag not in self._granted:
            raise NotGranted(f"the MTA did not grant {flag.name}, needed for {edit}")

    def encode_all(self, edits: Sequence[HeaderEdit]) -> bytes:
        out = bytearray()
        i = 0
        while i < len(edits):
            edit = edits[i]
            following = edits[i + 1] if i + 1 < len(edits) else None
            if (
                self.mta == "sendmail"
                and following is not None
                and self._is_replace(edit, following)
            ):
                out += self._replace_in_place(edit, following)
                i += 2
                continue
            out += self.encode(edit)
            i += 1
        return bytes(out)

    def _is_replace(self, edit: HeaderEdit, following: HeaderEdit) -> bool:
        """A delete, then an insert of a same-named field where it was: a REPLACE as
        header rules emit it. On Sendmail the insert index would not land there."""
        if edit.kind is not EditKind.DELETE or following.kind is not EditKind.INSERT:
            return False
        if edit.name.lower() != following.name.lower():
            return False
        assert edit.occurrence is not None
        return self.names.find(edit.name, edit.occurrence) == following.index

    def _replace_in_place(self, delete: HeaderEdit, insert: HeaderEdit) -> bytes:
        self._require(Flag.CHGHDRS, delete)
        assert delete.occurrence is not None
        value = wire_value(insert.value or "", self.leading_space)
        return replies.change_header(delete.occurrence, insert.name, value)

    def encode(self, edit: HeaderEdit) -> bytes:
        if edit.kind is EditKind.DELETE:
            assert edit.occurrence is not None
            pos = self.names.find(edit.name, edit.occurrence)
            if pos is None:
                return b""
            self._require(Flag.CHGHDRS, edit)
            self.names.delete(pos)
            return replies.delete_header(edit.occurrence, edit.name)
        value = wire_value(edit.value or "", self.leading_space)
        if edit.kind is EditKind.ADD:
            self._require(Flag.ADDHDRS, edit)
            self.names.append(edit.name)
            return self._append(edit.name, value)
        if edit.kind is EditKind.INSERT:
            self._require(Flag.ADDHDRS, edit)
            assert edit.index is not None
            at = self.names.insert(edit.index, edit.name)
            if self.mta == "sendmail" and at == len(self.names) - 1:
                return self._append(edit.name, value)
            return replies.insert_header(self._insert_index(at, edit), edit.name, value)
        assert edit.occurrence is not None
        pos = self.names.find(edit.name, edit.occurrence)
        # CHANGE
        if pos is None:
            # Past the last occurrence: libmilter and Postfix both append.
            self._require(Flag.ADDHDRS, edit)
            self.names.append(edit.name)
            return self._append(edit.name, value)
        self._require(Flag.CHGHDRS, edit)
        if self.mta == "postfix" and edit.occurrence == 1 and self.actions & Flag.ADDHDRS:
            # Insert the new field just before the old one, then delete the old one,
            # which has become occurrence 2. (Sendmail changes a field in place, and
            # its insert index would not land next to the old one: no workaround.)
            return replies.insert_header(self._insert_index(pos, edit), edit.name, value) + (
                replies.delete_header(2, edit.name)
            )
        return replies.change_header(edit.occurrence, edit.name, value)

    def _append(self, name: str, value: bytes) -> bytes:
        """A field after the last one. Sendmail's ADDHEADER puts a field where a
        deleted or default one of the same name was (a sender's X-Virus-Status that
        a scanner deleted, a hidden Date:), not at the end; an INSHEADER past the
        end of its list appends, whatever the list holds."""
        if self.mta == "sendmail":
            return replies.insert_header(SENDMAIL_END, name, value)
        return replies.add_header(name, value)

    def _insert_index(self, position: int, edit: HeaderEdit) -> int:
        """The wire index that puts a new field before the one now at ``position``.

        Postfix counts its own hidden Received: header as index 0, and nothing else
        the milter does not see. Sendmail counts every entry of its internal header
        list: its Received: first, then the configuration's default headers (Date,
        From, Message-Id...) that the message's own replaced but that stay in the
        list, hidden, in places the milter cannot know. So on Sendmail only "first"
        (index 1: after its Received:) and "last" (ADDHEADER) can be placed."""
        if self.mta == "postfix" or position == 0:
            return position + 1
        raise CannotApply(
            f"Sendmail cannot be told to put a field at position {position} of "
            f"{len(self.names)} ({edit})"
        )


def reply_for(reply: SmtpReply) -> bytes:
    return replies.reply_code(reply.code, reply.status, reply.text)


@attrs.frozen
class Replies:
    """End-of-message replies: ``head``, then ``body`` as SMFIR_REPLBODY packets (when
    a scanner replaced it), then ``tail``. Whoever writes them streams the body with
    ``body_packets`` and then closes it."""

    head: bytes
    body: Body | None = None
    tail: bytes = b""


def encode_result(
    result: Result,
    header_names: Sequence[str],
    recipients: Sequence[str],
    actions: Flag,
    leading_space: bool,
    mta: Mta = "postfix",
) -> Replies:
    """Every reply for end-of-message, ending with the final decision.

    Raises :class:`CannotApply` when an edit cannot be applied as it was meant: an
    action the MTA did not grant (:class:`NotGranted`), a position Sendmail cannot
    be told."""
    verdict = result.verdict
    action = verdict.action
    match action:  # mypy names this adapter when Action gains a member
        case Action.REJECT | Action.TEMPFAIL:
            reply = verdict.smtp_reply
            return Replies(reply_for(reply) if reply else replies.tempfail())
        case Action.DISCARD:
            return Replies(replies.discard())
        case Action.ACCEPT | Action.QUARANTINE:
            pass  # edits, routes, then continue (or quarantine) below
        case _:
            assert_never(action)
    if result.body_replaced and not actions & Flag.CHGBODY:
        log.error(
            "%s: a scanner replaced the body but the MTA did not grant CHGBODY: tempfailing",
            result.message.envelope.queue_id or "NOQUEUE",
        )
        return Replies(replies.tempfail())
    out = bytearray()
    editor = HeaderEditor(header_names, actions, leading_space, mta)
    out += editor.encode_all(result.edits)
    out += _routes(result, recipients, actions)
    if action is Action.QUARANTINE:
        if actions & Flag.QUARANTINE:
            tail = replies.quarantine(verdict.reason or verdict.token)
        else:
            # Holding was asked for and cannot be done: let Postfix retry rather
            # than deliver mail a scanner wanted held.
            log.warning("MTA did not grant QUARANTINE: tempfailing instead")
            return Replies(replies.tempfail())
    else:
        tail = b""
    tail += replies.continue_()
    body = result.message.body if result.body_replaced else None
    return Replies(bytes(out), body, tail)


def body_packets(body: Body) -> Iterator[bytes]:
    """The new body as SMFIR_REPLBODY packets, read from the body one packet at a time
    (an empty body is one empty packet, which tells Postfix the body is now empty)."""
    empty = True
    for chunk in body.chunks(BODY_CHUNK_SIZE):
        empty = False
        yield replies.replace_body(chunk)
    if empty:
        yield replies.replace_body(b"")


def _routes(result: Result, recipients: Sequence[str], actions: Flag) -> bytes:
    out = bytearray()
    for verdict in result.verdicts:
        for route in verdict.routes:
            if route.kind == "filter":
                log.warning("FILTER %s cannot be applied by a milter: ignored", route.target)
                continue
            if not actions & Flag.ADDRCPT or (
                route.kind == "redirect" and not actions & Flag.DELRCPT
            ):
                log.warning("MTA did not grant recipient changes: %s ignored", route.kind)
                continue
            if route.kind == "redirect":
                for rcpt in recipients:
                    out += replies.del_rcpt(f"<{rcpt}>")
            out += replies.add_rcpt(f"<{route.target}>")
    return bytes(out)
