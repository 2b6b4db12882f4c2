"""The milter's log line with hostile MTA and sender input (issues 13.7, 19.1, 19.2):
a real server on a unix socket, driven by the tests' own MTA, logging through
``setup_logging`` to stderr, and the line read back with a logfmt parser."""

from __future__ import annotations

from pathlib import Path

import logfmtkv
import pytest

from mxscan.adapters.milter.server import MilterServer
from mxscan.addresses import UnixAddress
from mxscan.logline import setup_logging
from tests.support import mta, scanners

FORGED_QID = "4QID\nFORGED1: action=accept\x1b[2J\x07"
RAW = b'Subject: discard-me" action=accept x="\r\nMessage-ID: <m1@example.org>\r\n\r\nbody\r\n'


async def test_hostile_queue_id_macro_and_header_cannot_forge_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:1")  # no time stamp prefix: the line as it is
    setup_logging("stderr")
    sock = str(tmp_path / "milter.sock")
    server = MilterServer(scanners.engine(scanners.SubjectRule()))
    await server.listen(UnixAddress(sock))
    try:
        client = await mta.MtaClient.open_unix(sock)
        await client.handshake()
        await client.send(
            mta.macro(b"C", **{"{client_addr}": "192.0.2.1", "{client_name}": "evil]\n["}),
            mta.connect(),
            mta.helo(),
            mta.mail("s@example.org"),
            mta.rcpt("r@example.net"),
        )
        assert await client.read() == (b"c", b"")
        packets = mta.message_packets(RAW)
        await client.send(*packets[:-1], mta.macro(b"E", i=FORGED_QID), packets[-1])
        replies = await client.read_until_final()
        assert replies[-1] == (b"d", b"")
        await client.send(mta.QUIT)
        await client.close()
    finally:
        await server.stop(1)
    lines = [x for x in capsys.readouterr().err.splitlines() if "subject=" in x]
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.isprintable() and line.isascii(), repr(line)
    head, _, rest = line.partition(": ")
    assert head == "4QID\\x0aFORGED1:\\x20action\\x3daccept\\x1b[2J\\x07"
    pairs = logfmtkv.parse_pairs(rest, strict=True)
    keys = [p.key for p in pairs]
    assert len(keys) == len(set(keys)), line
    fields = {p.key: p.value for p in pairs}
    assert fields["action"] == "discard"
    assert fields["subject"] == "discard"
    assert fields["from"] == "<s@example.org>"
    assert fields["to"] == "<r@example.net>"
    assert fields["size"] == str(len(RAW))
    assert fields["message-id"] == "<m1@example.org>"
    assert fields["client"] == "evil]\n[[192.0.2.1]"
    assert float(str(fields["elapsed"])) >= 0
