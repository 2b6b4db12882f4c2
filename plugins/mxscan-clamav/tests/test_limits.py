"""clamd's limits: a scan cut short is ``unchecked(LIMIT)`` with its own
``on_limits`` outcome, never infected and never clean; and the probe that tells
whether a clamd reports its limits at all."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from clamav_support import EICAR_NAME, FakeFactory, answer, read_stream

from mxscan import Action, ConfigError, Message, ScannerError
from mxscan_clamav import ClamAV, LimitsProbe
from mxscan_clamav.probe import PROBE_DEPTH, probe_file
from tests.support import hostile
from tests.support.daemons import corpus_dir

MESSAGE = (
    b"From: a@example.org\r\nTo: b@example.net\r\nSubject: x\r\n"
    b"X-Virus-Status: Clean\r\n\r\nbody\r\n"
)
LIMIT = b"Heuristics.Limits.Exceeded.MaxRecursion"


def found(*names: bytes) -> bytes:
    """clamd's reply; with AllMatchScanning, one ``FOUND`` per match."""
    return b"".join(b"stream: " + name + b" FOUND\0" for name in names)


async def scan(fake_address: str, **options: object) -> tuple[ClamAV, Message, object]:
    scanner = ClamAV(address=fake_address, timeout=10, hostname="mx.test", **options)  # type: ignore[arg-type]
    message = Message.from_bytes(MESSAGE)
    return scanner, message, await scanner.scan(message)


async def test_a_limit_is_unchecked_and_tempfails_by_default(fake_clamd: FakeFactory) -> None:
    fake = await fake_clamd(answer(found(LIMIT)))
    _, message, verdict = await scan(fake.address)
    assert verdict.action is Action.TEMPFAIL  # type: ignore[attr-defined]
    assert verdict.token == "unchecked(MaxRecursion)"  # type: ignore[attr-defined]
    assert str(verdict.smtp_reply) == (  # type: ignore[attr-defined]
        "451 4.7.0 Message could not be fully scanned for viruses"
    )
    assert "clamd stopped at its limit (Heuristics.Limits.Exceeded.MaxRecursion)" in (
        verdict.reason  # type: ignore[attr-defined]
    )
    # the sender's forged "Clean" goes, and no status of ours claims anything
    edited = message.apply(verdict.edits)  # type: ignore[attr-defined]
    assert edited.get_all("X-Virus-Status") == []


@pytest.mark.parametrize(
    ("on_limits", "action", "reply", "status"),
    [
        ("reject", Action.REJECT, "554 5.7.0 Message could not be fully scanned for viruses", []),
        ("quarantine", Action.QUARANTINE, None, []),
        ("accept-and-tag", Action.ACCEPT, None, ["Unchecked (MaxRecursion, MaxFiles)"]),
    ],
)
async def test_on_limits_choices(
    fake_clamd: FakeFactory, on_limits: str, action: Action, reply: str | None, status: list[str]
) -> None:
    fake = await fake_clamd(answer(found(LIMIT, b"Heuristics.Limits.Exceeded.MaxFiles")))
    _, message, verdict = await scan(fake.address, on_limits=on_limits)
    assert verdict.action is action  # type: ignore[attr-defined]
    assert verdict.token == "unchecked(MaxRecursion,MaxFiles)"  # type: ignore[attr-defined]
    got = verdict.smtp_reply  # type: ignore[attr-defined]
    assert (str(got) if got else None) == reply
    assert message.apply(verdict.edits).get_all("X-Virus-Status") == status  # type: ignore[attr-defined]


