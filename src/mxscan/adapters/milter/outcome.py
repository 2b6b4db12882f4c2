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

Only actions the MTA granted in the negotiation are used; anything else is logged
and skipped rather than sent (Postfix would drop the connection). A replaced body
is the exception: skipping it would deliver a message nobody decided on, so
without SMFIF_CHGBODY the message is tempfailed instead.

A replaced body goes out as SMFIR_REPLBODY packets of at most 65535 bytes, as it
is: the milter built the message from Postfix's CRLF body, and scanners keep the
body's own line endings. The packets are not built here: ``Replies`` carries
the body itself, and the writer streams it from its spool file packet by packet
(``body_packets``), so a replaced 100 MB body is never held in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence

import attrs

from mxscan.adapters.milter import replies
from mxscan.adapters.milter.constants import BODY_CHUNK_SIZE
from mxscan.adapters.milter.constants import Action as Flag
from mxscan.body import Body
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


class HeaderEditor:
    """Tracks the header names as edits are replayed, to compute wire indexes."""

    def __init__(self, names: Iterable[str], actions: Flag, leading_space: bool) -> None:
        self.names = [n.lower() for n in names]
        self.actions = actions
        self.leading_space = leading_space

    def _position(self, name: str, occurrence: int) -> int | None:
        seen = 0
        for pos, existing in enumerate(self.names):
            if existing == name.lower():
                seen += 1
                if seen == occurrence:
                    return pos
        return None

    def _allowed(self, flag: Flag, edit: HeaderEdit) -> bool:
        if self.actions & flag:
            return True
        log.warning("MTA did not grant %s: skipping header edit %s", flag.name, edit)
        return False

    def encode(self, edit: HeaderEdit) -> bytes:
        lname = edit.name.lower()
        value = wire_value(edit.value or "", self.leading_space)
        if edit.kind is EditKind.ADD:
            if not self._allowed(Flag.ADDHDRS, edit):
                return b""
            self.names.append(lname)
            return replies.add_header(edit.name, value)
        if edit.kind is EditKind.INSERT:
            if not self._allowed(Flag.ADDHDRS, edit):
                return b""
            assert edit.index is not None
            at = min(edit.index, len(self.names))
            self.names.insert(at, lname)
            return replies.insert_header(at + 1, edit.name, value)
        assert edit.occurrence is not None
        pos = self._position(edit.name, edit.occurrence)
        if edit.kind is EditKind.DELETE:
            if pos is None or not self._allowed(Flag.CHGHDRS, edit):
                return b""
            del self.names[pos]
            return replies.delete_header(edit.occurrence, edit.name)
        # CHANGE
        if pos is None:
            # Past the last occurrence: libmilter and Postfix both append.
            if not self._allowed(Flag.ADDHDRS, edit):
                return b""
            self.names.append(lname)
            return replies.add_header(edit.name, value)
        if not self._allowed(Flag.CHGHDRS, edit):
            return b""
        if edit.occurrence == 1 and self.actions & Flag.ADDHDRS:
            # Insert the new field just before the old one, then delete the old one,
            # which has become occurrence 2.
            return replies.insert_header(pos + 1, edit.name, value) + replies.delete_header(
                2, edit.name
            )
        return replies.change_header(edit.occurrence, edit.name, value)


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
) -> Replies:
    """Every reply for end-of-message, ending with the final decision."""
    verdict = result.verdict
    action = verdict.action
    if action is Action.REJECT or action is Action.TEMPFAIL:
        reply = verdict.smtp_reply
        return Replies(reply_for(reply) if reply else replies.tempfail())
    if action is Action.DISCARD:
        return Replies(replies.discard())
    if result.body_replaced and not actions & Flag.CHGBODY:
        log.error(
            "%s: a scanner replaced the body but the MTA did not grant CHGBODY: tempfailing",
            result.message.envelope.queue_id or "NOQUEUE",
        )
        return Replies(replies.tempfail())
    out = bytearray()
    editor = HeaderEditor(header_names, actions, leading_space)
    for edit in result.edits:
        out += editor.encode(edit)
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
