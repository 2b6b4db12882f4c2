"""The engine's quarantine step: what is kept, what the MTA is told, and what a
store that cannot take the copy does to the answer."""

from __future__ import annotations

from pathlib import Path

import pytest

from mxscan import Action, Envelope, Message, Pipeline, PolicyRouter
from mxscan.quarantine.keeper import Keeper
from mxscan.quarantine.settings import QuarantineSettings
from mxscan.quarantine.sqlite import SqliteStore
from mxscan.quarantine.store import Filter
from tests.support.scanners import FakeScanner

RAW = b"Subject: test\r\nFrom: a@example.org\r\n\r\nbody line\r\n"


def message(*rcpts: str) -> Message:
    envelope = Envelope(sender="a@example.org", recipients=rcpts or ("b@example.com",),
                        client_address="192.0.2.7", helo="client.example", queue_id="4QX")  # fmt: skip
    return Message.from_bytes(RAW, envelope=envelope)


def engine(store: SqliteStore, action: Action, **settings: object) -> PolicyRouter:
    scanner = FakeScanner("spam", action=action, score=12.5, findings=("GTUBE",),
                          reason="spam", status="spam(12.5)")  # fmt: skip
    keeper = Keeper(store, QuarantineSettings(store=store.url, **settings))  # type: ignore[arg-type]
    return PolicyRouter(Pipeline([[scanner]]), keeper=keeper)


@pytest.fixture
async def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "q.db")


async def test_quarantine_is_stored_and_answered_as_discard(store: SqliteStore) -> None:
    result = await engine(store, Action.QUARANTINE).scan(message())
    assert result.action is Action.DISCARD
    (record,) = await store.list(Filter())
    assert result.verdict.status == f"spam(12.5)+quarantined({record.id})"
    assert record.action == "quarantine" and record.score == 12.5
    assert record.sender == "a@example.org" and record.recipients == ("b@example.com",)
    assert (record.client_address, record.helo, record.queue_id) == (
        "192.0.2.7",
        "client.example",
        "4QX",
    )
    assert record.findings == ["GTUBE"] and record.size == len(RAW)
    assert b"".join([c async for c in store.read(record.id)]) == RAW
    await store.aclose()


@pytest.mark.parametrize("action", [Action.DISCARD, Action.REJECT])
async def test_discard_and_reject_keep_a_copy_and_their_answer(
    store: SqliteStore, action: Action
) -> None:
    result = await engine(store, action).scan(message())
    assert result.action is action
    assert [r.action for r in await store.list(Filter())] == [str(action)]
    await store.aclose()


async def test_accept_keeps_nothing(store: SqliteStore) -> None:
    assert (await engine(store, Action.ACCEPT).scan(message())).action is Action.ACCEPT
    assert await store.list(Filter()) == []
    await store.aclose()


async def test_keep_copy_globally_and_per_scanner(store: SqliteStore) -> None:
    only_discard = frozenset({"discard"})
    await engine(store, Action.REJECT, keep_copy=only_discard).scan(message())
    assert await store.list(Filter()) == []
    # The deciding scanner's own list wins over the global one.
    await engine(store, Action.REJECT, keep_copy=only_discard,
                 per_scanner={"spam": frozenset({"reject"})}).scan(message())  # fmt: skip
    assert [r.action for r in await store.list(Filter())] == ["reject"]
    await store.aclose()


async def test_a_store_that_fails_tempfails(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    broken = SqliteStore(tmp_path / "dir")  # a directory, not a database file
    for action in (Action.QUARANTINE, Action.DISCARD, Action.REJECT):
        result = await engine(broken, action).scan(message())
        assert result.action is Action.TEMPFAIL
        assert str(result.verdict.smtp_reply) == "451 4.3.0 Quarantine unavailable, try again later"
        assert result.verdict.status == "error(store)"
    # on_store_error = "proceed": the admin accepts losing the copy.
    result = await engine(broken, Action.QUARANTINE, on_store_error="proceed").scan(message())
    assert result.action is Action.DISCARD
    await broken.aclose()


async def test_over_max_size_a_quarantine_is_held_not_stored(store: SqliteStore) -> None:
    result = await engine(store, Action.QUARANTINE, max_size=10).scan(message())
    assert result.action is Action.QUARANTINE  # Postfix's hold queue: never dropped
    assert await store.list(Filter()) == []
    await store.aclose()


async def test_hold_mode_keeps_postfix_hold(store: SqliteStore) -> None:
    result = await engine(store, Action.QUARANTINE, quarantine_action="hold",
                          keep_copy=frozenset({"discard"})).scan(message())  # fmt: skip
    assert result.action is Action.QUARANTINE
    assert await store.list(Filter()) == []
    # ... and with "quarantine" in keep_copy a copy is kept next to the held mail.
    result = await engine(store, Action.QUARANTINE, quarantine_action="hold").scan(message())
    assert result.action is Action.QUARANTINE
    assert len(await store.list(Filter())) == 1
    await store.aclose()


async def test_split_recipients_each_group_is_kept_with_its_recipients(
    store: SqliteStore,
) -> None:
    keeper = Keeper(store, QuarantineSettings(store=store.url))
    strict = FakeScanner("spam", action=Action.QUARANTINE, score=9.0)
    lax = FakeScanner("spam", action=Action.ACCEPT, score=9.0)
    eng = PolicyRouter(Pipeline([[lax]]), {"example.net": Pipeline([[strict]])}, keeper=keeper)
    result = await eng.scan(message("a@example.com", "b@example.net"))
    assert [g.action for g in result.splits] == [Action.ACCEPT, Action.DISCARD]
    assert result.action is Action.DISCARD
    (record,) = await store.list(Filter())
    assert record.recipients == ("b@example.net",)
    await store.aclose()