async def test_a_real_virus_next_to_a_limit_is_infected(fake_clamd: FakeFactory) -> None:
    fake = await fake_clamd(answer(found(LIMIT, EICAR_NAME.encode())))
    _, _, verdict = await scan(fake.address)
    assert verdict.action is Action.DISCARD  # type: ignore[attr-defined]
    assert verdict.token.startswith("infected(")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("heuristics", "token"),
    [("infected", "infected(Heuristics.Encrypted.Zip)"), ("tag", "unchecked(MaxRecursion)")],
)
async def test_other_heuristics_next_to_a_limit(
    fake_clamd: FakeFactory, heuristics: str, token: str
) -> None:
    fake = await fake_clamd(answer(found(b"Heuristics.Encrypted.Zip", LIMIT)))
    _, _, verdict = await scan(fake.address, heuristics=heuristics)
    assert verdict.token == token  # type: ignore[attr-defined]


def test_bad_on_limits_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="on_limits"):
        ClamAV(address="unix:/nowhere", on_limits="accept")


async def test_the_probe_reads_the_answer(fake_clamd: FakeFactory) -> None:
    alerting = await fake_clamd(answer(found(LIMIT)))
    silent = await fake_clamd(answer(b"stream: OK\0"), transport="inet")
    scanner = ClamAV(address=[alerting.address, silent.address], timeout=10)
    first, second = await scanner.probe_limits()
    assert first == LimitsProbe(True, (LIMIT.decode(),), alerting.address)
    assert first.problem is None
    assert not second.alerts
    assert second.problem is not None
    assert f"clamd at {silent.address} answered OK" in second.problem
    assert "AlertExceedsMax yes" in second.problem
    # each address got the probe itself, not a failover's share of it
    assert [r.payload for r in alerting.requests] == [bytearray(probe_file())]
    assert [r.payload for r in silent.requests] == [bytearray(probe_file())]


# -- the real clamd ------------------------------------------------------------------

#: What clamd 1.4 (defaults: MaxRecursion 17, MaxFiles 10000, MaxScanSize 400M)
#: stops at, for each hostile message, read from real runs.
EXPECTED = {
    "nested-zips-20": "unchecked(MaxRecursion)",
    "parts-12000": "unchecked(MaxFiles)",
    "depth-30": "unchecked(MaxRecursion)",
    "depth-1000": "unchecked(MaxRecursion)",
    "zip-bomb": "unchecked(MaxScanSize)",
}


@pytest.mark.clamd
@pytest.mark.parametrize("virus", [True, False], ids=["eicar", "harmless"])
@pytest.mark.parametrize("name", list(hostile.HOSTILE))
async def test_real_clamd_with_alert_exceeds_max(
    alerting_clamd: dict[str, str], name: str, virus: bool
) -> None:
    """The same outcome with and without EICAR: the limit decides, not the virus."""
    scanner = ClamAV(address=alerting_clamd["unix"], timeout=120)
    verdict = await scanner.scan(Message.from_bytes(hostile.HOSTILE[name](virus)))
    assert (verdict.token, verdict.action) == (EXPECTED[name], Action.TEMPFAIL)


@pytest.mark.clamd
@pytest.mark.parametrize("name", ["nested-zips-20", "depth-30"])
async def test_real_clamd_without_it_calls_the_virus_clean(
    silent_clamd: dict[str, str], name: str
) -> None:
    """Why AlertExceedsMax matters (and why the core checks MIME limits itself)."""
    scanner = ClamAV(address=silent_clamd["unix"], timeout=60)
    verdict = await scanner.scan(Message.from_bytes(hostile.HOSTILE[name](True)))
    assert verdict.token == "clean"


@pytest.mark.clamd
async def test_the_probe_against_real_clamds(
    alerting_clamd: dict[str, str], silent_clamd: dict[str, str]
) -> None:
    scanner = ClamAV(address=[alerting_clamd["unix"], silent_clamd["inet"]], timeout=30)
    alerting, silent = await scanner.probe_limits()
    assert alerting.alerts
    assert alerting.signatures == ("Heuristics.Limits.Exceeded.MaxRecursion",)
    assert not silent.alerts
    assert silent.signatures == ()
    assert silent.problem is not None
    assert f"nested {PROBE_DEPTH} zips deep" in silent.problem


