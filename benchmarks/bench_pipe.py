"""Messages/second through ``mxscan pipe`` next to the milter, and peak RSS.

The pipe path is what Postfix's pipe(8) does per message: start ``mxscan pipe``,
write the message to its stdin, wait for its exit status; re-injection goes to a
stand-in ``sendmail`` that reads the message and exits 0 (Postfix's own
postdrop/pickup cost is the same whichever filter runs). The milter path is a
running ``mxscan milter`` on a unix socket, one connection per message as
Postfix's smtpd opens it, speaking the protocol Postfix 3.7 speaks. Both run the
same configuration on the same messages in the same run, at concurrency 1 and 4
(pipe(8)'s maxproc, the number of smtpd processes).

Peak RSS: ``mxscan pipe`` given a 100 MB message (body spooled to disk, streamed
to the scanners and to sendmail), read with wait4() for that process alone
(through a small wrapper: benchmarks.peak_rss_of), next to the same for a 10 KB
message: the difference must stay far below 100 MB.

The pipe figure is mostly process start-up (interpreter, imports, entry-point
discovery, building the scanners): the price of pipe(8)'s one-process-per-message
model, paid once per recipient with ``mxscan_destination_recipient_limit = 1``.

Environment: MXSCAN_BENCH_SCALE multiplies the number of messages (default 1.0).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks import peak_rss_of

REPO = Path(__file__).resolve().parent.parent

SENDMAIL = "/bin/sh -c 'cat >/dev/null' sendmail"
HEADER_RULES = f"""
[scanner.inbound]
plugin = "header-rules"
rules = \"\"\"
/^X-Spam-/    IGNORE
/^X-Virus-/   IGNORE
\"\"\"

[scanner.outbound]
plugin = "header-rules"
file = "{REPO / "examples" / "header_checks"}"

[[stage]]
run = ["inbound"]
[[stage]]
run = ["outbound"]
"""
WITH_CLAMAV = f"""
[scanner.inbound]
plugin = "header-rules"
rules = "/^X-Virus-/   IGNORE"

[scanner.clamav]
plugin = "clamav"
address = "{{clamd}}"
on_infected = "discard"

[scanner.outbound]
plugin = "header-rules"
file = "{REPO / "examples" / "header_checks"}"

[[stage]]
run = ["inbound"]
[[stage]]
run = ["clamav"]
[[stage]]
run = ["outbound"]
"""


def build_message(index: int, size: int = 10_000) -> bytes:
    head = (
        b"Received: from client.example.org (client.example.org [192.0.2.7])\r\n"
        b"\tby mx.example.net (Postfix) with ESMTPS id 4ABC%05d\r\n"
        b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\n"
        b"Subject: figures %d\r\nDate: Sat, 28 Nov 2026 04:00:00 +0000\r\n"
        b"Message-ID: <%d.pipebench@example.org>\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
    ) % (index, index, index)
    line = b"The quarterly figures are fine; details follow in the next message.\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


def child_env(work: Path) -> None:
    """Byte-compiled modules cached (as on a real install, where ``pip`` compiles
    them) in a private directory, even under PYTHONDONTWRITEBYTECODE."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.setdefault("PYTHONPYCACHEPREFIX", str(work / "pycache"))


def pipe_argv(config: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mxscan",
        "pipe",
        "--config",
        str(config),
        "--sendmail",
        SENDMAIL,
        "-f",
        "alice@example.org",
        "--",
        "bob@example.net",
    ]


