"""The scanner's verdicts and options, with a fake clamd giving chosen answers."""

from __future__ import annotations

import asyncio
import importlib.metadata
from pathlib import Path

import pytest
from clamav_support import Behaviour, FakeFactory, answer, die_after, never_answer, over_limit

from mxscan import (
    Action,
    ConfigError,
    Message,
    Pipeline,
    ScannerError,
    Step,
    Verdict,
    load_config,
)
from mxscan_clamav import ClamAV
from mxscan_clamav.options import format_reject_message

GUARD = 20

MESSAGE = (
    b"Received: from x by y; Thu, 27 Nov 2026 10:00:00 +0000\r\n"
    b"X-Virus-Status: Clean\r\n"
    b"From: sender@example.org\r\n"
    b"x-virus-scanned: forged by the sender\r\n"
    b"To: rcpt@example.net\r\n"
    b"X-VIRUS-STATUS: Clean\r\n"
    b"Subject: hello\r\n"
    b"\r\n"
    b"body\r\n"
)


def message(data: bytes = MESSAGE) -> Message:
    return Message.from_bytes(data)


def x_virus(msg: Message) -> list[tuple[str, str]]:
    return [(h.name, h.value) for h in msg.headers if h.name.lower().startswith("x-virus-")]


async def scan(scanner: ClamAV, msg: Message | None = None) -> Verdict:
    async with asyncio.timeout(GUARD):
        return await scanner.scan(msg or message())


def clamav(address: str, **options: object) -> ClamAV:
    return ClamAV("clamav", address=address, hostname="mx.example.net", **options)  # type: ignore[arg-type]


async def test_clean_replaces_forged_headers(fake_clamd: FakeFactory) -> None:
    fake = await fake_clamd(answer(b"stream: OK\0"))
    msg = message()
    verdict = await scan(clamav(fake.address), msg)
    assert verdict.action is Action.ACCEPT
    assert verdict.status == "clean"
    assert verdict.findings == ()
    edited = msg.apply(verdict.edits)
    assert x_virus(edited) == [
        ("X-Virus-Scanned", "mxscan-clamav 0.1.0 at mx.example.net"),
        ("X-Virus-Status", "Clean"),
    ]
    # Everything else is untouched, byte for byte.
    assert [h.raw for h in edited.headers if not h.name.lower().startswith("x-virus-")] == [
        h.raw for h in msg.headers if not h.name.lower().startswith("x-virus-")
    ]
    # clamd got the message exactly, streamed.
    assert bytes(fake.requests[0].payload) == MESSAGE


async def test_no_headers_when_disabled(fake_clamd: FakeFactory) -> None:
    fake = await fake_clamd(answer(b"stream: OK\0"))
    verdict = await scan(clamav(fake.address, add_headers=False))
    assert verdict.edits == ()


@pytest.mark.parametrize(
    ("on_infected", "action"),
    [
        ("discard", Action.DISCARD),
        ("reject", Action.REJECT),
        ("quarantine", Action.QUARANTINE),
        ("accept-and-tag", Action.ACCEPT),
    ],
)
async def test_infected_actions(fake_clamd: FakeFactory, on_infected: str, action: Action) -> None:
    fake = await fake_clamd(answer(b"stream: Win.Test.EICAR_HDB-1 FOUND\0"))
    msg = message()
    verdict = await scan(clamav(fake.address, on_infected=on_infected), msg)
    assert verdict.action is action
    assert verdict.status == "infected(Win.Test.EICAR_HDB-1)"
    assert verdict.findings == ("Win.Test.EICAR_HDB-1",)
    assert "Win.Test.EICAR_HDB-1" in verdict.reason
    assert x_virus(msg.apply(verdict.edits))[-1] == (
        "X-Virus-Status",
        "Infected (Win.Test.EICAR_HDB-1)",
    )
    if action is Action.REJECT:
        assert str(verdict.reply) == "550 5.7.1 Virus found: Win.Test.EICAR_HDB-1"
    else:
        assert verdict.reply is None


async def test_accept_and_tag_tags_even_without_add_headers(fake_clamd: FakeFactory) -> None:
    fake = await fake_clamd(answer(b"stream: Bad.Thing FOUND\0"))
    msg = message()
    verdict = await scan(clamav(fake.address, on_infected="accept-and-tag", add_headers=False), msg)
    assert x_virus(msg.apply(verdict.edits)) == [
        ("X-Virus-Scanned", "mxscan-clamav 0.1.0 at mx.example.net"),
        ("X-Virus-Status", "Infected (Bad.Thing)"),
    ]


