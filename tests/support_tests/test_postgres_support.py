"""The private PostgreSQL clusters (scripts/daemons' shared one, and a test's own)
listen on a unix socket and 127.0.0.1 only, and a test's own can be stopped and
started again."""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped,import-not-found,unused-ignore]

from tests.support.pg import require_postgres
from tests.support.postgres import own_postgres


async def _settings(url: str) -> tuple[str, str]:
    con = await asyncpg.connect(url)
    try:
        return (await con.fetchval("SHOW listen_addresses"),
                await con.fetchval("SHOW unix_socket_directories"))  # fmt: skip
    finally:
        await con.close()


async def test_shared_cluster_is_loopback_only() -> None:
    url = require_postgres()
    listen, sockets = await _settings(url)
    assert listen == "127.0.0.1"
    assert sockets and sockets in url


async def test_own_cluster_stops_and_starts() -> None:
    with own_postgres() as cluster:
        assert (await _settings(cluster.url))[0] == "127.0.0.1"
        cluster.stop()
        assert not cluster.running()
        cluster.start()
        assert (await _settings(cluster.url))[0] == "127.0.0.1"
