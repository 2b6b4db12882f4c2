"""``store = "postgresql://..."``: one store for several MX hosts.

asyncpg (Apache-2.0) rather than psycopg (LGPL): the project takes permissive
licenses only, and asyncpg is asyncio-native, so a milter waits on no thread.
A record and its chunks are inserted in one transaction; a server that goes
away makes ``put`` raise ``StoreError`` (the MTA hears TEMPFAIL), and the pool
opens fresh connections once the server is back, with nothing to restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .record import COLUMNS, Record
from .sqlite import where_clause
from .store import SCHEMA_VERSION, Filter, StoreError

__all__ = ["MIGRATIONS", "PostgresStore"]

log = logging.getLogger("mxscan.quarantine")

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE quarantine (
        id TEXT PRIMARY KEY,
        stored_at DOUBLE PRECISION NOT NULL,
        host TEXT NOT NULL,
        queue_id TEXT,
        sender TEXT NOT NULL,
        recipients TEXT NOT NULL,
        client_address TEXT,
        client_name TEXT,
        helo TEXT,
        size BIGINT NOT NULL,
        action TEXT NOT NULL,
        score DOUBLE PRECISION,
        scanner TEXT NOT NULL,
        reason TEXT NOT NULL,
        verdicts TEXT NOT NULL
    );
    CREATE INDEX quarantine_stored_at ON quarantine (stored_at);
    CREATE TABLE quarantine_chunk (
        id TEXT NOT NULL REFERENCES quarantine (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        data BYTEA NOT NULL,
        PRIMARY KEY (id, seq)
    );
    """,
    """
    ALTER TABLE quarantine ADD COLUMN released_at DOUBLE PRECISION;
    ALTER TABLE quarantine ADD COLUMN released_to TEXT;
    ALTER TABLE quarantine ADD COLUMN releases INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE quarantine_release (
        id TEXT NOT NULL REFERENCES quarantine (id) ON DELETE CASCADE,
        at DOUBLE PRECISION NOT NULL,
        to_addr TEXT NOT NULL,
        via TEXT NOT NULL,
        as_ham BOOLEAN NOT NULL
    );
    """,
)
assert len(MIGRATIONS) == SCHEMA_VERSION


_SCHEMA = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: Any number: the advisory lock that serialises schema upgrades across hosts.
_MIGRATE_LOCK = 0x6D787363