async def test_reject_message_template(fake_clamd: FakeFactory) -> None:
    fake = await fake_clamd(answer(b"stream: Bad.Thing FOUND\0"))
    verdict = await scan(
        clamav(fake.address, on_infected="reject", reject_message="100%% sure: %v is bad")
    )
    assert verdict.reply is not None and verdict.reply.text == "100% sure: Bad.Thing is bad"


def test_format_reject_message() -> None:
    assert format_reject_message("Virus found: %s", "X") == "Virus found: X"
    assert format_reject_message("%v / %s / %% / 5%", "X") == "X / X / % / 5%"


TAGGED = [
    ("X-Virus-Scanned", "mxscan-clamav 0.1.0 at mx.example.net"),
    ("X-Virus-Status", "Infected (Heuristics.Encrypted.Zip)"),
]


@pytest.mark.parametrize(
    ("heuristics", "action", "status", "headers"),
    [
        ("infected", Action.DISCARD, "infected(Heuristics.Encrypted.Zip)", None),
        ("tag", Action.ACCEPT, "heuristic(Heuristics.Encrypted.Zip)", TAGGED),
        ("ignore", Action.ACCEPT, "clean", None),
    ],
)
async def test_heuristics_only(
    fake_clamd: FakeFactory,
    heuristics: str,
    action: Action,
    status: str,
    headers: list[tuple[str, str]] | None,
) -> None:
    """With add_headers off, only "tag" changes the header."""
    fake = await fake_clamd(answer(b"stream: Heuristics.Encrypted.Zip FOUND\0"))
    msg = message()
    verdict = await scan(clamav(fake.address, heuristics=heuristics, add_headers=False), msg)
    assert verdict.action is action
    assert verdict.status == status
    assert "Heuristics.Encrypted.Zip" in verdict.reason
    if headers is None:
        assert verdict.edits == ()
    else:
        assert x_virus(msg.apply(verdict.edits)) == headers


async def test_a_real_signature_wins_over_ignored_heuristics(fake_clamd: FakeFactory) -> None:
    fake = await fake_clamd(
        answer(b"stream: Heuristics.Encrypted.Zip FOUND\0stream: Real.Virus FOUND\0")
    )
    verdict = await scan(clamav(fake.address, heuristics="ignore"))
    assert verdict.action is Action.DISCARD
    assert verdict.findings == ("Heuristics.Encrypted.Zip", "Real.Virus")


@pytest.mark.parametrize(
    ("on_oversize", "action", "reply"),
    [
        ("accept-and-log", Action.ACCEPT, None),
        ("tempfail", Action.TEMPFAIL, "452 4.3.4 Message too large to scan for viruses"),
        ("reject", Action.REJECT, "552 5.3.4 Message too large to scan for viruses"),
    ],
)
async def test_over_max_size_is_not_sent_and_never_silent(
    fake_clamd: FakeFactory, on_oversize: str, action: Action, reply: str | None
) -> None:
    fake = await fake_clamd(answer(b"stream: OK\0"))
    msg = message()
    verdict = await scan(clamav(fake.address, max_size=100, on_oversize=on_oversize), msg)
    assert fake.requests == []
    assert verdict.action is action
    assert verdict.status == "skipped(oversize)"
    assert f"message is {msg.size} bytes, over max_size 100" in verdict.reason
    assert "not scanned" in verdict.reason
    assert (str(verdict.reply) if verdict.reply else None) == reply
    # The sender's claims are removed, nothing claims a scan that did not happen.
    assert x_virus(msg.apply(verdict.edits)) == []


async def test_clamd_stream_limit_gets_the_oversize_outcome(fake_clamd: FakeFactory) -> None:
    fake = await fake_clamd(over_limit(64 * 1024), "inet")
    big = message(MESSAGE + b"x" * 5_000_000)
    verdict = await scan(clamav(fake.address, on_oversize="tempfail"), big)
    assert verdict.action is Action.TEMPFAIL
    assert verdict.status == "skipped(oversize)"
    assert "StreamMaxLength" in verdict.reason
    assert "INSTREAM size limit exceeded" in verdict.reason


async def test_message_exactly_max_size_is_scanned(fake_clamd: FakeFactory) -> None:
    fake = await fake_clamd(answer(b"stream: OK\0"))
    msg = message()
    verdict = await scan(clamav(fake.address, max_size=msg.size), msg)
    assert verdict.status == "clean" and len(fake.requests) == 1


