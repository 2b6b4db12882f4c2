"""Peak memory of ``mxscan milter`` when a scanner replaces a 100 MB body.

The header-rules plugin edits a MIME part header inside the body (as cleanup(8)
does), so the milter must send Postfix the whole new body as SMFIR_REPLBODY
packets. The new body is built in a spool file and streamed to the MTA one packet
at a time, so the milter's peak RSS (VmHWM) must not grow with the body: this
prints it after a 10 KB message and after a 100 MB one, next to the time taken.

Environment: MXSCAN_BENCH_BODY_MB sets the big message's size (default 100).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import vmhwm_kib

REPO = Path(__file__).resolve().parent.parent

CONFIG = """
[scanner.parts]
plugin = "header-rules"
rules = ""
mime_rules = "/^Content-Description: strip-me/ IGNORE"

[[stage]]
run = ["parts"]
"""


def multipart(size: int) -> bytes:
    """A two-part message whose second part has the header the rule strips."""
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ab\r\n"
    text = line * max(1, size // len(line))
    return (
        b"From: <a@example.org>\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b0"\r\n\r\n'
        b"--b0\r\nContent-Type: text/plain\r\n\r\n" + text + b"--b0\r\n"
        b"Content-Type: text/plain\r\nContent-Description: strip-me\r\n\r\nend\r\n--b0--\r\n"
    )


async def send(sock: str, message: bytes) -> tuple[int, int]:
    """One message; returns (REPLBODY bytes received, REPLBODY packets)."""
    from tests.support import mta

    client = await mta.MtaClient.open_unix(sock)
    try:
        await client.handshake()
        await client.send(mta.mail("a@example.org"), mta.rcpt("b@example.net"))
        await client.read()
        await client.send(*mta.message_packets(message))
        received = packets = 0
        while True:
            code, data = await client.read(wait=300)
            if code == b"b":
                received += len(data)
                packets += 1
            elif code in (b"c", b"a", b"r", b"t", b"d", b"y"):
                if code != b"c":
                    raise RuntimeError(f"milter answered {code!r} {data!r}")
                return received, packets
    finally:
        await client.close()


def main() -> None:
    size = int(float(os.environ.get("MXSCAN_BENCH_BODY_MB", "100")) * 1000 * 1000)
    with tempfile.TemporaryDirectory(prefix="mxscan-bench-body-") as tmp:
        config = Path(tmp) / "mxscan.toml"
        config.write_text(CONFIG)
        sock = Path(tmp) / "milter.sock"
        log = Path(tmp) / "milter.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mxscan", "milter", "--config", str(config),
                 "--listen", f"unix:{sock}"],
                stdout=out, stderr=out, env={**os.environ, "TMPDIR": tmp},
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while "ready (pid" not in log.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mxscan milter did not start: {log.read_text()}")
                time.sleep(0.05)
            small = multipart(10_000)
            got, _ = asyncio.run(send(str(sock), small))
            if got != len(small.split(b"\r\n\r\n", 1)[1]) - len(
                b"Content-Description: strip-me\r\n"
            ):
                raise RuntimeError("the small message's body was not replaced as expected")
            base = vmhwm_kib(proc.pid)
            big = multipart(size)
            start = time.perf_counter()
            got, packets = asyncio.run(send(str(sock), big))
            took = time.perf_counter() - start
            peak = vmhwm_kib(proc.pid)
            del big
        finally:
            proc.terminate()
            proc.wait(30)
        print(f"milter peak RSS after a 10 KB message with a replaced body: {base / 1024:.1f} MiB")
        print(
            f"after a {size / 1e6:.0f} MB message whose body was replaced "
            f"({got / 1e6:.0f} MB in {packets} SMFIR_REPLBODY packets, {took:.1f}s): "
            f"{peak / 1024:.1f} MiB (+{(peak - base) / 1024:.1f} MiB)"
        )


if __name__ == "__main__":
    main()
