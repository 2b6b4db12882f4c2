"""The private PostgreSQL cluster of scripts/daemons, for the quarantine tests."""

from __future__ import annotations

import os
import secrets

import pytest

from mxscan.quarantine.store import Store
from tests.support.daemons import daemons_required, run_dir


def postgres_url(database: str = "mxscan") -> str | None:
    """The cluster's URL (a unix socket under the run directory), None when not up."""
    sock_dir = run_dir() / "postgres"
    if not (sock_dir / ".s.PGSQL.5432").exists():
        return None
    return f"postgresql://mxscan@/{database}?host={sock_dir}"


async def postgres_store() -> Store:
    """A store in a fresh schema of its own, so tests never see each other's rows."""
    from mxscan.quarantine.postgres import PostgresStore

    url = postgres_url()
    if url is None:
        reason = "the private PostgreSQL is not running (scripts/daemons start postgres)"
        if daemons_required():
            pytest.fail(f"MXSCAN_REQUIRE_DAEMONS=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    schema = f"t_{os.getpid()}_{secrets.token_hex(4)}"
    return PostgresStore(url, schema=schema)
