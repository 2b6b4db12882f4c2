"""Header rules throughput: messages/second for the seed's header_checks file
and for a 100-rule file, on a 10 KB message with 20 headers.

Run by ``nox -s bench``; prints figures, asserts nothing.
"""

from __future__ import annotations

import asyncio
import time

from benchmarks import REPO
from mxscan import Message
from mxscan_header_rules import HeaderRules

#: The seed's header_checks file, as shipped in examples/ (comments included).
SEED = (REPO / "examples" / "header_checks").read_text()


def hundred_rules() -> str:
    """100 realistic rules that mostly do not match (the common case)."""
    rules = []
    for i in range(40):
        rules.append(rf"/^Subject:.*\b(spamword{i}|offer{i})\b/ REJECT spam {i}")
    for i in range(30):
        rules.append(rf'/^Content-(Type|Disposition):.*name\s*=\s*"?.*\.ext{i}"?/ REJECT ext')
    for i in range(20):
        rules.append(rf"/^Received:.*\[192\.0\.{i}\.\d+\]/ WARN listed")
    for i in range(9):
        rules.append(rf"/^X-Mailer:\s*BadMailer{i}/ DISCARD")
    rules.append(r"/^X-Spam-Level:/ IGNORE")
    return "\n".join(rules) + "\n"


def message() -> bytes:
    headers = [
        b"Received: from relay%d.example.net (relay%d.example.net [198.51.100.%d])\r\n"
        b"\tby mx.example.com (Postfix) with ESMTPS id 4AB%02d" % (i, i, i, i)
        for i in range(8)
    ]
    headers += [
        b"From: Alice <alice@example.org>",
        b"To: Bob <bob@example.com>",
        b"Subject: quarterly report",
        b"Date: Mon, 1 Dec 2025 10:00:00 +0000",
        b"Message-ID: <bench@example.org>",
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Transfer-Encoding: 8bit",
        b"X-Mailer: bench 1.0",
        b"X-Spam-Level: **",
        b"X-Spam-Status: No, score=2.1",
        b"X-Virus-Scanned: clamav",
    ]
    assert len(headers) == 20
    head = b"\r\n".join(headers) + b"\r\n\r\n"
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do.\r\n"
    body = line * ((10_000 - len(head)) // len(line) + 1)
    return head + body[: 10_000 - len(head)]


def measure(scanner: HeaderRules, data: bytes, seconds: float = 1.5) -> tuple[float, float]:
    """(messages/s calling check() directly, messages/s through async scan())."""
    msg = Message.from_bytes(data)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        scanner.check(msg)
        n += 1
    sync_rate = n / (time.perf_counter() - start)

    async def loop() -> float:
        count = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            await asyncio.gather(*(scanner.scan(msg) for _ in range(16)))
            count += 16
        return count / (time.perf_counter() - t0)

    return sync_rate, asyncio.run(loop())


def main() -> None:
    data = message()
    t0 = time.perf_counter()
    seed = HeaderRules("seed", rules=SEED)
    t1 = time.perf_counter()
    hundred = HeaderRules("hundred", rules=hundred_rules())
    t2 = time.perf_counter()
    print(f"header-rules: message {len(data)} bytes, 20 headers")
    print(
        f"header-rules: table load+compile: seed {1000 * (t1 - t0):.2f} ms, 100 rules {1000 * (t2 - t1):.2f} ms"
    )
    for label, scanner in (("seed file (8 rules)", seed), ("100-rule file", hundred)):
        sync_rate, async_rate = measure(scanner, data)
        print(
            f"header-rules: {label}: {sync_rate:,.0f} msg/s check(), {async_rate:,.0f} msg/s scan()"
        )


if __name__ == "__main__":
    main()
