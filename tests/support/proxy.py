"""A misbehaving daemon for the fault tests: put it between mxscan and clamd/spamd.

Run as its own process (``python -m tests.support.proxy LISTEN UPSTREAM MODE``) so that
"the daemon was killed mid-scan" is a real SIGKILL of a real process whose
sockets the kernel then closes, not a simulation inside the test.

Modes:

* ``pass``: forward both ways to UPSTREAM (the real daemon): a healthy daemon;
* ``slow``: accept and read, never answer (past any timeout);
* ``garbage``: read the request, answer bytes neither protocol can parse, close;
* ``stall``: like slow, and print ``GOT`` once request bytes arrived, so the test
  knows a scan is in flight and can SIGKILL this process at that moment.

LISTEN and UPSTREAM are ``host:port`` (127.0.0.1 only) or ``unix:/path``.
Prints ``READY`` when listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

GARBAGE = b"\xff\xfe BANANA 42 ???\r\nwhat: is this\r\n\r\n\x00\x01 not a reply\n"


async def _open(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if address.startswith("unix:"):
        return await asyncio.open_unix_connection(address[5:])
    host, _, port = address.rpartition(":")
    return await asyncio.open_connection(host, int(port))


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class Fault:
    def __init__(self, upstream: str, mode: str) -> None:
        self.upstream = upstream
        self.mode = mode
        self.announced = False

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.mode == "pass":
                up_reader, up_writer = await _open(self.upstream)
                await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
                up_writer.close()
            elif self.mode in ("slow", "stall"):
                while data := await reader.read(65536):
                    if self.mode == "stall" and not self.announced:
                        self.announced = True
                        print("GOT", flush=True)
            elif self.mode == "garbage":
                # The request is complete when the client goes quiet for a moment.
                while True:
                    try:
                        data = await asyncio.wait_for(reader.read(65536), 0.3)
                    except TimeoutError:
                        break
                    if not data:
                        break
                writer.write(GARBAGE)
                await writer.drain()
            else:
                raise SystemExit(f"unknown mode {self.mode}")
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def main(listen: str, upstream: str, mode: str) -> None:
    fault = Fault(upstream, mode)
    if listen.startswith("unix:"):
        server = await asyncio.start_unix_server(fault.handle, listen[5:])
    else:
        host, _, port = listen.rpartition(":")
        server = await asyncio.start_server(fault.handle, host, int(port), reuse_address=True)
    print("READY", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
