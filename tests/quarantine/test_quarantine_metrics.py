"""The quarantine's metrics: copies stored, store errors, store latency, and the
store's message and released counts read at each probe round."""

from __future__ import annotations

from pathlib import Path

import pytest

from mxscan import Action, Envelope, Message, Pipeline, PolicyRouter
from mxscan.quarantine.keeper import Keeper
from mxscan.quarantine.settings import QuarantineSettings
from mxscan.quarantine.sqlite import SqliteStore
from mxscan.quarantine.store import Filter
from tests.support.scanners import FakeScanner

pytest.importorskip("prometheus_client")

from mxscan.service.metrics import Metrics


def engine(store: SqliteStore) -> PolicyRouter:
    scanner = FakeScanner("spam", fn=lambda m: _verdict(m))
    return PolicyRouter(
        Pipeline([[scanner]]), keeper=Keeper(store, QuarantineSettings(store=store.url))
    )


def _verdict(message: Message) -> object:
    from mxscan import Verdict

    subject = message.get("Subject") or ""
    return Verdict(Action.QUARANTINE if "bad" in subject else Action.ACCEPT)


def msg(subject: str) -> Message:
    return Message.from_bytes(f"Subject: {subject}\r\n\r\nx\r\n".encode(),
                              envelope=Envelope(recipients=("b@example.com",)))  # fmt: skip


def value(metrics: Metrics, name: str, **labels: str) -> float:
    got = metrics.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


async def test_stored_failed_and_store_gauges(tmp_path: Path) -> None:
    metrics = Metrics()
    store = SqliteStore(tmp_path / "q.db")
    instrumented = metrics.instrument(engine(store))
    assert value(metrics, "mxscan_quarantined_total", action="quarantine") == 0
    await instrumented.scan(msg("bad one"))
    await instrumented.scan(msg("fine"))
    assert value(metrics, "mxscan_quarantined_total", action="quarantine") == 1
    assert value(metrics, "mxscan_quarantine_store_duration_seconds_count") == 1
    (record,) = await store.list(Filter())
    assert await store.claim_release(record.id, "b@example.com", force=False)
    await metrics.probe(instrumented)
    assert value(metrics, "mxscan_quarantine_messages") == 1
    assert value(metrics, "mxscan_quarantine_released_messages") == 1
    await instrumented.aclose()

    (tmp_path / "dir").mkdir()
    broken = metrics.instrument(engine(SqliteStore(tmp_path / "dir")))
    assert (await broken.scan(msg("bad two"))).action is Action.TEMPFAIL
    assert value(metrics, "mxscan_quarantine_store_errors_total") == 1
    assert value(metrics, "mxscan_quarantine_store_duration_seconds_count") == 2
    await metrics.probe(broken)  # unreadable: the gauges keep their last reading
    assert value(metrics, "mxscan_quarantine_messages") == 1
    await broken.aclose()
