"""Stores for the quarantine tests: SQLite always, PostgreSQL when the private
cluster runs (``scripts/daemons start postgres``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mxscan.quarantine.sqlite import SqliteStore
from mxscan.quarantine.store import Store
from tests.support.pg import drop_schema, postgres_store


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "sqlite":
        store: Store = SqliteStore(tmp_path / "q.db")
    else:
        store = await postgres_store()
    await store.init()
    try:
        yield store
    finally:
        await store.aclose()
        if request.param == "postgresql":
            from mxscan.quarantine.postgres import PostgresStore

            assert isinstance(store, PostgresStore)
            await drop_schema(store.url, store.schema)
