"""Scanner conditions and shadow mode: skipped or shadowed, always said in the log."""

from __future__ import annotations

import pytest

from mxscan import (
    Action,
    Conditions,
    Config,
    ConfigError,
    Envelope,
    HeaderEdit,
    Message,
    Pipeline,
    Registry,
    Step,
    format_result,
)
from mxscan.conditions import parse_networks
from tests.support.scanners import FakeScanner


def msg(**envelope: object) -> Message:
    return Message.from_bytes(b"Subject: x\r\n\r\n" + b"y" * 1000, envelope=Envelope(**envelope))  # type: ignore[arg-type]


async def test_skip_authenticated() -> None:
    scanner = FakeScanner("spam", action=Action.DISCARD)
    step = Step(scanner, conditions=Conditions(skip_authenticated=True))
    result = await Pipeline([[step]]).run(msg(auth_user="alice"))
    assert result.action is Action.ACCEPT
    assert result.verdicts[0].token == "skipped(authenticated)"
    assert scanner.seen == []
    result = await Pipeline([[step]]).run(msg())
    assert result.action is Action.DISCARD


@pytest.mark.parametrize(
    ("client", "skipped"),
    [("192.0.2.7", True), ("[192.0.2.8]", True), ("198.51.100.1", False), ("::1", True),
     ("not-an-ip", False), (None, False)],
)  # fmt: skip
async def test_skip_networks(client: str | None, skipped: bool) -> None:
    scanner = FakeScanner("virus", action=Action.REJECT)
    nets = parse_networks(["192.0.2.0/24", "::1"])
    step = Step(scanner, conditions=Conditions(skip_networks=nets))
    result = await Pipeline([[step]]).run(msg(client_address=client))
    assert (result.verdicts[0].token == "skipped(network)") is skipped
    assert (result.action is Action.ACCEPT) is skipped


async def test_max_size_skips_large_messages() -> None:
    step = Step(FakeScanner("s", action=Action.REJECT), conditions=Conditions(max_size=100))
    result = await Pipeline([[step]]).run(msg())
    assert result.verdicts[0].token == "skipped(oversize)"
    assert "over max_size 100" in result.verdicts[0].reason


async def test_shadow_mode_logs_but_applies_nothing() -> None:
    shadowed = FakeScanner(
        "new-rules", action=Action.DISCARD, status="spam", edits=(HeaderEdit.add("X-New", "1"),)
    )
    later = FakeScanner("later")
    result = await Pipeline([[Step(shadowed, shadow=True)], [later]]).run(msg(queue_id="Q"))
    assert result.action is Action.ACCEPT
    assert result.message.get("X-New") is None
    assert len(later.seen) == 1  # a shadow DISCARD does not end the pipeline
    verdict = result.verdicts[0]
    assert verdict.shadow and verdict.action is Action.DISCARD
    assert format_result(result).startswith("Q: new-rules=shadow:spam later=clean action=accept ")


async def test_elapsed_is_recorded() -> None:
    result = await Pipeline([[FakeScanner("s", delay=0.05)]]).run(msg())
    assert result.verdicts[0].elapsed is not None and result.verdicts[0].elapsed >= 0.04


def test_parse_networks_errors() -> None:
    with pytest.raises(ValueError, match="CIDR"):
        parse_networks(["10.0.0.0/33"])
    with pytest.raises(ValueError, match="CIDR"):
        parse_networks([42])  # type: ignore[list-item]


class Sized(FakeScanner):
    def __init__(self, *, name: str, max_size: int | str = "1MiB") -> None:
        super().__init__(name)
        self.max_size = max_size


def registry() -> Registry:
    return Registry({"plain": lambda *, name: FakeScanner(name), "sized": Sized})


def test_config_conditions_and_shadow_mode() -> None:
    config = Config.from_toml(
        """
        [scanner.a]
        plugin = "plain"
        mode = "shadow"
        skip_authenticated = true
        skip_networks = ["10.0.0.0/8"]
        max_size = "10KiB"
        [scanner.b]
        plugin = "sized"
        max_size = "2MiB"
        [policy."example.net"]
        a.mode = "enforce"
        """
    )
    engine = config.build(registry())
    a, b = engine.default.steps
    assert a.shadow and a.conditions.skip_authenticated
    assert a.conditions.max_size == 10 * 1024  # the core handles it: plugin has no max_size
    assert [str(n) for n in a.conditions.skip_networks] == ["10.0.0.0/8"]
    assert b.conditions.max_size is None  # the plugin has its own max_size
    assert b.scanner.max_size == "2MiB"  # type: ignore[attr-defined]
    assert not engine.policies["example.net"].steps[0].shadow


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("mode = 'watch'", "mode: expected one of enforce, shadow"),
        ("skip_authenticated = 'yes'", "skip_authenticated: expected true or false"),
        ("skip_networks = '10.0.0.0/8'", "skip_networks: expected a list"),
        ("skip_networks = ['10.0.0.0/99']", "skip_networks: expected a CIDR block"),
    ],
)
def test_config_condition_errors(table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_toml(f"[scanner.a]\nplugin = 'plain'\n{table}\n")


def test_config_bad_core_max_size() -> None:
    config = Config.from_toml("[scanner.a]\nplugin = 'plain'\nmax_size = 'huge'\n", source="f")
    with pytest.raises(ConfigError, match=r"f: \[scanner.a\] max_size: expected a size"):
        config.build(registry())


def test_config_core_max_size_zero_is_an_error() -> None:
    # 0 would skip the scanner for every message: refused, as plugins refuse it.
    config = Config.from_toml("[scanner.a]\nplugin = 'plain'\nmax_size = 0\n", source="f")
    with pytest.raises(ConfigError, match=r"f: \[scanner.a\] max_size: must be more than 0"):
        config.build(registry())
