"""Against the real private clamd (``bash scripts/daemons start clamd``).

The EICAR test file is assembled at run time (clamav_support.EICAR) and wrapped the way
viruses arrive: a base64 attachment, inside a zip, inside a forwarded message.
"""

from __future__ import annotations

import asyncio
import base64
import io
import zipfile
from pathlib import Path

import pytest
from clamav_support import EICAR, EICAR_NAME

from mxscan import Action, Message, Pipeline, ScannerError, Step, Verdict
from mxscan_clamav import ClamAV, ClamdClient, __version__

pytestmark = pytest.mark.clamd

GUARD = 60


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def with_attachment(
    content_type: bytes, payload: bytes, *, encoding: bytes = b"base64", extra: bytes = b""
) -> bytes:
    body = b64(payload) if encoding == b"base64" else payload
    return (
        b"From: sender@example.org\r\n"
        b"To: rcpt@example.net\r\n"
        b"Subject: see attached\r\n" + extra + b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="outer-b"\r\n'
        b"\r\n"
        b"--outer-b\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
        b"\r\n"
        b"Please find the file attached.\r\n"
        b"--outer-b\r\n"
        b"Content-Type: " + content_type + b"\r\n"
        b"Content-Transfer-Encoding: " + encoding + b"\r\n"
        b"Content-Disposition: attachment\r\n"
        b"\r\n" + body + b"--outer-b--\r\n"
    )


def eicar_attachment(**kwargs: bytes) -> bytes:
    return with_attachment(b'application/octet-stream; name="eicar.com"', EICAR, **kwargs)


def eicar_zip(**kwargs: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("readme.txt", "nothing to see here\n")
        archive.writestr("tools/eicar.com", EICAR)
    return with_attachment(b'application/zip; name="tools.zip"', buffer.getvalue(), **kwargs)


def eicar_forwarded(**kwargs: bytes) -> bytes:
    inner = eicar_attachment()
    return with_attachment(b"message/rfc822", inner, encoding=b"7bit", **kwargs)


@pytest.fixture(params=["unix", "inet"])
def address(request: pytest.FixtureRequest, clamd_addresses: list[str]) -> str:
    return clamd_addresses[0] if request.param == "unix" else clamd_addresses[1]


async def scan(scanner: ClamAV, data: bytes) -> tuple[Message, Verdict]:
    msg = Message.from_bytes(data)
    async with asyncio.timeout(GUARD):
        return msg, await scanner.scan(msg)


async def test_ping_and_version(address: str) -> None:
    client = ClamdClient(address)
    async with asyncio.timeout(GUARD):
        await client.ping()
        assert (await client.version()).startswith("ClamAV ")


async def test_scanner_ping_hook_fails_over_and_names_a_dead_clamd(
    address: str, closed_port: str
) -> None:
    """The health probe mxscan's metrics call: a dead first address is skipped like
    in a scan; with only dead ones it is a ScannerError naming the address."""
    async with asyncio.timeout(GUARD):
        await ClamAV(address=[closed_port, address]).ping()
        with pytest.raises(ScannerError, match=closed_port.removeprefix("inet:")):
            await ClamAV(address=closed_port).ping()


@pytest.mark.parametrize(
    "build", [eicar_attachment, eicar_zip, eicar_forwarded], ids=["base64", "zip", "rfc822"]
)
async def test_eicar_is_found(address: str, build) -> None:  # type: ignore[no-untyped-def]
    scanner = ClamAV("clamav", address=address, hostname="mx.test")
    # The sender's own "X-Virus-Status: Clean" must not survive.
    msg, verdict = await scan(scanner, build(extra=b"X-Virus-Status: Clean\r\n"))
    assert verdict.action is Action.DISCARD
    assert verdict.findings == (EICAR_NAME,)
    assert verdict.status == f"infected({EICAR_NAME})"
    assert EICAR_NAME in verdict.reason
    edited = msg.apply(verdict.edits)
    assert edited.get_all("X-Virus-Status") == [f"Infected ({EICAR_NAME})"]
    assert edited.get_all("X-Virus-Scanned") == [f"mxscan-clamav {__version__} at mx.test"]


async def test_clean_attachment_is_clean(address: str) -> None:
    scanner = ClamAV("clamav", address=address)
    _, verdict = await scan(
        scanner, with_attachment(b"application/octet-stream", EICAR[:-1] + b"#")
    )
    assert verdict.action is Action.ACCEPT and verdict.status == "clean"


async def test_eicar_at_the_end_of_a_spooled_multi_megabyte_message(address: str) -> None:
    """The body is spooled to disk and streamed in frames: the last frame counts too."""
    filler = b"".join(b"line %07d of a long text part\r\n" % i for i in range(200_000))
    data = with_attachment(b"text/plain", filler, encoding=b"7bit")
    data = data.replace(
        b"--outer-b--\r\n",
        b"--outer-b\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b64(EICAR) + b"--outer-b--\r\n",
    )
    msg = Message.from_bytes(data)
    assert msg.body.spooled and msg.size > 6_000_000
    async with asyncio.timeout(GUARD):
        verdict = await ClamAV("clamav", address=address).scan(msg)
    assert verdict.findings == (EICAR_NAME,)


def corpus_sample(corpus: Path) -> list[Path]:
    """Every 4th message-like file of the corpus, in a stable order."""
    skip = {".json", ".xml", ".md", ".tsv", ".jsonl", ".ref", ".map", ".key", ".out", ".in"}
    files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix not in skip)
    return files[::4]


