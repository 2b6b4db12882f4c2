"""Scans/second through the clamav plugin next to ``clamdscan --stream``, and peak RSS.

Both sides talk to the same private clamd, started here by ``scripts/daemons``
with StreamMaxLength 200M (so a 100 MB message is scanned, not refused), on the
same files in the same run, at concurrency 1 and 8. ``clamdscan`` is run once
per message, the way a shell filter would use it; runs alternate (clamdscan,
plugin, clamdscan, plugin) so the machine's drift hits both alike.

Peak RSS is measured in a fresh child process that parses and scans a 100 MB
message (body spooled to disk, streamed in 64 KiB frames): the figure to check
is the growth over the process's baseline, which must stay far below 100 MB.

Environment: MXSCAN_BENCH_ROUNDS (default 2), MXSCAN_BENCH_SCALE (multiplies the
number of scans per run, default 1.0).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DAEMONS = REPO / "scripts" / "daemons"
SIZES = {"10 KB": 10_000, "1 MB": 1_000_000}
SCANS = {"10 KB": 500, "1 MB": 100}  # per run and side, before MXSCAN_BENCH_SCALE
BIG = 100 * 1000 * 1000


def build_message(size: int, seed: int = 0) -> bytes:
    """A plausible clean mail of about ``size`` bytes: text plus a base64 attachment."""
    head = (
        b"Received: from client.example.org (client.example.org [192.0.2.7])\r\n"
        b"\tby mx.example.net (Postfix) with ESMTPS id 4ABCDEF%d\r\n"
        b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\n"
        b"Subject: quarterly figures %d\r\nDate: Sat, 28 Nov 2026 04:00:00 +0000\r\n"
        b"Message-ID: <%d.bench@example.org>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        b"Hello Bob, the figures are attached.\r\n"
        b'--b1\r\nContent-Type: application/octet-stream; name="data.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" % (seed, seed, seed)
    )
    tail = b"--b1--\r\n"
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n"
    lines = max(1, (size - len(head) - len(tail)) // len(line))
    return head + line * lines + tail


def write_big_message(path: Path) -> None:
    """The 100 MB message, written in pieces (the benchmark itself must not hold it)."""
    head = build_message(0)[: -len(b"--b1--\r\n")]
    line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n"
    block = line * 13_000
    with path.open("wb") as fp:
        fp.write(head)
        written = len(head)
        while written < BIG:
            fp.write(block)
            written += len(block)
        fp.write(b"--b1--\r\n")


def start_clamd(run: Path) -> dict[str, str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    env = {
        **os.environ,
        "MXSCAN_RUN_DIR": str(run),
        "MXSCAN_CLAMD_PORT": str(port),
        "MXSCAN_CLAMD_STREAM_MAX": "200M",
    }
    done = subprocess.run(
        ["bash", str(DAEMONS), "start", "clamd"], env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"cannot start a private clamd: {done.stdout}{done.stderr}".strip())
    return env


async def rate(concurrency: int, count: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Scans per second for ``count`` scans with ``concurrency`` in flight."""
    queue = iter(range(count))

    async def worker() -> None:
        for index in queue:
            await one(index)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - start)


async def throughput(env: dict[str, str], files: dict[str, list[Path]], rounds: int) -> None:
    from mxscan import Message
    from mxscan_clamav import ClamAV

    run = Path(env["MXSCAN_RUN_DIR"])
    conf = run / "clamd.conf"
    scale = float(os.environ.get("MXSCAN_BENCH_SCALE", "1"))
    clamdscan = shutil.which("clamdscan")
    for transport, address in (
        ("unix", f"unix:{run / 'clamd.sock'}"),
        ("inet", f"inet:127.0.0.1:{env['MXSCAN_CLAMD_PORT']}"),
    ):
        scanner = ClamAV("clamav", address=address, timeout=60)
        for label, paths in files.items():
            messages = [Message.from_file(p) for p in paths]
            count = max(8, int(SCANS[label] * scale))

            async def plugin(
                index: int, messages: list[Message] = messages, scanner: ClamAV = scanner
            ) -> None:
                verdict = await scanner.scan(messages[index % len(messages)])
                if verdict.status != "clean":
                    raise RuntimeError(f"unexpected verdict {verdict.status}: {verdict.reason}")

            async def external(index: int, paths: list[Path] = paths) -> None:
                assert clamdscan is not None
                proc = await asyncio.create_subprocess_exec(
                    clamdscan, f"--config-file={conf}", "--stream", "--no-summary",
                    "--quiet", str(paths[index % len(paths)]),
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
                )  # fmt: skip
                _, err = await proc.communicate()
                if proc.returncode != 0:
                    raise RuntimeError(f"clamdscan exit {proc.returncode}: {err.decode()}")

            for concurrency in (1, 8):
                ours: list[float] = []
                theirs: list[float] = []
                for _ in range(rounds):
                    # clamdscan picks LocalSocket from clamd.conf: only compare on unix.
                    if clamdscan and transport == "unix":
                        theirs.append(await rate(concurrency, count, external))
                    ours.append(await rate(concurrency, count, plugin))
                line = (
                    f"{transport:4} {label:>5} c={concurrency}: mxscan-clamav "
                    f"{statistics.mean(ours):8.1f} scans/s"
                )
                if theirs:
                    line += f"   clamdscan --stream {statistics.mean(theirs):8.1f} scans/s"
                    line += f"   (x{statistics.mean(ours) / statistics.mean(theirs):.1f})"
                print(line, flush=True)
            for message in messages:
                message.close()


