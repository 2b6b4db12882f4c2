"""Messages/second through the spamassassin plugin next to ``spamc -c``.

Both talk to the same spamd, on the same messages, in the same run, at
concurrency 1 and 8; spamd does the real work, so the plugin should be within a
few percent of spamc. Runs alternate (spamc, plugin, spamc, plugin, ...) so that
spamd's prefork scaling and the machine's drift hit both sides alike.

Environment: MXSCAN_SPAMD_INET (default inet:127.0.0.1:10783), MXSCAN_CORPUS
(default ../shared/corpus from the repo root), MXSCAN_BENCH_MESSAGES (messages
per run, default 40), MXSCAN_BENCH_ROUNDS (default 2).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from benchmarks import sample_messages
from mxscan import InetAddress, Message, parse_address
from mxscan_spamassassin import SpamAssassin

FALLBACK = [
    (
        b"Received: from localhost (localhost [127.0.0.1])\r\n\tby mx.example.net (Postfix)"
        b" with ESMTP id %d\r\nFrom: alice@example.com\r\nTo: bob@example.net\r\n"
        b"Subject: note %d\r\nDate: Sat, 28 Nov 2026 04:00:00 +0000\r\n"
        b"Message-ID: <%d.bench@example.com>\r\n\r\n"
        % (i, i, i)
        + b"Hello Bob, this is message number %d of the benchmark.\r\n" % i * 20
    )
    for i in range(20)
]


async def run_at(
    concurrency: int, items: list[bytes], one: Callable[[bytes], Awaitable[None]]
) -> float:
    """Messages per second with ``concurrency`` requests in flight."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for item in items:
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            await one(queue.get_nowait())

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(items) / (time.perf_counter() - start)


def spamc_call(address: InetAddress) -> Callable[[bytes], Awaitable[None]]:
    spamc = shutil.which("spamc")
    if spamc is None:
        raise RuntimeError("spamc not found (apt-get install spamc)")

    async def one(data: bytes) -> None:
        proc = await asyncio.create_subprocess_exec(
            spamc, "-c", "-d", address.host, "-p", str(address.port), "-t", "60",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate(data)
        if b"/" not in out or out.startswith(b"0/0"):
            raise RuntimeError(f"spamc failed: {out!r}")

    return one


def plugin_call(scanner: SpamAssassin) -> Callable[[bytes], Awaitable[None]]:
    async def one(data: bytes) -> None:
        # Parsing is part of mxscan's cost, so it is inside the timed call.
        await scanner.scan(Message.from_bytes(data))

    return one


async def bench() -> int:
    text = os.environ.get("MXSCAN_SPAMD_INET", "inet:127.0.0.1:10783")
    address = parse_address(text)
    if not isinstance(address, InetAddress):
        raise RuntimeError(f"spamc needs an inet address, got MXSCAN_SPAMD_INET={text}")
    count = int(os.environ.get("MXSCAN_BENCH_MESSAGES", "40"))
    rounds = int(os.environ.get("MXSCAN_BENCH_ROUNDS", "2"))
    messages, source = sample_messages(count, FALLBACK)
    scanner = SpamAssassin(address=text, timeout=120)
    spamc, plugin = spamc_call(address), plugin_call(scanner)
    await plugin(messages[0])  # fails early, naming the address, when spamd is down
    average = sum(map(len, messages)) / len(messages) / 1024
    print(f"spamassassin: {count} messages per run (avg {average:.1f} KiB) from {source}")
    print(f"spamassassin: spamd {text}, {rounds} alternating rounds, median shown")
    for concurrency in (1, 8):
        await run_at(concurrency, messages[: concurrency * 2], spamc)  # let spamd fork children
        figures: dict[str, list[float]] = {"spamc": [], "plugin": []}
        for _ in range(rounds):
            figures["spamc"].append(await run_at(concurrency, messages, spamc))
            figures["plugin"].append(await run_at(concurrency, messages, plugin))
        ref = statistics.median(figures["spamc"])
        ours = statistics.median(figures["plugin"])
        print(
            f"spamassassin: concurrency {concurrency}: spamc -c {ref:7.1f} msg/s"
            f"   mxscan plugin {ours:7.1f} msg/s   ({100 * ours / ref:5.1f} % of spamc)"
        )
    await scanner.aclose()
    return 0


def main() -> int:
    return asyncio.run(bench())


if __name__ == "__main__":
    sys.exit(main())
