"""The learn() hook's TELL request and its failure modes, against fake spamds
(the real spamd learning is tested in tests/quarantine/test_quarantine_learn.py)."""

from __future__ import annotations

import pytest
from sa_support import CLEAN, Canned, FakeSpamd, free_port, spam_message

from mxscan import Message, ScannerError
from mxscan_spamassassin import SpamAssassin


async def test_tell_request_and_a_did_set_answer() -> None:
    canned = Canned(b"SPAMD/1.1 0 EX_OK\r\nDidSet: local\r\n\r\n")
    async with FakeSpamd(canned) as fake:
        await SpamAssassin(address=fake.address, timeout=5, user="bob").learn(
            Message.from_bytes(CLEAN), spam=False
        )
    (request,) = canned.requests
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"TELL SPAMC/1.5"
    assert b"Message-class: ham" in lines and b"Set: local" in lines and b"User: bob" in lines
    assert body == CLEAN


async def test_spamd_without_allow_tell_is_named() -> None:
    canned = Canned(b"SPAMD/1.1 77 EX_NOPERM\r\n\r\n")
    async with FakeSpamd(canned) as fake:
        scanner = SpamAssassin(address=fake.address, timeout=5)
        with pytest.raises(ScannerError, match=r"could not learn the message: 77 .*--allow-tell"):
            await scanner.learn(Message.from_bytes(spam_message()), spam=True)


async def test_learn_down_and_oversize() -> None:
    address = f"inet:127.0.0.1:{free_port()}"
    with pytest.raises(ScannerError, match=rf"cannot reach spamd: {address}"):
        await SpamAssassin(address=address, timeout=5).learn(Message.from_bytes(CLEAN), True)
    small = SpamAssassin(address=address, timeout=5, max_size=10)
    with pytest.raises(ScannerError, match="over max_size 10: not learned"):
        await small.learn(Message.from_bytes(CLEAN), spam=True)