def _split_schema(url: str) -> tuple[str, str | None]:
    """``?schema=NAME`` is mxscan's (asyncpg would send it to the server as a setting)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"], safe="/")
    return urlunsplit(parts._replace(query=rest)), schema


class PostgresStore:
    """A pool of asyncpg connections; ``schema`` (default ``public``) holds the tables."""

    def __init__(self, url: str, *, schema: str | None = None, timeout: float = 10.0) -> None:
        url, in_url = _split_schema(url)
        schema = schema or in_url or "public"
        if not _SCHEMA.fullmatch(schema):
            raise ValueError(f"not a plain schema name: {schema!r}")
        self.url = url
        self.schema = schema
        self.timeout = timeout
        self._pool: Any = None
        self._ready = False
        self._found = 0
        self._lock = asyncio.Lock()
        #: Ids of puts that failed with the outcome of their COMMIT unknown.
        self._in_doubt: set[str] = set()

    def _errors(self) -> tuple[type[BaseException], ...]:
        import asyncpg  # type: ignore[import-untyped,import-not-found,unused-ignore]

        return (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)

    async def _get_pool(self) -> Any:
        """The pool, and the schema checked once (any failure: ask again next time)."""
        try:
            import asyncpg  # type: ignore[import-untyped,import-not-found,unused-ignore]
        except ImportError:
            raise StoreError(
                "a postgresql:// store needs asyncpg: pip install 'mxscan[postgresql]'"
            ) from None
        async with self._lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self.url, min_size=0, max_size=8, timeout=self.timeout,
                    command_timeout=self.timeout,
                    server_settings={"search_path": self.schema},
                )  # fmt: skip
            if not self._ready:
                await self._migrate()
                self._ready = True
        return self._pool

    async def _migrate(self) -> int:
        async with self._pool.acquire() as con, con.transaction():
            await con.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATE_LOCK)
            # The schema name is checked above (_SCHEMA) and quoted: identifiers
            # cannot be parameters.
            await con.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            await con.execute("CREATE TABLE IF NOT EXISTS mxscan_schema (version INTEGER NOT NULL)")
            version = await con.fetchval("SELECT max(version) FROM mxscan_schema") or 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.url}: schema version {version} is newer than this mxscan's "
                    f"{SCHEMA_VERSION}: upgrade mxscan"
                )
            self._found = int(version)
            for number in range(version, SCHEMA_VERSION):
                await con.execute(MIGRATIONS[number])
                await con.execute("INSERT INTO mxscan_schema (version) VALUES ($1)", number + 1)
            return int(version)

    async def _call(self, fn: Any) -> Any:
        try:
            pool = await self._get_pool()
            async with asyncio.timeout(self.timeout), pool.acquire() as con:
                return await fn(con)
        except StoreError:
            raise
        except self._errors() as exc:
            raise StoreError(f"{self.url}: {type(exc).__name__}: {exc}") from exc

    async def init(self) -> int:
        self._ready = False  # look again, even if this process already did
        try:
            await self._get_pool()
        except StoreError:
            raise
        except self._errors() as exc:
            raise StoreError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        return self._found

    async def put(self, record: Record, chunks: Iterable[bytes]) -> None:
        source: Iterator[bytes] = iter(chunks)

        async def run(con: Any) -> None:
            async with con.transaction():
                await con.execute(
                    "INSERT INTO quarantine (id, stored_at, host, queue_id, sender, recipients, "
                    "client_address, client_name, helo, size, action, score, scanner, reason, "
                    "verdicts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, "
                    "$14, $15)",
                    record.id, record.stored_at, record.host, record.queue_id, record.sender,
                    json.dumps(list(record.recipients)), record.client_address,
                    record.client_name, record.helo, record.size, record.action, record.score,
                    record.scanner, record.reason, json.dumps(list(record.verdicts)),
                )  # fmt: skip
                seq = 0
                while True:
                    # The spool file is read off the loop, one chunk at a time.
                    chunk = await asyncio.to_thread(next, source, None)
                    if chunk is None:
                        break
                    await con.execute(
                        "INSERT INTO quarantine_chunk (id, seq, data) VALUES ($1, $2, $3)",
                        record.id, seq, chunk,
                    )  # fmt: skip
                    seq += 1

        try:
            pool = await self._get_pool()
            async with pool.acquire() as con:
                await self._drop_in_doubt(con)
                await run(con)
        except StoreError:
            raise
        except self._errors() as exc:
            # The connection may have died after the server committed (its answer
            # lost): the MTA hears TEMPFAIL and the client sends the message again,
            # so a row that did commit would be a duplicate. Remove it once the
            # server is back.
            self._in_doubt.add(record.id)
            raise StoreError(f"{self.url}: {type(exc).__name__}: {exc}") from exc

    async def _drop_in_doubt(self, con: Any) -> None:
        if not self._in_doubt:
            return
        ids = sorted(self._in_doubt)
        deleted = await con.execute("DELETE FROM quarantine WHERE id = ANY($1::text[])", ids)
        self._in_doubt.difference_update(ids)
        count = int(deleted.split()[-1])
        if count:
            log.warning(
                "%s: removed %d copies committed while the server went away "
                "(their messages were tempfailed and will be sent again): %s",
                self.url, count, ", ".join(ids),
            )  # fmt: skip

    async def list(self, query: Filter) -> list[Record]:
        where, params = where_clause(query, lambda n: f"${n}")
        # Constant fragments and placeholders only: every value is a parameter.
        sql = f"SELECT {COLUMNS} FROM quarantine{where} ORDER BY stored_at, id"  # noqa: S608
        if query.limit is not None:
            params.append(query.limit)
            sql += f" LIMIT ${len(params)}"
        rows = await self._call(lambda con: con.fetch(sql, *params))
        return [Record.from_row(r) for r in rows]

    async def get(self, id: str) -> Record | None:
        sql = f"SELECT {COLUMNS} FROM quarantine WHERE id = $1"  # noqa: S608
        row = await self._call(lambda con: con.fetchrow(sql, id))
        return None if row is None else Record.from_row(row)

    async def read(self, id: str) -> AsyncIterator[bytes]:
        seq = 0
        while True:
            data = await self._call(
                lambda con, seq=seq: con.fetchval(
                    "SELECT data FROM quarantine_chunk WHERE id = $1 AND seq = $2", id, seq
                )
            )
            if data is None:
                return
            yield bytes(data)
            seq += 1

    async def claim_release(self, id: str, to: str, force: bool) -> bool:
        async def run(con: Any) -> bool:
            status = await con.execute(
                "UPDATE quarantine SET released_at = $1, released_to = $2, "
                "releases = releases + 1 WHERE id = $3 AND (releases = 0 OR $4)",
                time.time(), to, id, force,
            )  # fmt: skip
            return bool(status.split()[-1] == "1")

        return bool(await self._call(run))

    async def unclaim_release(self, before: Record) -> None:
        async def run(con: Any) -> None:
            await con.execute(
                "UPDATE quarantine SET released_at = $1, released_to = $2, "
                "releases = greatest(releases - 1, 0) WHERE id = $3",
                before.released_at, before.released_to, before.id,
            )  # fmt: skip

        await self._call(run)

    async def mark_released(self, id: str, to: str, via: str, as_ham: bool) -> None:
        async def run(con: Any) -> None:
            await con.execute(
                "INSERT INTO quarantine_release (id, at, to_addr, via, as_ham) "
                "VALUES ($1, $2, $3, $4, $5)",
                id, time.time(), to, via, as_ham,
            )  # fmt: skip

        await self._call(run)

    async def delete(self, ids: Iterable[str]) -> int:
        wanted = list(ids)

        async def run(con: Any) -> int:
            status = await con.execute("DELETE FROM quarantine WHERE id = ANY($1::text[])", wanted)
            return int(status.split()[-1])

        return int(await self._call(run))

    async def expire(self, before: float) -> int:
        async def run(con: Any) -> int:
            status = await con.execute("DELETE FROM quarantine WHERE stored_at < $1", before)
            return int(status.split()[-1])

        return int(await self._call(run))

    async def stats(self) -> dict[str, object]:
        async def run(con: Any) -> dict[str, object]:
            row = await con.fetchrow(
                "SELECT count(*) AS n, coalesce(sum(size), 0) AS bytes, min(stored_at) AS oldest, "
                "max(stored_at) AS newest, count(released_at) AS released FROM quarantine"
            )
            actions = await con.fetch(
                "SELECT action, count(*) AS n FROM quarantine GROUP BY action ORDER BY 1"
            )
            version = await con.fetchval("SELECT max(version) FROM mxscan_schema")
            return {
                "messages": row["n"], "bytes": int(row["bytes"]), "oldest": row["oldest"],
                "newest": row["newest"], "released": row["released"],
                "by_action": {r["action"]: r["n"] for r in actions},
                "schema_version": version,
            }  # fmt: skip

        return dict(await self._call(run))

    async def aclose(self) -> None:
        if self._pool is not None and self._in_doubt:
            with contextlib.suppress(*self._errors()):
                async with asyncio.timeout(self.timeout), self._pool.acquire() as con:
                    await self._drop_in_doubt(con)
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
