"""The spamassassin plugin's peak memory for a large message: streamed from the
spool (now) against joined into one bytes object (as before issue 21's client).

Each figure is one fresh interpreter scanning one message, its peak RSS
(VmHWM) minus its RSS before the scan. The spamd here is a sink in this
process that reads the request to its end and answers a fixed HEADERS reply:
the figure is the plugin's memory, not spamd's (a real spamd takes minutes
over 50 MB of text, and SpamAssassin only looks at its first part anyway).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import textwrap
import threading

REPLY = (
    b"SPAMD/1.1 0 EX_OK\r\nContent-length: 17\r\nSpam: False ; 1.0 / 5.0\r\n\r\nX-Spam-Flag: NO\r\n"
)

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from mxscan import Envelope, Message, parse_address
    from mxscan_spamassassin import SpamAssassin
    from mxscan_spamassassin.client import exchange
    from mxscan_spamassassin.spamc import Request
    def vmhwm():
        for row in open("/proc/self/status"):
            if row.startswith("VmHWM:"):
                return int(row.split()[1])
    mode, address, path = sys.argv[1:]
    envelope = Envelope(client_address="192.0.2.7", client_name="mail.example.org", helo="m")
    message = Message.from_file(path, envelope=envelope)
    scanner = SpamAssassin(address=address, max_size="1GiB", timeout=600)
    base = vmhwm()
    if mode == "streamed":
        asyncio.run(scanner.scan(message))
    else:  # the plugin before: one joined bytes object, copied again by to_bytes()
        from mxscan import received_header
        joined = received_header(envelope).raw + message.as_bytes()
        asyncio.run(exchange(parse_address(address), Request("HEADERS", joined), 600))
    print(base, vmhwm())
    """
)


#: Bytes of each request the sink read: proof that the whole message went out.
RECEIVED: list[int] = []


async def _sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    total = 0
    while data := await reader.read(256 * 1024):
        total += len(data)  # to EOF: the client half-closes after the body
    RECEIVED.append(total)
    writer.write(REPLY)
    await writer.drain()
    writer.close()


def _serve(ready: threading.Event, box: list[object]) -> None:
    async def main() -> None:
        server = await asyncio.start_server(_sink, "127.0.0.1", 0)
        box.append(server.sockets[0].getsockname()[1])
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def growth_kib(mode: str, address: str, size: int) -> int:
    with tempfile.NamedTemporaryFile(suffix=".eml") as fp:
        fp.write(b"From: a@example.org\r\nSubject: big\r\n\r\n")
        line = b"x" * 998 + b"\r\n"
        for _ in range(size // len(line) + 1):
            fp.write(line)
        fp.flush()
        out = subprocess.run([sys.executable, "-c", CHILD, mode, address, fp.name],
                             capture_output=True, text=True, check=True)  # fmt: skip
    base, peak = (int(x) for x in out.stdout.split())
    return peak - base


def main() -> None:
    ready, box = threading.Event(), []
    threading.Thread(target=_serve, args=(ready, box), daemon=True).start()
    ready.wait()
    address = f"inet:127.0.0.1:{box[0]}"
    print("spamassassin: peak RSS growth scanning one message (VmHWM after - before)")
    for size in (1_000_000, 10_000_000, 50_000_000):
        streamed = growth_kib("streamed", address, size)
        joined = growth_kib("joined", address, size)
        sent = RECEIVED[-2:]
        assert sent[0] == sent[1] > size, sent  # the same request, the whole message
        print(f"  {size / 1e6:>4.0f} MB message: streamed from the spool {streamed / 1024:6.1f} MiB,"
              f" joined (before) {joined / 1024:6.1f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
