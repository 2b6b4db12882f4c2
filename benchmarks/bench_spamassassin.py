"""Messages/second through the spamassassin plugin next to ``spamc -c``.

Both talk to the same spamd, on the same messages, in the same run, at
concurrency 1 and 8; spamd does the real work, so the plugin should be within a
few percent of spamc. Runs alternate (spamc, plugin, spamc, plugin, ...) so that
spamd's prefork scaling and the machine's drift hit both sides alike.

Then, against a spamd of the benchmark's own (the shared site config, so no
other client's load is counted), on the corpus's SpamAssassin sample: the rule
hits with and without this hop's synthetic ``Received:`` line (none, as before
issue 21; a trusted loopback client; an outside client), and the CPU time per
message of this process (mxscan: parsing, plugin, spamd client) next to spamd's
(parent and children, from /proc).

Environment: MXSCAN_SPAMD_INET (default inet:127.0.0.1:10783), MXSCAN_CORPUS
(default ../shared/corpus from the repo root), MXSCAN_BENCH_MESSAGES (messages
per run, default 40), MXSCAN_BENCH_ROUNDS (default 2), MXSCAN_BENCH_HITS
(messages for the rule-hit comparison, default 60; 0 for the whole sample).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks import sample_messages, spamassassin_sample
from mxscan import Envelope, InetAddress, Message, parse_address
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


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live children (spamd's preforked ones),
    plus what exited children left in the parent's cutime/cstime."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        this, parent = int(stat.parent.name), int(fields[1])
        if this == pid:
            total += sum(int(v) for v in fields[11:15]) / tick  # utime stime cutime cstime
        elif parent == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def envelope(client: str | None) -> Envelope | None:
    if client is None:
        return None
    return Envelope(
        sender="sender@example.org",
        recipients=("rcpt@example.com",),
        client_address=client,
        client_name="unknown",
        helo="client.example.org",
        queue_id="4BENCH0001",
        receiver="mx.example.com",
    )


VARIANTS = {
    "no Received line (before)": None,
    "line, client 127.0.0.1": "127.0.0.1",
    "line, client 198.51.100.7": "198.51.100.7",
}


async def hits_and_cpu(address: str, pid: int, messages: list[bytes], show: bool = True) -> None:
    scanner = SpamAssassin(address=address, timeout=120)
    hits: dict[str, Counter[str]] = {}
    for label, client in VARIANTS.items():
        counts: Counter[str] = Counter()
        spam = 0
        ours, theirs = time.process_time(), cpu_seconds(pid)
        for data in messages:
            verdict = await scanner.scan(Message.from_bytes(data, envelope=envelope(client)))
            counts.update(verdict.findings)
            spam += verdict.status.startswith("spam")
        ours, theirs = time.process_time() - ours, cpu_seconds(pid) - theirs
        hits[label] = counts
        if not show:
            continue
        print(
            f"spamassassin: {label:27}: {spam:3d}/{len(messages)} spam, "
            f"{sum(counts.values()):5d} rule hits; CPU per message: mxscan "
            f"{1000 * ours / len(messages):5.1f} ms, spamd {1000 * theirs / len(messages):6.1f} ms"
        )
    await scanner.aclose()
    if not show:
        return
    before = hits["no Received line (before)"]
    rules = sorted(
        {r for c in hits.values() for r in c if any(c[r] != before[r] for c in hits.values())}
    )
    print("spamassassin: rules whose hit count the synthetic line changes:")
    print("  " + f"{'rule':32}" + "".join(f"{label[:27]:>28}" for label in VARIANTS))
    for rule in rules:
        print("  " + f"{rule:32}" + "".join(f"{hits[label][rule]:28d}" for label in VARIANTS))


async def relay_bench() -> None:
    from tests.support.own_spamd import own_spamd

    data, folder = spamassassin_sample()
    if not data:
        print(f"spamassassin: rule hits: no corpus at {folder}; skipped")
        return
    limit = int(os.environ.get("MXSCAN_BENCH_HITS", "60"))
    step = max(1, len(data) // limit) if limit else 1
    sample = data[::step][: limit or None]
    print(f"spamassassin: rule hits on {len(sample)} of {len(data)} messages from {folder}")
    with own_spamd("# the shared settings only\n") as spamd:
        await hits_and_cpu(spamd.address, spamd.pid, sample[:2], show=False)  # warm up
        await hits_and_cpu(spamd.address, spamd.pid, sample)


def main() -> int:
    status = asyncio.run(bench())
    asyncio.run(relay_bench())
    return status


if __name__ == "__main__":
    sys.exit(main())