@pytest.mark.parametrize(
    ("behaviour", "words"),
    [
        (answer(b"garbage\0"), "unexpected reply: 'garbage'"),
        (answer(b"stream: Can't allocate memory ERROR\0"), "replied \"stream: Can't allocate"),
        (die_after(10), "closed the connection"),
        (never_answer, "no answer within"),
    ],
)
async def test_failures_are_scanner_errors_naming_the_address(
    fake_clamd: FakeFactory,
    behaviour: Behaviour,
    words: str,
) -> None:
    fake = await fake_clamd(behaviour)
    # A short timeout only where it is the failure under test: the fake's answers
    # must not race it on a loaded machine.
    timeout = 1 if behaviour is never_answer else 10
    with pytest.raises(ScannerError) as info:
        await scan(clamav(fake.address, timeout=timeout), message(MESSAGE + b"y" * 100_000))
    assert str(info.value).startswith(f"clamd at {fake.address}: ")
    assert words in str(info.value)


async def test_all_dead_through_the_pipeline_is_tempfail(dead_unix: str, closed_port: str) -> None:
    pipeline = Pipeline([[Step(ClamAV("clamav", address=[dead_unix, closed_port]))]])
    async with asyncio.timeout(GUARD):
        result = await pipeline.run(message())
    assert result.action is Action.TEMPFAIL
    (verdict,) = result.verdicts
    assert verdict.status == "error(failed)"
    assert dead_unix in verdict.reason and closed_port in verdict.reason


async def test_slow_clamd_through_the_pipeline_reports_our_error(
    fake_clamd: FakeFactory,
) -> None:
    """The scanner's deadline is just under the pipeline's, so the log line names
    the clamd and what it was doing."""
    fake = await fake_clamd(never_answer)
    # 10 s, not 1 s: our deadline is 5% (at most 1 s) under the pipeline's, and a
    # loop stalled past both (a loaded CI machine) lets the pipeline's win.
    step = Step(ClamAV("clamav", address=fake.address, timeout=10.0), timeout=10.0)
    async with asyncio.timeout(GUARD):
        result = await Pipeline([[step]]).run(message())
    assert result.action is Action.TEMPFAIL
    assert result.verdicts[0].status == "error(failed)"
    assert f"clamd at {fake.address}: no answer within" in result.verdicts[0].reason


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (
            {"on_infected": "delete"},
            "on_infected: expected one of discard, reject, quarantine, accept-and-tag",
        ),
        (
            {"on_oversize": "accept"},
            "on_oversize: expected one of accept-and-log, tempfail, reject",
        ),
        ({"heuristics": "maybe"}, "heuristics: expected one of infected, tag, ignore"),
        ({"address": "localhost:3310"}, "address: expected an address"),
        ({"address": []}, "address: expected at least one address"),
        ({"address": 3310}, "address: expected an address or a list"),
        ({"timeout": "soon"}, "timeout: expected a duration"),
        ({"timeout": 0}, "timeout: must be more than 0 seconds"),
        ({"max_size": "big"}, "max_size: expected a size"),
        ({"add_headers": "yes"}, "add_headers: expected true or false"),
        ({"reject_message": "a\r\nb"}, "reject_message: must be one printable line"),
    ],
)
def test_bad_options_name_the_option(options: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        ClamAV("clamav", **options)  # type: ignore[arg-type]
    assert words in str(info.value)


def test_options_accept_admin_units() -> None:
    scanner = ClamAV("c", address="inet:127.0.0.1:3310", timeout="2m", max_size="10MiB")
    assert scanner.options.timeout == 120.0
    assert scanner.options.max_size == 10 * 1024 * 1024
    assert scanner.options.connect_timeout == 5.0


def test_entry_point_names_the_class() -> None:
    (entry,) = importlib.metadata.entry_points(group="mxscan.scanners", name="clamav")
    assert entry.load() is ClamAV


async def test_configured_from_toml(fake_clamd: FakeFactory, tmp_path: Path) -> None:
    fake = await fake_clamd(answer(b"stream: Bad.Thing FOUND\0"))
    config = tmp_path / "mxscan.toml"
    config.write_text(
        f"""
[scanner.av]
plugin = "clamav"
address = ["{fake.address}"]
on_infected = "reject"
reject_message = "Go away: %s"
timeout = "5s"

[[stage]]
run = ["av"]
"""
    )
    engine = load_config(config).build()
    try:
        async with asyncio.timeout(GUARD):
            result = await engine.scan(message())
    finally:
        await engine.aclose()
    assert result.action is Action.REJECT
    assert str(result.verdict.smtp_reply) == "550 5.7.1 Go away: Bad.Thing"
    assert result.verdicts[0].scanner == "av"


def test_bad_option_in_toml_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "mxscan.toml"
    config.write_text(
        '[scanner.av]\nplugin = "clamav"\non_infected = "explode"\n[[stage]]\nrun = ["av"]\n'
    )
    with pytest.raises(ConfigError, match=r"\[scanner\.av\].*on_infected"):
        load_config(config).build()