async def pipe_one(config: Path, message: bytes) -> None:
    proc = await asyncio.create_subprocess_exec(
        *pipe_argv(config),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await proc.communicate(message)
    if proc.returncode != 0:
        raise RuntimeError(f"mxscan pipe exited {proc.returncode}: {out!r} {err[-300:]!r}")


async def milter_one(sock: str, message: bytes) -> None:
    from tests.support import mta

    client = await mta.MtaClient.open_unix(sock)
    try:
        await client.handshake()
        await client.send(
            mta.macro(b"C", **{"{client_addr}": "192.0.2.7"}), mta.connect(), mta.helo()
        )
        await client.send(mta.mail("alice@example.org"), mta.rcpt("bob@example.net"))
        await client.read()
        await client.send(*mta.message_packets(message))
        replies = await client.read_until_final(wait=60)
        if replies[-1][0] not in (b"c", b"a"):
            raise RuntimeError(f"milter answered {replies[-1]!r}")
        await client.send(mta.QUIT)
    finally:
        await client.close()


async def rate(
    concurrency: int, messages: list[bytes], one: Callable[[bytes], Awaitable[None]]
) -> float:
    queue = list(messages)

    async def worker() -> None:
        while queue:
            await one(queue.pop())

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(messages) / (time.perf_counter() - start)


def start_milter(config: Path, sock: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mxscan",
            "milter",
            "--config",
            str(config),
            "--listen",
            f"unix:{sock}",
            "--socket-mode",
            "0600",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("mxscan milter did not start")
        time.sleep(0.05)
    return proc


def peak_rss_kib(config: Path, path: Path) -> int:
    code, kib = peak_rss_of(pipe_argv(config), path)
    if code != 0:
        raise RuntimeError(f"mxscan pipe exited {code} for {path}")
    return kib


def clamd_address() -> str | None:
    from tests.support.daemons import clamd_alive, clamd_unix

    address = clamd_unix()
    return address if clamd_alive(address) else None


def main() -> None:
    scale = float(os.environ.get("MXSCAN_BENCH_SCALE", "1.0"))
    count = max(4, int(40 * scale))
    messages = [build_message(i) for i in range(count)]
    with tempfile.TemporaryDirectory(prefix="mxscan-bench-pipe-") as tmp:
        work = Path(tmp)
        child_env(work)
        configs = {"header-rules only": HEADER_RULES}
        clamd = clamd_address()
        if clamd:
            configs["clamav + header-rules"] = WITH_CLAMAV.format(clamd=clamd)
        else:
            print("clamd not running: skipping the clamav configuration")
        print(f"{count} messages of 10 KB per run; msg/s (higher is better)")
        print(f"{'configuration':24} {'c':>2} {'pipe':>8} {'milter':>8}  pipe/milter")
        for label, text in configs.items():
            config = work / f"{len(label)}.toml"
            config.write_text(text)
            sock = work / f"{len(label)}.sock"
            milter = start_milter(config, sock)
            try:
                asyncio.run(pipe_one(config, messages[0]))  # warm the bytecode cache
                for concurrency in (1, 4):
                    pipe_rate = asyncio.run(
                        rate(concurrency, messages, lambda m, c=config: pipe_one(c, m))
                    )
                    milter_rate = asyncio.run(
                        rate(concurrency, messages, lambda m, s=str(sock): milter_one(s, m))
                    )
                    print(
                        f"{label:24} {concurrency:>2} {pipe_rate:8.1f} {milter_rate:8.1f}"
                        f"  {pipe_rate / milter_rate:.2f}x",
                        flush=True,
                    )
            except RuntimeError as exc:  # a daemon restarted under us: report, go on
                print(f"{label}: FAILED: {exc}", flush=True)
            finally:
                milter.terminate()
                milter.wait(30)

        config = work / "rss.toml"
        config.write_text(HEADER_RULES)
        small = work / "small.eml"
        small.write_bytes(build_message(0))
        big = work / "big.eml"
        with big.open("wb") as fp:
            fp.write(build_message(1, 1000))
            block = os.urandom(48 * 1024).hex().encode()  # 96 KiB of text lines
            block = b"\r\n".join(block[i : i + 76] for i in range(0, len(block), 76)) + b"\r\n"
            while fp.tell() < 100 * 1000 * 1000:
                fp.write(block)
        size_mb = big.stat().st_size / 1e6
        small_kib = peak_rss_kib(config, small)
        big_kib = peak_rss_kib(config, big)
        print(
            f"peak RSS of mxscan pipe (header-rules only): 10 KB message "
            f"{small_kib / 1024:.1f} MiB, {size_mb:.0f} MB message {big_kib / 1024:.1f} MiB "
            f"(+{(big_kib - small_kib) / 1024:.1f} MiB)"
        )


if __name__ == "__main__":
    main()
