"""Requests/second and median latency of ``mxscan http`` (rspamd's /checkv2) next to
the same configuration in-process (``PolicyRouter.scan``) and behind ``mxscan milter``.

Setups, each a separate server process pinned to one CPU (``taskset -c 0``):

* no-op      - one scanner that returns at once (the HTTP layer's own cost);
* clamav     - the clamav scanner only;
* clamav+sa  - clamav and spamassassin in one stage.

Clients (this process, asyncio, one keep-alive connection per concurrent client):

* http       - POST /checkv2 with rspamd's headers, Content-Length, 10 KB message;
* milter     - a minimal milter client (OPTNEG once, then MAIL/RCPT/headers/body/EOB
               per message on the same connection), against ``mxscan milter`` with
               the same configuration;
* in-process - ``PolicyRouter.scan(Message.from_bytes(...))`` in this process, no I/O.

rspamd's own /checkv2 (its normal worker) is measured with the same HTTP client when
a private rspamd runs (``MXSCAN_RSPAMD_INET`` in the environment or in
$MXSCAN_RUN_DIR/env, as scripts/daemons writes it once issue 18's rspamd is merged);
otherwise the row says it is missing.

Each at concurrency 4 and 16. Goal (issue 16): no-op >= 3,000 requests/s on one core
for a 10 KB message. Environment: MXSCAN_BENCH_HTTP_N (requests per no-op run,
default 6000; daemon-backed runs use a tenth), the daemon addresses as for the tests.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import struct
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import pytest

from mxscan import Message, load_config
from tests.support.daemons import (
    clamd_alive,
    clamd_unix,
    parse_address,
    run_dir,
    spamd_alive,
    spamd_inet,
)
from tests.support.httpd import HttpProcess
from tests.support.milter import MilterProcess, dump_toml, install_slowplugin, plain_config

REPO = Path(__file__).resolve().parent.parent

CONCURRENCY = (4, 16)


def message_10k() -> bytes:
    head = (
        b"From: alice@example.org\r\nTo: rcpt@example.com\r\nSubject: benchmark\r\n"
        b"Date: Wed, 02 Dec 2026 12:00:00 +0000\r\nMessage-ID: <b1@example.org>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    )
    line = b"Hello Bob, this is a line of an ordinary benchmark message body.\r\n"
    return head + line * ((10 * 1024 - len(head)) // len(line))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process: its CPU cost whatever else the machine runs."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def configs() -> dict[str, dict[str, object]]:
    return {
        "no-op": plain_config({"noop": {"plugin": "sleep", "seconds": 0}}),
        "clamav": plain_config({"clamav": {"plugin": "clamav", "address": clamd_unix()}}),
        "clamav+sa": plain_config(
            {
                "clamav": {"plugin": "clamav", "address": clamd_unix()},
                "spamassassin": {"plugin": "spamassassin", "address": spamd_inet()},
            }
        ),
    }


# -- clients ---------------------------------------------------------------------


async def _timed(n: int, concurrency: int, worker: Callable[[int, list[float]], Awaitable[None]]):  # type: ignore[no-untyped-def]
    latencies: list[float] = []
    shares = [n // concurrency + (i < n % concurrency) for i in range(concurrency)]
    start = time.perf_counter()
    await asyncio.gather(*(worker(share, latencies) for share in shares))
    elapsed = time.perf_counter() - start
    return n / elapsed, statistics.median(latencies) * 1000


async def http_client(port: int, data: bytes, n: int, concurrency: int):  # type: ignore[no-untyped-def]
    request = (
        b"POST /checkv2 HTTP/1.1\r\nHost: mxscan\r\nFrom: alice@example.org\r\n"
        b"Rcpt: rcpt@example.com\r\nIp: 192.0.2.1\r\nHelo: mail.example.org\r\n"
        b"Queue-Id: BENCH\r\nContent-Length: %d\r\n\r\n" % len(data)
    ) + data

    async def worker(count: int, latencies: list[float]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(count):
            t = time.perf_counter()
            if writer.is_closing():  # the server closed after its answer (rspamd does)
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            if not head.startswith(b"http/1.1 200"):
                raise RuntimeError(f"the server answered {head[:40]!r}")
            length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            if b"connection: close" in head:
                writer.close()
            latencies.append(time.perf_counter() - t)
        writer.close()

    return await _timed(n, concurrency, worker)


def _packet(command: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + command + data


def milter_packets(data: bytes) -> bytes:
    msg = Message.from_bytes(data)
    out = _packet(b"M", b"<alice@example.org>\0") + _packet(b"R", b"<rcpt@example.com>\0")
    for header in msg.headers:
        out += _packet(b"L", header.name.encode() + b"\0" + header.value.encode() + b"\0")
    out += _packet(b"N")
    body = msg.body.as_bytes()
    for start in range(0, len(body), 65535):
        out += _packet(b"B", body[start : start + 65535])
    return out + _packet(b"E")


async def _read_packet(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    async with asyncio.timeout(60):  # a miscounted reply fails the run, never hangs it
        (size,) = struct.unpack(">I", await reader.readexactly(4))
        payload = await reader.readexactly(size)
    return payload[:1], payload[1:]


#: Replies that end end-of-message (CONTINUE too: mxscan accepts with it); header
#: edits and progress come before one.
FINAL = {b"a", b"c", b"r", b"d", b"t", b"y", b"q"}


async def milter_client(sock: str, data: bytes, n: int, concurrency: int):  # type: ignore[no-untyped-def]
    packets = milter_packets(data)
    replies_per_message = 2 + sum(1 for _ in Message.from_bytes(data).headers) + 1
    body_chunks = -(-len(Message.from_bytes(data).body.as_bytes()) // 65535)

    async def worker(count: int, latencies: list[float]) -> None:
        reader, writer = await asyncio.open_unix_connection(sock)
        # Version 6, every action, no protocol flags: the milter answers every step.
        writer.write(_packet(b"O", struct.pack(">III", 6, 0x1FF, 0)))
        await _read_packet(reader)
        writer.write(
            _packet(b"C", b"localhost\0" + b"4" + struct.pack(">H", 25) + b"127.0.0.1\0")
            + _packet(b"H", b"localhost\0")
        )
        for _ in range(2):
            await _read_packet(reader)
        for _ in range(count):
            t = time.perf_counter()
            writer.write(packets)
            for _ in range(replies_per_message + body_chunks):  # MAIL..EOH, BODY
                await _read_packet(reader)
            while (await _read_packet(reader))[0] not in FINAL:  # edits, then the verdict
                pass
            latencies.append(time.perf_counter() - t)
        writer.close()

    return await _timed(n, concurrency, worker)


async def inprocess(config_path: Path, data: bytes, n: int, concurrency: int):  # type: ignore[no-untyped-def]
    engine = load_config(config_path).build()

    async def worker(count: int, latencies: list[float]) -> None:
        for _ in range(count):
            t = time.perf_counter()
            await engine.scan(Message.from_bytes(data))
            latencies.append(time.perf_counter() - t)

    try:
        return await _timed(n, concurrency, worker)
    finally:
        await engine.aclose()


# -- memory ------------------------------------------------------------------------


async def _post_chunked(port: int, size: int) -> int:
    """POST a message of ``size`` bytes in 64 KiB chunks; the answer's status."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /checkv2 HTTP/1.1\r\nHost: mxscan\r\nTransfer-Encoding: chunked\r\n\r\n")
    head = b"From: a@example.org\r\nSubject: big\r\n\r\n"
    line = b"x" * 998 + b"\r\n"
    chunk = head + line * ((65536 - len(head)) // len(line))
    sent = 0
    while sent < size:
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        sent += len(chunk)
        chunk = line * (65536 // len(line))
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    status = int((await reader.readuntil(b"\r\n")).split()[1])
    writer.close()
    return status


def memory(http: HttpProcess) -> None:
    """Peak RSS (VmHWM) of the no-op server after a 1 MiB and after a 48 MiB message:
    the body streams into the spool, so the second must not cost 47 MiB more."""
    from benchmarks import vmhwm_kib

    for mib in (1, 48):
        status = asyncio.run(_post_chunked(http.port, mib * 1024 * 1024))
        print(f"memory: after a {mib:>2} MiB message (status {status}): "
              f"server VmHWM {vmhwm_kib(http.proc.pid) / 1024:.1f} MiB", flush=True)  # fmt: skip


# -- runs --------------------------------------------------------------------------


def main() -> None:
    n_noop = int(os.environ.get("MXSCAN_BENCH_HTTP_N", "6000"))
    data = message_10k()
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    work = Path(tempfile.mkdtemp(prefix="bench-http-"))
    plugin_dir = install_slowplugin(work / "site")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(plugin_dir)  # the in-process engine finds the no-op plugin too
        run_setups(work, data, plugin_dir, n_noop, pin)


def run_setups(work: Path, data: bytes, plugin_dir: Path, n_noop: int, pin: list[str]) -> None:
    print(f"message: {len(data)} bytes; server pinned to one CPU: {bool(pin)}")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(req/cpu-s is the server's own CPU: requests per CPU-second, load-independent)")  # fmt: skip
    print(f"{'setup':<10} {'client':<10} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'req/cpu-s':>10}")
    daemons = clamd_alive() and spamd_alive()
    wanted = os.environ.get("MXSCAN_BENCH_HTTP_SETUPS", "no-op,clamav,clamav+sa").split(",")
    try:
        for setup, config in configs().items():
            if setup not in wanted:
                continue
            if setup != "no-op" and not daemons:
                print(f"{setup:<10} skipped: clamd/spamd not running (scripts/daemons start)")
                continue
            # spamd takes ~0.1-1 s a message on a loaded machine: fewer there.
            n = {"no-op": n_noop, "clamav": max(100, n_noop // 10)}.get(
                setup, max(30, n_noop // 100)
            )
            directory = work / setup
            directory.mkdir()
            http = HttpProcess(dump_toml(config), directory, prefix=pin, pythonpath=[plugin_dir])
            milter = MilterProcess(config, directory, args=(), pythonpath=[plugin_dir]).start()
            try:
                for conc in CONCURRENCY:
                    asyncio.run(http_client(http.port, data, min(200, n), conc))  # warm-up
                    runs = (
                        ("http", http.proc.pid, partial(http_client, http.port)),
                        ("milter", milter.pid, partial(milter_client, str(milter.sock))),
                        ("in-process", None, partial(inprocess, http.config_path)),
                    )
                    for client, pid, run in runs:
                        before = cpu_seconds(pid) if pid else time.process_time()
                        rate, p50 = asyncio.run(run(data, n, conc))
                        cpu = (cpu_seconds(pid) if pid else time.process_time()) - before
                        print(f"{setup:<10} {client:<10} {conc:>4} {rate:>9.0f} {p50:>8.2f} "
                              f"{n / cpu if cpu else float('inf'):>10.0f}", flush=True)  # fmt: skip
                if setup == "no-op":
                    memory(http)
            finally:
                http.stop()
                milter.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rspamd_row(data, max(100, n_noop // 10))
    print("goal: no-op http >= 3000 req/s at concurrency 16 (one core, 10 KB)")


def rspamd_row(data: bytes, n: int) -> None:
    """rspamd's own normal worker on the same message, when a private one runs."""
    spec = os.environ.get("MXSCAN_RSPAMD_INET", "")
    env_file = run_dir() / "env"
    if not spec and env_file.exists():
        for line in env_file.read_text().splitlines():
            if line.startswith("MXSCAN_RSPAMD_INET="):
                spec = line.split("=", 1)[1].strip()
    if not spec:
        print("rspamd     checkv2    skipped: no private rspamd (MXSCAN_RSPAMD_INET unset)")
        return
    address = parse_address(spec)
    for conc in CONCURRENCY:
        try:
            rate, p50 = asyncio.run(http_client(int(address.port), data, n, conc))
        except OSError as exc:
            print(f"rspamd     checkv2    skipped: {spec}: {exc}")
            return
        print(f"{'rspamd':<10} {'checkv2':<10} {conc:>4} {rate:>9.0f} {p50:>8.2f} {'-':>10}",
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