@pytest.mark.corpus
async def test_corpus_messages_are_clean(corpus: Path, clamd_addresses: list[str]) -> None:
    scanner = ClamAV("clamav", address=clamd_addresses)
    sample = corpus_sample(corpus)
    assert len(sample) > 100
    semaphore = asyncio.Semaphore(4)

    async def one(path: Path) -> tuple[Path, str]:
        async with semaphore:
            msg = Message.from_file(path)
            try:
                verdict = await scanner.scan(msg)
            finally:
                msg.close()
            return path, verdict.status

    async with asyncio.timeout(300):
        results = await asyncio.gather(*(one(p) for p in sample))
    assert [(str(p), s) for p, s in results if s != "clean"] == []


async def test_failover_to_a_live_clamd(
    clamd_addresses: list[str], dead_unix: str, closed_port: str
) -> None:
    scanner = ClamAV("clamav", address=[dead_unix, closed_port, clamd_addresses[1]])
    for _ in range(3):  # each scan starts at a different address; all end at the live one
        _, verdict = await scan(scanner, eicar_attachment())
        assert verdict.findings == (EICAR_NAME,)


async def test_all_dead_is_the_pipelines_on_error(dead_unix: str, closed_port: str) -> None:
    for on_error in (Action.TEMPFAIL, Action.REJECT):
        step = Step(ClamAV("clamav", address=[dead_unix, closed_port]), on_error=on_error)
        async with asyncio.timeout(GUARD):
            result = await Pipeline([[step]]).run(Message.from_bytes(eicar_attachment()))
        assert result.action is on_error
        assert "no clamd reachable" in result.verdicts[0].reason


@pytest.mark.parametrize("transport", ["unix", "inet"])
@pytest.mark.parametrize(
    ("on_oversize", "action"),
    [("accept-and-log", Action.ACCEPT), ("tempfail", Action.TEMPFAIL), ("reject", Action.REJECT)],
)
async def test_over_stream_max_length(
    small_clamd: dict[str, str], transport: str, on_oversize: str, action: Action
) -> None:
    """clamd (StreamMaxLength 1M) answers and hangs up mid-stream; the answer is
    read despite the broken pipe and becomes the on_oversize outcome."""
    scanner = ClamAV("clamav", address=small_clamd[transport], on_oversize=on_oversize)
    data = with_attachment(b"application/octet-stream", bytes(3_000_000))
    _, verdict = await scan(scanner, data)
    assert verdict.action is action
    assert verdict.status == "skipped(oversize)"
    reason = verdict.reason
    assert "StreamMaxLength" in reason and "INSTREAM size limit exceeded" in reason
    assert small_clamd[transport] in reason


async def test_under_stream_max_length_is_scanned(small_clamd: dict[str, str]) -> None:
    scanner = ClamAV("clamav", address=small_clamd["unix"])
    _, verdict = await scan(scanner, eicar_attachment())
    assert verdict.findings == (EICAR_NAME,)
