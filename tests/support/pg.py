"""The private PostgreSQL of scripts/daemons, for the quarantine tests."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from mxscan.quarantine.store import Store
from tests.support.daemons import _env_file_values, daemons_required


def postgres_url() -> str | None:
    """$MXSCAN_POSTGRES_URL, or the one scripts/daemons wrote to the env file;
    None when its socket is not there (the cluster is not running)."""
    url = os.environ.get("MXSCAN_POSTGRES_URL") or _env_file_values().get("MXSCAN_POSTGRES_URL")
    if not url:
        return None
    query = parse_qs(urlsplit(url).query)
    host, port = query.get("host", [""])[0], query.get("port", ["5432"])[0]
    if host and not (Path(host) / f".s.PGSQL.{port}").exists():
        return None
    return url


def require_postgres() -> str:
    url = postgres_url()
    if url is None:
        reason = "the private PostgreSQL is not running (scripts/daemons start postgres)"
        if daemons_required():
            pytest.fail(f"MXSCAN_REQUIRE_DAEMONS=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return url


def fresh_schema() -> str:
    """A schema of the test's own, so tests never see each other's rows."""
    return f"t_{os.getpid()}_{secrets.token_hex(4)}"


async def postgres_store() -> Store:
    from mxscan.quarantine.postgres import PostgresStore

    return PostgresStore(require_postgres(), schema=fresh_schema())


async def drop_schema(url: str, schema: str) -> None:
    """Remove a test's schema and its rows from the shared cluster."""
    import asyncpg  # type: ignore[import-untyped,import-not-found,unused-ignore]

    con = await asyncpg.connect(url)
    try:
        await con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await con.close()