def rss_child(path: str, address: str) -> None:
    """Child process: parse + scan the big message, report memory as JSON."""
    from benchmarks import vmhwm_kib
    from mxscan import Message
    from mxscan_clamav import ClamAV

    baseline = vmhwm_kib()
    start = time.perf_counter()
    message = Message.from_file(path)
    parsed = time.perf_counter()
    verdict = asyncio.run(ClamAV("clamav", address=address, timeout=600).scan(message))
    done = time.perf_counter()
    peak = vmhwm_kib()
    print(
        json.dumps(
            {
                "baseline_kib": baseline,
                "peak_kib": peak,
                "size": message.size,
                "spooled": message.body.spooled,
                "status": verdict.status,
                "reason": verdict.reason,
                "parse_s": parsed - start,
                "scan_s": done - parsed,
            }
        )
    )


def big_message_rss(env: dict[str, str], workdir: Path) -> None:
    path = workdir / "big.eml"
    write_big_message(path)
    address = f"unix:{Path(env['MXSCAN_RUN_DIR']) / 'clamd.sock'}"
    child = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_clamav", "--rss-child", str(path), address],
        capture_output=True, text=True, check=False, cwd=REPO,
    )  # fmt: skip
    if child.returncode:
        raise RuntimeError(f"RSS child failed: {child.stderr.strip()}")
    data = json.loads(child.stdout.strip().splitlines()[-1])
    growth = (data["peak_kib"] - data["baseline_kib"]) / 1024
    print(
        f"100 MB message ({data['size']:,} bytes, spooled={data['spooled']}): "
        f"status {data['status']}; peak RSS {data['peak_kib'] / 1024:.1f} MiB "
        f"(baseline after imports {data['baseline_kib'] / 1024:.1f} MiB, "
        f"growth {growth:.1f} MiB); parse {data['parse_s']:.2f}s, "
        f"scan {data['scan_s']:.2f}s ({data['size'] / data['scan_s'] / 1e6:.0f} MB/s to clamd)",
        flush=True,
    )
    if data["status"] != "clean":
        raise RuntimeError(f"the 100 MB message was not scanned: {data['reason']}")


def main() -> None:
    if shutil.which("clamd") is None or not DAEMONS.is_file():
        raise RuntimeError("clamd or scripts/daemons missing (scripts/install-system-deps)")
    rounds = int(os.environ.get("MXSCAN_BENCH_ROUNDS", "2"))
    # clamd runs as the clamav user: its directory must be reachable, so not pytest-style.
    run = Path(tempfile.mkdtemp(prefix="mxscan-bench-clamd-", dir="/tmp"))
    run.chmod(0o755)
    work = Path(tempfile.mkdtemp(prefix="mxscan-bench-files-"))
    env = {**os.environ, "MXSCAN_RUN_DIR": str(run)}
    try:
        env = start_clamd(run)
        files: dict[str, list[Path]] = {}
        for label, size in SIZES.items():
            files[label] = []
            for seed in range(4):
                path = work / f"{size}-{seed}.eml"
                path.write_bytes(build_message(size, seed))
                path.chmod(0o644)
                files[label].append(path)
        print(
            f"private clamd, StreamMaxLength 200M, MaxThreads 4; {rounds} rounds per figure "
            f"(mean); clamdscan: one process per message, unix socket",
            flush=True,
        )
        asyncio.run(throughput(env, files, rounds))
        big_message_rss(env, work)
    finally:
        subprocess.run(["bash", str(DAEMONS), "stop", "clamd"], env=env, capture_output=True)
        shutil.rmtree(run, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--rss-child":
        rss_child(sys.argv[2], sys.argv[3])
    else:
        main()