@pytest.mark.clamd
@pytest.mark.corpus
async def test_real_mail_is_unchecked_only_where_clamd_really_stopped(
    alerting_clamd: dict[str, str], silent_clamd: dict[str, str]
) -> None:
    """The 1,000 real messages of the corpus with AlertExceedsMax on: clean (the
    project's signatures know only EICAR), or ``unchecked`` only where clamd
    really did not scan the rest: EICAR appended to that message's body is then
    missed too, while a clamd without AlertExceedsMax (which parses on past its
    mail-parser limits) finds it. No false ``unchecked``."""
    listing = corpus_dir("postmap-oracle", "header_keys.jsonl")
    # split on "\n" only: splitlines() would also cut at separators inside the JSON
    lines = [line for line in listing.read_text().split("\n") if line]
    paths = [corpus_dir() / json.loads(line)["path"] for line in lines]
    assert len(paths) == 1000
    alerting = ClamAV(address=alerting_clamd["unix"], timeout=60)
    silent = ClamAV(address=silent_clamd["unix"], timeout=60)
    semaphore = asyncio.Semaphore(4)

    async def one(path: Path) -> tuple[Path, str]:
        async with semaphore:
            message = Message.from_file(path)
            try:
                return path, (await alerting.scan(message)).token
            finally:
                message.close()

    async with asyncio.timeout(600):
        tokens = await asyncio.gather(*(one(p) for p in paths))
    others = [(p, t) for p, t in tokens if t != "clean"]
    assert all(t.startswith("unchecked(") for _, t in others), others
    assert len(others) <= 5, others  # a handful of pathological messages at most
    for path, token in others:
        data = path.read_bytes()
        eol = b"\r\n" if b"\r\n" in data else b"\n"
        with_eicar = Message.from_bytes(data + eol + hostile.payload(True) + eol)
        assert (await alerting.scan(with_eicar)).token == token, path
        assert (await silent.scan(with_eicar)).token == f"infected({EICAR_NAME})", path


def test_each_outcome_choice_takes_the_action_it_names() -> None:
    from mxscan_clamav.options import OnInfected, OnLimits, OnOversize

    assert {c.value: c.action for c in OnLimits} == {
        "tempfail": Action.TEMPFAIL,
        "reject": Action.REJECT,
        "quarantine": Action.QUARANTINE,
        "accept-and-tag": Action.ACCEPT,
    }
    assert OnInfected.DISCARD.action is Action.DISCARD
    assert OnInfected.ACCEPT_AND_TAG.action is Action.ACCEPT
    assert OnOversize.ACCEPT_AND_LOG.action is Action.ACCEPT


def ping_then(reply: bytes):  # type: ignore[no-untyped-def]
    """A clamd that answers PONG to zPING and ``reply`` to a scan."""

    async def behave(fake, request, reader, writer):  # type: ignore[no-untyped-def]
        if request.command == b"zINSTREAM":
            await read_stream(request, reader)
            writer.write(reply)
        else:
            writer.write(b"PONG\0")
        await writer.drain()

    return behave


async def test_config_check_probes_ping_and_ask_about_limits(fake_clamd: FakeFactory) -> None:
    alerting = await fake_clamd(ping_then(found(LIMIT)))
    silent = await fake_clamd(ping_then(b"stream: OK\0"), transport="inet")
    scanner = ClamAV(address=[alerting.address, silent.address], timeout=10)
    (first, probe_ok), (second, probe_silent) = scanner.probes()
    assert (first, second) == (alerting.address, silent.address)
    assert await probe_ok() == "PONG, reports its limits"
    with pytest.raises(ScannerError, match=r"answered OK for a file nested 64 zips deep"):
        await probe_silent()
    assert [r.command for r in silent.requests] == [b"zPING", b"zINSTREAM"]
