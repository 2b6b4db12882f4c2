"""The core's MIME structure check: time per message and peak memory, for real
shapes and hostile ones, at growing sizes (time must grow linearly with the
body, memory not at all).

Run by ``nox -s bench``; prints figures, asserts nothing.
"""

from __future__ import annotations

import base64
import time
import tracemalloc
from collections.abc import Callable

from mxscan import Message, MimeLimits
from tests.support import hostile

LIMITS = MimeLimits()
UNLIMITED = MimeLimits(max_depth=10**9, max_parts=10**9, max_nesting=10**9)


def attachment(size: int) -> bytes:
    """A text part and one base64 attachment of ``size`` bytes: the common large mail."""
    data = base64.encodebytes(bytes(range(256)) * (size // 256 + 1))[: size * 4 // 3]
    return (
        b"From: a@example.org\r\nTo: b@example.com\r\nSubject: report\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\nsee the file\r\n"
        b'--b1\r\nContent-Type: application/pdf; name="r.pdf"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + data.replace(b"\n", b"\r\n") + b"--b1--\r\n"
    )


def measure(name: str, data: bytes, limits: MimeLimits, runs: int = 3) -> None:
    message = Message.from_bytes(data, spool_threshold=1 << 20)
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        exceeded = limits.check(message)
        best = min(best, time.perf_counter() - start)
    tracemalloc.start()
    limits.check(message)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    verdict = exceeded.limit if exceeded else "ok"
    rate = len(data) / best / 1e6
    print(
        f"{name:<34} {len(data) / 1e6:8.2f} MB  {best * 1000:9.2f} ms  {rate:7.0f} MB/s"
        f"  peak {peak / 1024:7.0f} KiB  {verdict}",
        flush=True,
    )
    message.close()


def main() -> None:
    print(f"{'message':<34} {'size':>11}  {'time':>12}  {'rate':>12}  {'memory':>12}")
    measure("plain text, 10 KB", b"Subject: x\r\n\r\n" + b"word " * 2000 + b"\r\n", LIMITS)
    for size in (1 << 20, 10 << 20, 50 << 20):
        measure(f"one attachment, {size >> 20} MiB", attachment(size), LIMITS)
    shapes: list[tuple[str, Callable[[], bytes], MimeLimits]] = [
        ("12,000 parts (stops at 5,001)", lambda: hostile.many_parts(False), LIMITS),
        ("depth 1,000 (stops at 21)", lambda: hostile.deep_multipart(False, 1000), LIMITS),
        ("depth 100,000 (stops at 21)", lambda: hostile.deep_multipart(False, 100_000), LIMITS),
    ]
    for name, build, limits in shapes:
        measure(name, build(), limits)
    for parts in (10_000, 100_000, 200_000):
        data = hostile.many_parts(False, parts)
        measure(f"{parts:,} parts, no limit", data, UNLIMITED)
    for depth in (1_000, 10_000, 50_000):
        data = hostile.deep_multipart(False, depth)
        measure(f"depth {depth:,}, no limit", data, UNLIMITED)
