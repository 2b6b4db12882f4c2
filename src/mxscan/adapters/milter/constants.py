"""Milter protocol v6 constants, as spoken by Sendmail 8.14+ libmilter and Postfix 3.x.

Values come from the protocol itself (Postfix's ``milter8.c`` and libmilter's
``mfdef.h`` agree on every one); they are wire facts, so they live in one place and
every other module names them instead of repeating the numbers.
"""

from __future__ import annotations

import enum

PROTOCOL_VERSION = 6
"""The highest protocol version this milter speaks; Postfix 3.7 offers 6 too."""

BODY_CHUNK_SIZE = 65535
"""MTAs never send a body chunk larger than this (MILTER_CHUNK_SIZE)."""

DEFAULT_MAX_PACKET = 1024 * 1024 + BODY_CHUNK_SIZE
"""Largest packet the decoder accepts: generous for headers and macros, bounded memory."""


class Command(bytes, enum.Enum):
    """Command bytes sent from the MTA to the milter (SMFIC_*)."""

    ABORT = b"A"
    BODY = b"B"
    CONNECT = b"C"
    MACRO = b"D"
    BODYEOB = b"E"
    HELO = b"H"
    QUIT_NC = b"K"
    HEADER = b"L"
    MAIL = b"M"
    EOH = b"N"
    OPTNEG = b"O"
    QUIT = b"Q"
    RCPT = b"R"
    DATA = b"T"
    UNKNOWN = b"U"


class Reply(bytes, enum.Enum):
    """Reply / action bytes sent from the milter to the MTA (SMFIR_*)."""

    ADDRCPT = b"+"
    DELRCPT = b"-"
    ADDRCPT_PAR = b"2"
    SHUTDOWN = b"4"
    ACCEPT = b"a"
    REPLBODY = b"b"
    CONTINUE = b"c"
    DISCARD = b"d"
    CHGFROM = b"e"
    CONN_FAIL = b"f"
    ADDHEADER = b"h"
    INSHEADER = b"i"
    SETSYMLIST = b"l"
    CHGHEADER = b"m"
    PROGRESS = b"p"
    QUARANTINE = b"q"
    REJECT = b"r"
    SKIP = b"s"
    TEMPFAIL = b"t"
    REPLYCODE = b"y"
    OPTNEG = b"O"


class ModifyFlag(enum.IntFlag):
    """Modifications the milter may request at end of message (SMFIF_*), offered
    and agreed in the negotiation: not a verdict's action (``mxscan.Action``)."""

    NONE = 0
    ADDHDRS = 1 << 0
    CHGBODY = 1 << 1
    ADDRCPT = 1 << 2
    DELRCPT = 1 << 3
    CHGHDRS = 1 << 4
    QUARANTINE = 1 << 5
    CHGFROM = 1 << 6
    ADDRCPT_PAR = 1 << 7
    SETSYMLIST = 1 << 8


class Protocol(enum.IntFlag):
    """Steps the milter does not want (SMFIP_NO*), replies it won't send (SMFIP_NR_*)."""

    NONE = 0
    NOCONNECT = 1 << 0
    NOHELO = 1 << 1
    NOMAIL = 1 << 2
    NORCPT = 1 << 3
    NOBODY = 1 << 4
    NOHDRS = 1 << 5
    NOEOH = 1 << 6
    NR_HDR = 1 << 7
    NOUNKNOWN = 1 << 8
    NODATA = 1 << 9
    SKIP = 1 << 10
    RCPT_REJ = 1 << 11
    NR_CONN = 1 << 12
    NR_HELO = 1 << 13
    NR_MAIL = 1 << 14
    NR_RCPT = 1 << 15
    NR_DATA = 1 << 16
    NR_UNKN = 1 << 17
    NR_EOH = 1 << 18
    NR_BODY = 1 << 19
    HDR_LEADSPC = 1 << 20


class MacroStage(enum.IntEnum):
    """Macro list classes in the negotiation reply (SMFIM_*)."""

    CONNECT = 0
    HELO = 1
    ENVFROM = 2
    ENVRCPT = 3
    DATA = 4
    EOM = 5
    EOH = 6


class Family(bytes, enum.Enum):
    """Address family byte in SMFIC_CONNECT (SMFIA_*)."""

    UNKNOWN = b"U"
    UNIX = b"L"
    INET = b"4"
    INET6 = b"6"


# Which "no such step" flag and which "no reply" flag belong to each event; the session
# uses this to know whether the MTA is waiting for an answer.
NO_REPLY_FLAG: dict[Command, Protocol] = {
    Command.CONNECT: Protocol.NR_CONN,
    Command.HELO: Protocol.NR_HELO,
    Command.MAIL: Protocol.NR_MAIL,
    Command.RCPT: Protocol.NR_RCPT,
    Command.DATA: Protocol.NR_DATA,
    Command.UNKNOWN: Protocol.NR_UNKN,
    Command.HEADER: Protocol.NR_HDR,
    Command.EOH: Protocol.NR_EOH,
    Command.BODY: Protocol.NR_BODY,
}

NO_STEP_FLAG: dict[Command, Protocol] = {
    Command.CONNECT: Protocol.NOCONNECT,
    Command.HELO: Protocol.NOHELO,
    Command.MAIL: Protocol.NOMAIL,
    Command.RCPT: Protocol.NORCPT,
    Command.DATA: Protocol.NODATA,
    Command.UNKNOWN: Protocol.NOUNKNOWN,
    Command.HEADER: Protocol.NOHDRS,
    Command.EOH: Protocol.NOEOH,
    Command.BODY: Protocol.NOBODY,
}
