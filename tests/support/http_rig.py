"""An in-process ``HttpServer`` on 127.0.0.1 and a raw HTTP/1.1 client, for tests
that need to control every byte on the wire (slowloris, hang-ups, bad headers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from mxscan.adapters.http.server import HttpServer, Limits
from mxscan.addresses import InetAddress
from mxscan.service.engines import EngineHolder, EngineLike
from mxscan.service.listen import bind


@contextlib.asynccontextmanager
async def serving(engine: EngineLike, **kwargs: Any) -> AsyncIterator[tuple[HttpServer, int]]:
    limits = kwargs.pop("limits", Limits())
    server = HttpServer(EngineHolder(engine), limits=limits, **kwargs)
    listening = bind(InetAddress("127.0.0.1", 0))
    assert isinstance(listening.address, InetAddress)
    await server.serve(listening)
    try:
        yield server, listening.address.port
    finally:
        await server.stop(1)


def request(
    path: str = "/checkv2",
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    *,
    method: str = "POST",
    chunked: bool = False,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: mxscan"]
    for name, value in headers or []:
        lines.append(f"{name}: {value}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
        out = ("\r\n".join(lines) + "\r\n\r\n").encode()
        for start in range(0, len(body), 1000):
            piece = body[start : start + 1000]
            out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        return out + b"0\r\n\r\n"
    if method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await read_response(reader)
    finally:
        writer.close()


async def scan_json(port: int, data: bytes) -> tuple[int, Any]:
    status, _, body = await exchange(port, data)
    return status, json.loads(body)
