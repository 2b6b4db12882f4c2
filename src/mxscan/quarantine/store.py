"""The store protocol, and the store a ``store = "URL"`` setting names.

Every store keeps a record and its bytes in one transaction: a crash mid-store
leaves nothing that ``list`` shows. Every method is async, so a milter never
blocks its event loop on disk or network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from typing import Protocol

import attrs

from .record import Record

__all__ = ["SCHEMA_VERSION", "Filter", "Store", "StoreError", "open_store"]

#: The schema this code writes; ``init`` upgrades older stores to it.
SCHEMA_VERSION = 2
#: Message bytes per stored chunk: memory stays at one chunk whatever the size.
CHUNK_SIZE = 256 * 1024


class StoreError(Exception):
    """The store cannot take or give a message now (disk full, server down)."""


@attrs.frozen
class Filter:
    """``mxscan quarantine list`` options; None/empty means any."""

    since: float | None = None
    sender: str | None = None
    rcpt: str | None = None
    action: str | None = None
    min_score: float | None = None
    scanner: str | None = None
    limit: int | None = None


class Store(Protocol):
    """What the quarantine needs of a backend (SQLite built in, PostgreSQL)."""

    url: str

    async def init(self) -> int:
        """Create or upgrade the schema, keeping data; returns the version found."""
        ...

    async def put(self, record: Record, chunks: Iterable[bytes]) -> None:
        """Store the record and its bytes atomically (committed on return)."""
        ...

    async def list(self, query: Filter) -> list[Record]: ...

    async def get(self, id: str) -> Record | None: ...

    def read(self, id: str) -> AsyncIterator[bytes]:
        """The message bytes exactly as stored, chunk by chunk."""
        ...

    async def claim_release(self, id: str, to: str, force: bool) -> bool:
        """Count a release about to be sent, atomically: False when the message was
        released before (by anyone, on any host) and ``force`` is not given."""
        ...

    async def unclaim_release(self, before: Record) -> None:
        """The release claimed could not be sent: the counters as in ``before``."""
        ...

    async def mark_released(self, id: str, to: str, via: str, as_ham: bool) -> None:
        """Log a release that was sent (when, to whom, how)."""
        ...

    async def delete(self, ids: Iterable[str]) -> int: ...

    async def expire(self, before: float) -> int: ...

    async def stats(self) -> dict[str, object]: ...

    async def aclose(self) -> None: ...


def open_store(url: str) -> Store:
    """The store for ``url``: ``sqlite:PATH`` or ``postgresql://...``."""
    if url.startswith("sqlite:"):
        from .sqlite import SqliteStore

        path = url.removeprefix("sqlite:")
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ValueError("sqlite: needs a file path (sqlite:/var/lib/mxscan/quarantine.db)")
        return SqliteStore(path)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"store must be sqlite:PATH or postgresql://..., not {url!r}")
