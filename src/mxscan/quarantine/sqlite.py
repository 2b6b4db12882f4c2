"""The built-in store: one SQLite file, no server.

WAL mode lets ``mxscan quarantine list`` read while the milter writes; all work
runs on one thread of its own, so there is one writer at a time in a process and
the event loop never waits on the disk. Message bytes go in chunk rows, inserted
one at a time inside the record's transaction, so a 100 MB message costs one
chunk of memory and a ``kill -9`` mid-store rolls the whole record back.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .record import COLUMNS, Record
from .store import SCHEMA_VERSION, Filter, StoreError

__all__ = ["MIGRATIONS", "SqliteStore"]

T = TypeVar("T")

#: Schema versions in order; ``init`` applies the ones a file has not seen.
MIGRATIONS: tuple[str, ...] = (
    # 1: records and their bytes.
    """
    CREATE TABLE quarantine (
        id TEXT PRIMARY KEY,
        stored_at REAL NOT NULL,
        host TEXT NOT NULL,
        queue_id TEXT,
        sender TEXT NOT NULL,
        recipients TEXT NOT NULL,
        client_address TEXT,
        client_name TEXT,
        helo TEXT,
        size INTEGER NOT NULL,
        action TEXT NOT NULL,
        score REAL,
        scanner TEXT NOT NULL,
        reason TEXT NOT NULL,
        verdicts TEXT NOT NULL
    );
    CREATE INDEX quarantine_stored_at ON quarantine (stored_at);
    CREATE TABLE quarantine_chunk (
        id TEXT NOT NULL REFERENCES quarantine (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (id, seq)
    );
    """,
    # 2: releases are recorded (a second one needs --force).
    """
    ALTER TABLE quarantine ADD COLUMN released_at REAL;
    ALTER TABLE quarantine ADD COLUMN released_to TEXT;
    ALTER TABLE quarantine ADD COLUMN releases INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE quarantine_release (
        id TEXT NOT NULL REFERENCES quarantine (id) ON DELETE CASCADE,
        at REAL NOT NULL,
        to_addr TEXT NOT NULL,
        via TEXT NOT NULL,
        as_ham INTEGER NOT NULL
    );
    """,
)
assert len(MIGRATIONS) == SCHEMA_VERSION


def _like(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its own % and _ literal."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def where_clause(query: Filter, placeholder: Callable[[int], str]) -> tuple[str, list[Any]]:
    """The WHERE clause and its parameters for ``query`` (shared with PostgreSQL,
    whose placeholders differ): values only ever travel as parameters."""
    clauses: list[str] = []
    params: list[Any] = []

    def add(sql: str, *values: Any) -> None:
        for value in values:
            params.append(value)
            sql = sql.replace("?", placeholder(len(params)), 1)
        clauses.append(sql)

    if query.since is not None:
        add("stored_at >= ?", query.since)
    if query.sender:
        add("lower(sender) LIKE lower(?) ESCAPE '\\'", _like(query.sender))
    if query.rcpt:
        add("lower(recipients) LIKE lower(?) ESCAPE '\\'", _like(query.rcpt))
    if query.action:
        add("action = ?", query.action)
    if query.min_score is not None:
        add("score >= ?", query.min_score)
    if query.scanner:
        # The deciding scanner, or any scanner whose verdict is in the record.
        quoted = _like(json.dumps({"scanner": query.scanner})[1:-1])
        add("(scanner = ? OR verdicts LIKE ? ESCAPE '\\')", query.scanner, quoted)
    sql = (" WHERE " + " AND ".join(clauses)) if clauses else ""
    return sql, params


class SqliteStore:
    """``store = "sqlite:PATH"``. The file (and its WAL) is created mode 0600."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.url = f"sqlite:{self.path}"
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="mxscan-quarantine")
        self._db: sqlite3.Connection | None = None
        self._ready = False

    # -- the store's own thread -------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._call, fn)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self._connection())
        except sqlite3.Error as exc:
            raise StoreError(f"{self.url}: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"{self.url}: {exc.strerror or exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            # Create the file ourselves so it is never world-readable, whatever
            # the umask: SQLite gives the WAL and shared-memory files its mode.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_size == 0:
                    os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout = 10000")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA synchronous = FULL")
            self._db = db
        if not self._ready:
            version = self._version(self._db)
            if version < SCHEMA_VERSION:
                self._migrate(self._db, version)
            elif version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.url}: schema version {version} is newer than this mxscan's "
                    f"{SCHEMA_VERSION}: upgrade mxscan"
                )
            self._ready = True
        return self._db

    @staticmethod
    def _version(db: sqlite3.Connection) -> int:
        return int(db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self, db: sqlite3.Connection, version: int) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = self._version(db)  # another process may have just done it
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number + 1:d}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- the protocol ---------------------------------------------------------

    async def init(self) -> int:
        def run(db: sqlite3.Connection) -> int:
            return self._version(db)

        before = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._peek_version
        )
        await self._run(run)
        return before

    def _peek_version(self) -> int:
        if not self.path.exists():
            return 0
        db = sqlite3.connect(self.path)
        try:
            return self._version(db)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.url}: {exc}") from exc
        finally:
            db.close()

    async def put(self, record: Record, chunks: Iterable[bytes]) -> None:
        def run(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO quarantine (id, stored_at, host, queue_id, sender, recipients, "
                    "client_address, client_name, helo, size, action, score, scanner, reason, "
                    "verdicts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.id, record.stored_at, record.host, record.queue_id,
                        record.sender, json.dumps(list(record.recipients)),
                        record.client_address, record.client_name, record.helo, record.size,
                        record.action, record.score, record.scanner, record.reason,
                        json.dumps(list(record.verdicts)),
                    ),
                )  # fmt: skip
                for seq, chunk in enumerate(chunks):
                    db.execute(
                        "INSERT INTO quarantine_chunk (id, seq, data) VALUES (?, ?, ?)",
                        (record.id, seq, chunk),
                    )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

        await self._run(run)

    async def list(self, query: Filter) -> list[Record]:
        where, params = where_clause(query, lambda n: "?")
        # Constant fragments and placeholders only: every value is a parameter.
        sql = f"SELECT {COLUMNS} FROM quarantine{where} ORDER BY stored_at, id"  # noqa: S608
        if query.limit is not None:
            sql += " LIMIT ?"
            params.append(query.limit)
        return await self._run(lambda db: [Record.from_row(r) for r in db.execute(sql, params)])

    async def get(self, id: str) -> Record | None:
        def run(db: sqlite3.Connection) -> Record | None:
            sql = f"SELECT {COLUMNS} FROM quarantine WHERE id = ?"  # noqa: S608
            row = db.execute(sql, (id,)).fetchone()
            return None if row is None else Record.from_row(row)

        return await self._run(run)

    async def read(self, id: str) -> AsyncIterator[bytes]:
        def chunk(seq: int) -> Callable[[sqlite3.Connection], Any]:
            return lambda db: db.execute(
                "SELECT data FROM quarantine_chunk WHERE id = ? AND seq = ?", (id, seq)
            ).fetchone()

        seq = 0
        while True:
            row = await self._run(chunk(seq))
            if row is None:
                return
            yield bytes(row[0])
            seq += 1

    async def claim_release(self, id: str, to: str, force: bool) -> bool:
        def run(db: sqlite3.Connection) -> bool:
            with db:
                db.execute("BEGIN IMMEDIATE")
                return (
                    db.execute(
                        "UPDATE quarantine SET released_at = ?, released_to = ?, "
                        "releases = releases + 1 WHERE id = ? AND (releases = 0 OR ?)",
                        (time.time(), to, id, int(force)),
                    ).rowcount
                    == 1
                )

        return await self._run(run)

    async def unclaim_release(self, before: Record) -> None:
        def run(db: sqlite3.Connection) -> None:
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute(
                    "UPDATE quarantine SET released_at = ?, released_to = ?, "
                    "releases = max(releases - 1, 0) WHERE id = ?",
                    (before.released_at, before.released_to, before.id),
                )

        await self._run(run)

    async def mark_released(self, id: str, to: str, via: str, as_ham: bool) -> None:
        def run(db: sqlite3.Connection) -> None:
            with db:
                db.execute("BEGIN IMMEDIATE")
                db.execute(
                    "INSERT INTO quarantine_release (id, at, to_addr, via, as_ham) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (id, time.time(), to, via, int(as_ham)),
                )

        await self._run(run)

    async def delete(self, ids: Iterable[str]) -> int:
        wanted = list(ids)

        def run(db: sqlite3.Connection) -> int:
            with db:
                db.execute("BEGIN IMMEDIATE")
                return sum(
                    db.execute("DELETE FROM quarantine WHERE id = ?", (i,)).rowcount for i in wanted
                )

        return await self._run(run)

    async def expire(self, before: float) -> int:
        def run(db: sqlite3.Connection) -> int:
            with db:
                db.execute("BEGIN IMMEDIATE")
                return db.execute("DELETE FROM quarantine WHERE stored_at < ?", (before,)).rowcount

        return await self._run(run)

    async def stats(self) -> dict[str, object]:
        def run(db: sqlite3.Connection) -> dict[str, object]:
            count, size, oldest, newest, released = db.execute(
                "SELECT count(*), coalesce(sum(size), 0), min(stored_at), max(stored_at), "
                "count(released_at) FROM quarantine"
            ).fetchone()
            by_action = dict(
                db.execute("SELECT action, count(*) FROM quarantine GROUP BY action ORDER BY 1")
            )
            return {
                "messages": count, "bytes": size, "oldest": oldest, "newest": newest,
                "released": released, "by_action": by_action,
                "schema_version": self._version(db),
            }  # fmt: skip

        return await self._run(run)

    async def aclose(self) -> None:
        def run() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await asyncio.get_running_loop().run_in_executor(self._executor, run)
        self._executor.shutdown(wait=True)
