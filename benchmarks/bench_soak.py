"""Soak: the ``mxscan milter`` process's memory and file descriptors over 10,000
messages.

The milter protocol is spoken directly over its unix socket (the MTA side of
tests/support/mta.py), 8 connections at a time, each carrying 200
messages before it is replaced, so the run measures mxscan rather than Postfix. The
pipeline is examples/mxscan.toml without spamassassin (inbound header rules, clamav
against the private clamd, the seed's header_checks after it): spamd would make a
10,000-message run take the better part of an hour and measures spamd, not mxscan.
Messages rotate through a deterministic sample of the shared corpus (line endings
made CRLF, as Postfix sends them), GTUBE, EICAR, and every 500th a 2 MB message
(spooled to disk).

Printed: RSS after a 100-message warm-up, after 1,000, 2,000, 5,000 and 10,000 messages,
the growth between 1,000 and 10,000 (should be noise), the peak (VmHWM), and the
open file descriptors before and after (must be equal). ``MXSCAN_SOAK_N`` changes
the 10,000.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

from benchmarks import CORPUS
from tests.support.daemons import clamd_alive, eicar_message, gtube_message
from tests.support.faults import fd_targets, status_kib
from tests.support.milter import MilterProcess, seed_config, socket_dir
from tests.support.mta import MtaClient, mail, message_packets, rcpt

REPO = Path(__file__).resolve().parents[1]

CONNECTIONS = 8
PER_CONNECTION = 200
FINAL = {b"c", b"a", b"r", b"t", b"d", b"y", b"4", b"f"}


def messages() -> list[bytes]:
    out = [gtube_message(), eicar_message("base64"), eicar_message("zip")]
    files = sorted(p for p in CORPUS.rglob("*") if p.suffix in (".eml", ".msg", ".txt"))
    for path in files[::7]:
        raw = re.sub(rb"\r?\n", b"\r\n", path.read_bytes())
        if b"\r\n\r\n" in raw and len(raw) < 2_000_000 and re.match(rb"[!-9;-~]+:", raw):
            out.append(raw)
    return out


def big() -> bytes:
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-+01234567\r\n"
    return b"From: a@example.org\r\nSubject: big\r\n\r\n" + line * (2 * 1024 * 1024 // len(line))


class Soak:
    def __init__(self, path: str, corpus: list[bytes]) -> None:
        self.path = path
        self.corpus = corpus
        self.large = big()
        self.sent = 0
        self.actions: dict[bytes, int] = {}

    def next_message(self) -> bytes:
        self.sent += 1
        if self.sent % 500 == 0:
            return self.large
        return self.corpus[self.sent % len(self.corpus)]

    async def connection(self, count: int) -> None:
        client = await MtaClient.open_unix(self.path)
        await client.handshake()
        try:
            for _ in range(count):
                raw = self.next_message()
                await client.send(mail("s@example.org"), rcpt("r@example.com"))
                code, _ = await client.read(60)
                assert code == b"c", code
                await client.send(*message_packets(raw))
                while True:
                    code, _ = await client.read(120)
                    if code in FINAL:
                        break
                self.actions[code] = self.actions.get(code, 0) + 1
        finally:
            await client.close()

    async def run(self, total: int) -> None:
        queue = [PER_CONNECTION] * (total // PER_CONNECTION)
        if total % PER_CONNECTION:
            queue.append(total % PER_CONNECTION)
        pending: set[asyncio.Task[None]] = set()
        while queue or pending:
            while queue and len(pending) < CONNECTIONS:
                pending.add(asyncio.ensure_future(self.connection(queue.pop())))
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()


def main() -> None:
    if not clamd_alive():
        raise RuntimeError("clamd is not answering: run `bash scripts/daemons start`")
    total = int(os.environ.get("MXSCAN_SOAK_N", "10000"))
    milter = MilterProcess(seed_config(spamassassin=False), socket_dir(), name="soak")
    milter.start()
    try:
        soak = Soak(str(milter.sock), messages())
        pid = milter.pid
        asyncio.run(soak.run(100))
        time.sleep(0.5)
        fds_before = fd_targets(pid)
        rss_warm = status_kib(pid, "VmRSS")
        start = time.monotonic()
        asyncio.run(soak.run(900))
        rss_1k = status_kib(pid, "VmRSS")
        series = [(1000, rss_1k)]
        for mark in (2000, 5000, total):
            if mark > soak.sent and mark <= total:
                asyncio.run(soak.run(mark - soak.sent))
                series.append((soak.sent, status_kib(pid, "VmRSS")))
        took = time.monotonic() - start
        time.sleep(0.5)
        rss_end = status_kib(pid, "VmRSS")
        fds_after = fd_targets(pid)
        hwm = status_kib(pid, "VmHWM")
        print(f"soak: {soak.sent} messages ({len(soak.corpus)} distinct + a 2 MB one every 500) "
              f"over {CONNECTIONS} connections x {PER_CONNECTION} messages, "
              f"{(soak.sent - 100) / took:.0f} msg/s; final replies {dict((k.decode(), v) for k, v in soak.actions.items())}")  # fmt: skip
        print(f"soak: RSS {rss_warm / 1024:.1f} MiB after 100, {rss_1k / 1024:.1f} MiB after 1,000, "
              f"{rss_end / 1024:.1f} MiB after {soak.sent:,} "
              f"(growth 1,000 -> {soak.sent:,}: {(rss_end - rss_1k) / 1024:+.1f} MiB); peak {hwm / 1024:.1f} MiB")  # fmt: skip
        print(
            "soak: RSS by messages: "
            + ", ".join(f"{n:,}: {kib / 1024:.1f} MiB" for n, kib in series)
        )
        print(f"soak: open fds {len(fds_before)} before, {len(fds_after)} after "
              f"({'equal' if fds_before == fds_after else 'DIFFERENT: ' + str(sorted(set(fds_after) - set(fds_before)))})")  # fmt: skip
        if "Traceback" in milter.log():
            print("soak: WARNING: traceback in the milter log")
    finally:
        milter.stop()


if __name__ == "__main__":
    main()
