"""Option negotiation as a pure function: the MTA's offer + what we want -> our reply.

Getting this wrong desynchronises the stream (claiming "no reply" for a step we then
answer, or requesting an action the MTA did not offer makes Postfix drop the milter),
so it is computed in one place and unit-tested against Postfix's real offer.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from mxscan.adapters.milter import replies
from mxscan.adapters.milter.constants import (
    NO_REPLY_FLAG,
    NO_STEP_FLAG,
    PROTOCOL_VERSION,
    Command,
    MacroStage,
    ModifyFlag,
    Protocol,
)
from mxscan.adapters.milter.packets import OptNeg, ProtocolError

DEFAULT_ACTIONS = (
    ModifyFlag.ADDHDRS
    | ModifyFlag.CHGHDRS
    | ModifyFlag.QUARANTINE
    | ModifyFlag.ADDRCPT
    | ModifyFlag.DELRCPT
)

DEFAULT_STEPS = frozenset(
    {Command.CONNECT, Command.HELO, Command.MAIL, Command.RCPT, Command.HEADER, Command.BODY}
)

DEFAULT_MACROS: Mapping[MacroStage, tuple[str, ...]] = {
    MacroStage.CONNECT: (
        "j",
        "v",  # MTA name and version: which header index rules apply
        "{daemon_name}",
        "{daemon_addr}",
        "{client_addr}",
        "{client_name}",
        "{client_port}",
        "{client_ptr}",
        "_",
    ),
    MacroStage.HELO: (
        "{tls_version}",
        "{cipher}",
        "{cipher_bits}",
        "{cert_subject}",
        "{cert_issuer}",
    ),
    MacroStage.ENVFROM: (
        "i",
        "{auth_type}",
        "{auth_authen}",
        "{auth_author}",
        "{mail_addr}",
        "{mail_host}",
        "{mail_mailer}",
    ),
    MacroStage.ENVRCPT: ("{rcpt_addr}", "{rcpt_host}", "{rcpt_mailer}"),
    MacroStage.DATA: ("i",),
    MacroStage.EOH: ("i",),
    MacroStage.EOM: ("i", "{msg_id}"),
}


@attrs.frozen
class Wants:
    """What the milter would like; the negotiation trims it to what the MTA offers."""

    actions: ModifyFlag = DEFAULT_ACTIONS
    steps: frozenset[Command] = DEFAULT_STEPS
    reply_steps: frozenset[Command] = frozenset({Command.RCPT})
    """Steps we answer; every other step gets SMFIP_NR_* when the MTA offers it."""
    macros: Mapping[MacroStage, tuple[str, ...]] = DEFAULT_MACROS
    leading_space: bool = True


def wants_for(changes_body: bool) -> Wants:
    """The default wishes, plus body replacement (SMFIF_CHGBODY) only when a
    scanner may change the body: asking for less keeps Postfix's fast path."""
    if not changes_body:
        return Wants()
    return Wants(actions=DEFAULT_ACTIONS | ModifyFlag.CHGBODY)


@attrs.frozen
class Negotiated:
    version: int
    actions: ModifyFlag
    protocol: Protocol
    macros: Mapping[MacroStage, tuple[str, ...]]

    @property
    def leading_space(self) -> bool:
        """Header values arrive (and must be sent) with their own leading whitespace."""
        return bool(self.protocol & Protocol.HDR_LEADSPC)

    def expects_reply(self, command: Command) -> bool:
        if command in (Command.BODYEOB, Command.OPTNEG):
            return True
        if command in (Command.ABORT, Command.QUIT, Command.QUIT_NC, Command.MACRO):
            return False
        flag = NO_REPLY_FLAG.get(command)
        return not (flag is not None and self.protocol & flag)

    def encode(self) -> bytes:
        return replies.optneg(self.version, self.actions, self.protocol, self.macros)


def negotiate(offer: OptNeg, wants: Wants | None = None) -> Negotiated:
    wants = wants or Wants()
    if offer.version < 2:
        raise ProtocolError(f"MTA offers milter protocol version {offer.version}")
    version = min(offer.version, PROTOCOL_VERSION)
    offered_actions = ModifyFlag(offer.actions & int(_all(ModifyFlag)))
    offered_proto = Protocol(offer.protocol & int(_all(Protocol)))

    actions = wants.actions & offered_actions
    protocol = Protocol.NONE
    for command, flag in NO_STEP_FLAG.items():
        if command not in wants.steps and flag & offered_proto:
            protocol |= flag
    for command, flag in NO_REPLY_FLAG.items():
        if command not in wants.reply_steps and flag & offered_proto:
            protocol |= flag
    if wants.leading_space and offered_proto & Protocol.HDR_LEADSPC:
        protocol |= Protocol.HDR_LEADSPC

    macros: Mapping[MacroStage, tuple[str, ...]] = {}
    if wants.macros and offered_actions & ModifyFlag.SETSYMLIST:
        actions |= ModifyFlag.SETSYMLIST
        macros = {stage: tuple(names) for stage, names in wants.macros.items() if names}
    return Negotiated(version, actions, protocol, macros)


def _all(flag_type: type[ModifyFlag] | type[Protocol]) -> int:
    value = 0
    for member in flag_type:
        value |= int(member)
    return value
