"""Per-recipient-domain policies: one verdict per group of recipients."""

from __future__ import annotations

from mxscan import Action, Envelope, Message, Pipeline, PolicyRouter, Verdict
from mxscan.router import domain_of
from tests.support.scanners import FakeScanner


def threshold_scanner(name: str, threshold: float, score: float = 12.0) -> FakeScanner:
    def fn(message: Message) -> Verdict:
        action = Action.DISCARD if score >= threshold else Action.ACCEPT
        return Verdict(action, score=score, status=f"score({score})")

    return FakeScanner(name, fn=fn)


def engine() -> PolicyRouter:
    return PolicyRouter(
        Pipeline([[threshold_scanner("spam", 15.0)]]),
        {"example.net": Pipeline([[threshold_scanner("spam", 10.0)]])},
    )


def msg(*rcpts: str) -> Message:
    return Message.from_bytes(b"Subject: x\n\nbody\n", envelope=Envelope(recipients=rcpts))


def test_domain_of() -> None:
    assert domain_of("<User@Example.NET>") == "example.net"
    assert domain_of("postmaster") == ""
    assert domain_of("a@b.example.") == "b.example"


async def test_single_policy_runs_one_pipeline() -> None:
    result = await engine().scan(msg("a@example.net", "b@example.net"))
    assert result.splits == ()
    assert result.policy == "example.net"
    assert result.action is Action.DISCARD
    result = await engine().scan(msg("a@example.jp"))
    assert result.policy == "default"
    assert result.action is Action.ACCEPT


async def test_no_recipients_uses_default_policy() -> None:
    result = await engine().scan(msg())
    assert result.policy == "default"


async def test_mixed_recipients_split_by_policy() -> None:
    result = await engine().scan(msg("a@example.net", "b@example.jp", "c@example.net"))
    assert result.policy == "split"
    groups = {g.policy: g for g in result.groups}
    assert groups["example.net"].recipients == ("a@example.net", "c@example.net")
    assert groups["example.net"].action is Action.DISCARD
    assert groups["default"].recipients == ("b@example.jp",)
    assert groups["default"].action is Action.ACCEPT
    assert groups["default"].message.envelope.recipients == ("b@example.jp",)
    # The top level reports the most severe group.
    assert result.action is Action.DISCARD
    assert len(result.verdicts) == 2
