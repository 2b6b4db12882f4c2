"""Verdict._recorded (the pipeline's stamp: name, shadow, elapsed) writes every
field out by hand for speed: a field added to Verdict must be added there."""

from __future__ import annotations

import attrs

from mxscan import Action, HeaderEdit, Route, SmtpReply, Verdict
from mxscan.body import Body

STAMPED = {"scanner", "shadow", "elapsed", "waited"}


def test_recorded_knows_every_field() -> None:
    assert {f.name for f in attrs.fields(Verdict)} == {
        *STAMPED, "action", "reason", "status", "score", "threshold", "findings", "edits", "reply",
        "routes", "body", "skip", "error", "unchecked",
    }  # fmt: skip


def test_recorded_keeps_everything_but_the_stamp() -> None:
    verdict = Verdict(
        action=Action.REJECT,
        scanner="from-scanner",
        reason="why",
        status="infected(X)",
        score=7.5,
        threshold=5.0,
        findings=("a", "b"),
        edits=(HeaderEdit.add("X-A", "1"),),
        reply=SmtpReply(550, "5.7.1", "no"),
        routes=(Route("bcc", "audit@example.com"),),
        body=Body(b"new body"),
        shadow=False,
        elapsed=None,
    )
    recorded = verdict._recorded("configured-name", True, 0.25, 0.125)
    assert recorded == attrs.evolve(
        verdict, scanner="configured-name", shadow=True, elapsed=0.25, waited=0.125
    )
    for field in attrs.fields(Verdict):
        if field.name not in STAMPED:
            assert getattr(recorded, field.name) is getattr(verdict, field.name), field.name


def test_recorded_keeps_the_state_fields() -> None:
    for verdict in (
        Verdict.skipped("oversize", reason="big"),
        Verdict(action=Action.TEMPFAIL, error="timeout"),
        Verdict(action=Action.REJECT, unchecked=("MaxFiles", "MaxRecursion")),
    ):
        recorded = verdict._recorded("configured-name", False, 0.5)
        assert recorded == attrs.evolve(verdict, scanner="configured-name", elapsed=0.5)
        assert (recorded.skip, recorded.error, recorded.unchecked, recorded.status) == (
            verdict.skip, verdict.error, verdict.unchecked, verdict.status,
        )  # fmt: skip


@attrs.frozen
class _Extended(Verdict):
    extra: str = ""


def test_recorded_keeps_a_subclass_and_its_fields() -> None:
    recorded = _Extended(status="x", extra="kept")._recorded("name", False, 0.5)
    assert isinstance(recorded, _Extended)
    assert (recorded.extra, recorded.status, recorded.scanner) == ("kept", "x", "name")
