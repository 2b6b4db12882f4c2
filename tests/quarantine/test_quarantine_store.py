"""Every store keeps records and bytes exactly, filters with parameters only, and
upgrades its schema keeping data (run against SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from mxscan.quarantine.record import Record
from mxscan.quarantine.sqlite import MIGRATIONS, SqliteStore
from mxscan.quarantine.store import SCHEMA_VERSION, Filter, Store, StoreError, open_store


def record(**fields: object) -> Record:
    base: dict[str, object] = dict(
        id=f"id{time.monotonic_ns()}", stored_at=time.time(), host="mx1", queue_id="4Q1",
        sender="alice@example.org", recipients=("bob@example.com",), client_address="192.0.2.1",
        client_name="client.example.org", helo="client.example.org", size=10, action="discard",
        score=None, scanner="clamav", reason="infected",
        verdicts=({"scanner": "clamav", "action": "discard", "status": "infected(X)",
                   "score": None, "findings": ["X"], "reason": "infected", "shadow": False},),
    )  # fmt: skip
    base.update(fields)
    return Record(**base)  # type: ignore[arg-type]


async def raw(store: Store, id: str) -> bytes:
    return b"".join([chunk async for chunk in store.read(id)])


async def test_bytes_and_record_come_back_exactly(store: Store) -> None:
    data = bytes(range(256)) * 5000 + b"\r\n.\r\nno final newline\r"  # 1.28 MB, 5+ chunks
    chunks = [data[i : i + 300_000] for i in range(0, len(data), 300_000)]
    r = record(size=len(data), recipients=("a@example.com", "b@example.com"), score=7.5)
    await store.put(r, iter(chunks))
    assert await raw(store, r.id) == data
    got = await store.get(r.id)
    assert got == r
    assert await store.get("missing") is None


async def test_filters(store: Store) -> None:
    now = time.time()
    old = record(id="old", stored_at=now - 3 * 86400, sender="x%y@example.org", score=20.0,
                 scanner="spamassassin", action="reject")  # fmt: skip
    new = record(id="new", stored_at=now, sender="Alice@Example.org", score=3.0)
    for r in (old, new):
        await store.put(r, [b"x"])

    async def ids(**query: object) -> list[str]:
        return [r.id for r in await store.list(Filter(**query))]  # type: ignore[arg-type]

    assert await ids() == ["old", "new"]
    assert await ids(since=now - 86400) == ["new"]
    assert await ids(sender="alice@example") == ["new"]  # any case
    assert await ids(sender="x%y") == ["old"]  # % is literal
    assert await ids(sender="%") == ["old"]
    assert await ids(sender="' OR 1=1 --") == []  # a parameter, never SQL
    assert await ids(rcpt="BOB@") == ["old", "new"]
    assert await ids(action="reject") == ["old"]
    assert await ids(min_score=10) == ["old"]
    assert await ids(scanner="spamassassin") == ["old"]
    assert await ids(scanner="clamav") == ["old", "new"]  # judged by clamav in both
    assert await ids(limit=1) == ["old"]


async def test_release_delete_expire_stats(store: Store) -> None:
    now = time.time()
    a, b = record(id="a", stored_at=now - 100, size=3), record(id="b", stored_at=now, size=4)
    await store.put(a, [b"abc"])
    await store.put(b, [b"abcd"])
    before = await store.get("a")
    assert before is not None and before.releases == 0
    assert await store.claim_release("a", "bob@example.com", force=False) is True
    assert await store.claim_release("a", "eve@example.com", force=False) is False  # once
    got = await store.get("a")
    assert got is not None and got.releases == 1 and got.released_to == "bob@example.com"
    await store.mark_released("a", "bob@example.com", "smtp://127.0.0.1:25", False)
    assert await store.claim_release("a", "carol@example.com", force=True) is True
    claimed = await store.get("a")
    assert claimed is not None and claimed.releases == 2
    await store.unclaim_release(got)  # that send failed: back as it was
    assert await store.get("a") == got
    stats = await store.stats()
    assert stats["messages"] == 2 and stats["bytes"] == 7 and stats["released"] == 1
    assert stats["schema_version"] == SCHEMA_VERSION
    assert await store.expire(now - 50) == 1
    assert [r.id for r in await store.list(Filter())] == ["b"]
    assert await store.delete(["b", "nope"]) == 1
    assert await raw(store, "b") == b""  # the chunks went with the record
    assert await store.list(Filter()) == []


async def test_a_failed_put_leaves_nothing(store: Store) -> None:
    def chunks() -> object:
        yield b"first chunk"
        raise OSError(28, "No space left on device")

    with pytest.raises((StoreError, OSError)):
        await store.put(record(id="half"), chunks())  # type: ignore[arg-type]
    assert await store.list(Filter()) == []
    assert await raw(store, "half") == b""


async def test_sqlite_file_is_private(tmp_path: Path) -> None:
    os.umask(0o022)
    store = SqliteStore(tmp_path / "sub" / "q.db")
    await store.put(record(), [b"x"])
    mode = stat.S_IMODE((tmp_path / "sub" / "q.db").stat().st_mode)
    wal = tmp_path / "sub" / "q.db-wal"
    assert mode == 0o600
    assert stat.S_IMODE(wal.stat().st_mode) == 0o600
    assert (
        sqlite3.connect(tmp_path / "sub" / "q.db").execute("PRAGMA journal_mode").fetchone()[0]
        == "wal"
    )
    await store.aclose()


async def test_sqlite_upgrade_from_version_1_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0])
    db.execute(
        "INSERT INTO quarantine VALUES ('v1', 1.0, 'mx', NULL, 's@x', '[\"r@x\"]', NULL, NULL, "
        "NULL, 3, 'discard', NULL, 'clamav', 'old', '[]')"
    )
    db.execute("INSERT INTO quarantine_chunk VALUES ('v1', 0, x'616263')")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    store = SqliteStore(path)
    assert await store.init() == 1
    got = await store.get("v1")
    assert got is not None and got.reason == "old" and got.releases == 0
    assert await raw(store, "v1") == b"abc"
    assert await store.claim_release("v1", "r@x", force=False)
    await store.mark_released("v1", "r@x", "sendmail:/usr/sbin/sendmail", True)
    assert await store.init() == SCHEMA_VERSION
    await store.aclose()


async def test_sqlite_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    store = SqliteStore(path)
    with pytest.raises(StoreError, match="newer than this mxscan"):
        await store.list(Filter())
    await store.aclose()


def test_open_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_store(f"sqlite:{tmp_path}/q.db"), SqliteStore)
    with pytest.raises(ValueError, match="sqlite:PATH or postgresql"):
        open_store("mysql://x")
    with pytest.raises(ValueError, match="needs a file path"):
        open_store("sqlite:")


async def test_postgres_removes_a_copy_whose_commit_was_in_doubt() -> None:
    """A put that failed after the server may have committed (the connection died
    in COMMIT) was answered TEMPFAIL, so the client sends the message again: the
    row, if it did commit, goes at the next put instead of becoming a duplicate."""
    from tests.support.pg import drop_schema, postgres_store

    store = await postgres_store()
    try:
        committed = record(id="in-doubt")
        await store.put(committed, [b"x"])
        store._in_doubt.add(committed.id)  # type: ignore[attr-defined]  # as put() does
        await store.put(record(id="next"), [b"y"])
        assert [r.id for r in await store.list(Filter())] == ["next"]
        assert not store._in_doubt  # type: ignore[attr-defined]
    finally:
        await store.aclose()
        await drop_schema(store.url, store.schema)  # type: ignore[attr-defined]
