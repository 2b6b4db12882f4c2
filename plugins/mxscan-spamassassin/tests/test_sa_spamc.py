"""The SPAMC/1.5 codec without sockets, and the client against the real spamd."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import zlib

import pytest
from sa_support import CLEAN, FakeSpamd, free_port, read_request, spam_message, spamc

from mxscan import ScannerError, parse_address
from mxscan_spamassassin.client import ask_spamd, exchange
from mxscan_spamassassin.spamc import (
    MAX_HEAD,
    ProtocolError,
    Request,
    ResponseParser,
    SpamdError,
    SpamResult,
)

# -- requests -------------------------------------------------------------------


def test_requests_as_spamc_writes_them() -> None:
    assert Request("PING").to_bytes() == b"PING SPAMC/1.5\r\n\r\n"
    assert Request("HEADERS", b"abc", user="bob").to_bytes() == (
        b"HEADERS SPAMC/1.5\r\nContent-length: 3\r\nUser: bob\r\n\r\nabc"
    )
    tell = Request("TELL", b"m", headers={"Message-class": "spam", "Set": "local"})
    assert tell.to_bytes() == (
        b"TELL SPAMC/1.5\r\nContent-length: 1\r\nMessage-class: spam\r\nSet: local\r\n\r\nm"
    )
    packed = Request("CHECK", b"x" * 1000, compress=True).to_bytes()
    head, _, body = packed.partition(b"\r\n\r\n")
    assert head == b"CHECK SPAMC/1.5\r\nContent-length: %d\r\nCompress: zlib" % len(body)
    assert zlib.decompress(body) == b"x" * 1000


@pytest.mark.parametrize(
    "bad",
    [
        {"command": "EVAL"},
        {"command": "CHECK", "user": "bob\r\nSet: local"},
        {"command": "TELL", "headers": {"Bad Name": "x"}},
    ],
)
def test_requests_refuse_what_would_break_the_framing(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Request(**bad).to_bytes()  # type: ignore[arg-type]


# -- responses ------------------------------------------------------------------


def parse_all(data: bytes, step: int = 1) -> object:
    """Feed byte by byte (every split point), then EOF."""
    parser = ResponseParser()
    for i in range(0, len(data), step):
        done = parser.feed(data[i : i + step])
        if done is not None:
            return done
    return parser.eof()


HEADERS_ANSWER = (
    b"SPAMD/1.1 0 EX_OK\r\nContent-length: 11\r\nSpam: True ; 1004.2 / 5.0\r\n\r\nX-Spam: 1\r\n"
)


@pytest.mark.parametrize("step", [1, 7, 1000])
def test_a_headers_answer_at_any_split(step: int) -> None:
    response = parse_all(HEADERS_ANSWER, step)
    assert response.spam == SpamResult(True, 1004.2, 5.0)  # type: ignore[attr-defined]
    assert response.body == b"X-Spam: 1\r\n"  # type: ignore[attr-defined]
    assert response.version == "1.1"  # type: ignore[attr-defined]


def test_a_complete_answer_needs_no_eof() -> None:
    assert ResponseParser().feed(HEADERS_ANSWER) is not None


def test_pong_and_check_answers_end_at_eof() -> None:
    pong = parse_all(b"SPAMD/1.5 0 PONG\r\n")
    assert (pong.message, pong.body) == ("PONG", b"")  # type: ignore[attr-defined]
    check = parse_all(b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; -1.0 / 5.0\r\n\r\n")
    assert check.spam == SpamResult(False, -1.0, 5.0)  # type: ignore[attr-defined]
    symbols = parse_all(b"SPAMD/1.1 0 EX_OK\r\nContent-length: 9\r\n\r\nGTUBE,A_B")
    assert symbols.symbols == ("GTUBE", "A_B")  # type: ignore[attr-defined]


def test_a_compressed_answer_is_inflated() -> None:
    body = zlib.compress(b"GTUBE")
    answer = b"SPAMD/1.5 0 EX_OK\r\nCompress: zlib\r\nContent-length: %d\r\n\r\n" % len(body)
    assert parse_all(answer + body).symbols == ("GTUBE",)  # type: ignore[attr-defined]


def test_a_zlib_bomb_is_refused() -> None:
    body = zlib.compress(b"\0" * 10_000_000)
    answer = b"SPAMD/1.5 0 EX_OK\r\nCompress: zlib\r\nContent-length: %d\r\n\r\n" % len(body)
    parser = ResponseParser(max_body=1_000_000)
    with pytest.raises(ProtocolError, match="expands past"):
        parser.feed(answer + body)


def test_error_codes_are_spamd_errors() -> None:
    with pytest.raises(SpamdError) as caught:
        parse_all(b"SPAMD/1.0 76 Bad header line: FOO SPAMC/1.5\r\n")
    assert caught.value.code == 76
    assert str(caught.value) == "76 Bad header line: FOO SPAMC/1.5"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "without answering"),
        (b"HTTP/1.0 200 OK\r\n\r\n", "no SPAMD status line"),
        (b"SPAMD/1.1 0 EX_OK\r\nContent-length: 50\r\n\r\nshort", "Content-length said 50"),
        (b"SPAMD/1.1 0 EX_OK\r\nContent-length: 2\r\n\r\nlonger", "after the end"),
        (b"SPAMD/1.1 0 EX_OK\r\nContent-length: -1\r\n\r\n", "bad Content-length"),
        (b"SPAMD/1.1 0 EX_OK\r\nSpam: maybe ; x / y\r\n\r\n", "bad Spam header"),
        (b"SPAMD/1.1 0 EX_OK\r\nno colon here\r\n\r\n", "bad protocol header line"),
        (b"SPAMD/1.1 0 EX_OK\r\n" + b"X: " + b"y" * MAX_HEAD, "over"),
        (b"SPAMD/1.1 0 EX_OK\r\nContent-length: 99999999999\r\n\r\n", "over the limit"),
    ],
)
def test_garbage_is_a_protocol_error(data: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        parse_all(data, step=4096)


# -- the client against fakes and the real spamd --------------------------------


async def test_a_closed_port_is_a_connect_failure_the_next_address_may_take() -> None:
    address = parse_address(f"inet:127.0.0.1:{free_port()}")
    with pytest.raises(ScannerError, match=r"cannot reach spamd: inet:127\.0\.0\.1:\d+: .*refused"):
        await ask_spamd([address], CLEAN, timeout=2)


async def test_a_peer_that_is_not_spamd_is_a_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"+OK POP3 ready\r\n")
        writer.close()

    async with FakeSpamd(handler) as fake:
        with pytest.raises(ProtocolError, match="no SPAMD status line: b'\\+OK POP3 ready'"):
            await exchange(parse_address(fake.address), Request("PING"), 2)


async def test_the_request_is_half_closed_so_a_last_line_without_newline_is_read() -> None:
    """spamd reads by lines: without the half-close it waits for the end of a
    last line that has no newline, until the timeout (SA corpus spam/018)."""
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        seen.append(await reader.read())  # b"" only once the client half-closed
        writer.write(b"SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.0 / 5.0\r\n\r\n")
        writer.close()

    async with FakeSpamd(handler) as fake:
        response = await exchange(parse_address(fake.address), Request("CHECK", b"x\n\n0"), 5)
    assert response.spam == SpamResult(False, 0.0, 5.0)
    assert seen[1] == b""


@pytest.mark.spamd
async def test_every_command_against_the_real_spamd(spamd: str) -> None:
    if shutil.which("spamc") is None:
        pytest.fail("spamc not installed (Debian package spamc)")
    address = parse_address(spamd)
    data = spam_message() + b"last line without newline"
    pong = await exchange(address, Request("PING"), 30)
    assert (pong.version, pong.message, pong.body) == ("1.5", "PONG", b"")
    check = await exchange(address, Request("CHECK", data), 60)
    symbols = await exchange(address, Request("SYMBOLS", data, compress=True), 60)
    headers = await exchange(address, Request("HEADERS", data, user="nobody"), 60)
    # The same bytes through Debian's spamc give the same score and rules.
    score, _, threshold = spamc(spamd, "-c", data=data).partition("/")
    assert check.spam == SpamResult(True, float(score), float(threshold))
    assert check.body == b""
    assert set(symbols.symbols) == set(spamc(spamd, "-y", data=data).split(","))
    assert "GTUBE" in symbols.symbols
    assert headers.spam == check.spam
    assert b"\nX-Spam-Status: Yes, score=" in headers.body
    assert b"Buy now" not in headers.body  # HEADERS sends the header back, not the body
    ham = await exchange(address, Request("CHECK", CLEAN), 60)
    assert ham.spam is not None and not ham.spam.is_spam


@pytest.mark.spamd
async def test_tell_reports_what_spamd_says(spamd: str) -> None:
    """The private spamd runs with --allow-tell (the quarantine's learning tests
    need it) and use_bayes 0: TELL is answered EX_OK,
    parsed, not a hang or a garbage answer. A spamd without --allow-tell is
    test_sa_learn's refusal case."""
    request = Request("TELL", CLEAN, headers={"Message-class": "ham", "Set": "local"})
    response = await exchange(parse_address(spamd), request, 60)
    assert response.message == "EX_OK"


def test_the_plugin_imports_nothing_beyond_mxscan_and_the_standard_library() -> None:
    """Issue 19.8: aiospamc brought ten packages and a typer pin into every
    application that embeds mxscan; the plugin now needs none."""
    code = (
        "import sys; before = set(sys.modules); import mxscan_spamassassin; "
        "print('\\n'.join(sorted({m.split('.')[0] for m in set(sys.modules) - before})))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    allowed = set(sys.stdlib_module_names) | {"mxscan", "mxscan_spamassassin", "attrs", "attr"}
    foreign = [name for name in run.stdout.split() if name not in allowed]
    assert foreign == []


async def test_a_user_that_would_break_the_framing_is_a_scanner_error() -> None:
    address = parse_address(f"inet:127.0.0.1:{free_port()}")
    with pytest.raises(ScannerError, match="cannot ask spamd: SPAMC header User cannot hold"):
        await ask_spamd([address], CLEAN, timeout=2, user="bob\0x")
