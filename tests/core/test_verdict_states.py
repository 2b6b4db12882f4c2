"""A scan not done (skipped), failed (error) or cut short (unchecked) is a
field of the Verdict, with the log token derived from it; words that could not
be one token, and statuses that look like a state without holding one, are
refused when the verdict is built."""

from __future__ import annotations

import attrs
import pytest

from mxscan import Action, Conditions, Message, Pipeline, Step, Verdict
from tests.support.scanners import FakeScanner, down, raising

MSG = b"Subject: hi\r\n\r\nbody\r\n"


@pytest.mark.parametrize(
    ("verdict", "token"),
    [
        (Verdict.skipped("oversize"), "skipped(oversize)"),
        (Verdict.skipped("max-size_2.0", action=Action.TEMPFAIL), "skipped(max-size_2.0)"),
        (Verdict(error="timeout"), "error(timeout)"),
        (Verdict(unchecked="max_parts"), "unchecked(max_parts)"),
        (Verdict(unchecked=("MaxRecursion", "MaxFiles")), "unchecked(MaxRecursion,MaxFiles)"),
    ],
)
def test_the_status_and_log_token_come_from_the_fields(verdict: Verdict, token: str) -> None:
    assert verdict.status == token and verdict.token == token
    assert attrs.evolve(verdict, shadow=True).token == f"shadow:{token}"


def test_skipped_keeps_what_it_is_given() -> None:
    verdict = Verdict.skipped(
        "oversize", reason="12 MB over max_size", action=Action.REJECT, scanner="sa"
    )
    assert (verdict.skip, verdict.reason, verdict.action, verdict.scanner) == (
        "oversize", "12 MB over max_size", Action.REJECT, "sa",
    )  # fmt: skip
    assert verdict.error is None and verdict.unchecked == ()


@pytest.mark.parametrize(
    "word", ["", "over size", "oversize)", "a=b", "skipped: oversize", "é", "_x", "x" * 49]
)
@pytest.mark.parametrize("field", ["skip", "error", "unchecked"])
def test_a_word_that_is_not_one_short_token_is_refused(field: str, word: str) -> None:
    with pytest.raises(ValueError, match="short token"):
        Verdict(**{field: (word,) if field == "unchecked" else word})  # type: ignore[arg-type]


def test_the_longest_word_is_accepted() -> None:
    assert Verdict(error="x" * 48).status == f"error({'x' * 48})"


@pytest.mark.parametrize("status", ["skipped(oversize)", "error(timeout)", "unchecked(max_parts)"])
def test_a_state_written_as_text_only_is_refused(status: str) -> None:
    """The old convention: a hand-written token that metrics would no longer see."""
    with pytest.raises(ValueError, match="names a state its fields do not hold"):
        Verdict(status=status)


def test_other_statuses_are_free_text() -> None:
    assert Verdict(status="skipped: oversize").token == "skipped: oversize"
    assert Verdict(status="spam(7.3)").skip is None


def test_a_status_given_with_a_state_must_start_with_its_token() -> None:
    kept = Verdict(
        action=Action.DISCARD, skip="oversize", status="skipped(oversize)+quarantined(q1)"
    )
    assert kept.token == "skipped(oversize)+quarantined(q1)"
    with pytest.raises(ValueError, match="does not start with 'skipped\\(oversize\\)'"):
        Verdict(skip="oversize", status="clean")
    with pytest.raises(ValueError, match="does not start with"):
        attrs.evolve(Verdict.skipped("oversize"), skip="network")


def test_one_state_at_most() -> None:
    with pytest.raises(ValueError, match="one state at most, not skip and error"):
        Verdict(skip="oversize", error="timeout")
    with pytest.raises(ValueError, match="not error and unchecked"):
        Verdict(error="failed", unchecked=("max_parts",))


async def test_the_pipeline_builds_its_skips_and_errors_as_fields() -> None:
    pipeline = Pipeline(
        [
            [
                Step(FakeScanner("big"), conditions=Conditions(max_size=5)),
                Step(raising("broken", RuntimeError("bug")), on_error=Action.ACCEPT),
                Step(FakeScanner("hung", delay=10.0), timeout=0.05, on_error=Action.ACCEPT),
                Step(down("down"), on_error=Action.ACCEPT),
                Step(FakeScanner("garbage", fn=lambda m: "clean"), on_error=Action.ACCEPT),
            ]
        ]
    )
    result = await pipeline.run(Message.from_bytes(MSG))
    states = {v.scanner: (v.skip, v.error, v.token) for v in result.verdicts}
    assert states == {
        "big": ("oversize", None, "skipped(oversize)"),
        "broken": (None, "crashed", "error(crashed)"),
        "hung": (None, "timeout", "error(timeout)"),
        "down": (None, "failed", "error(failed)"),
        "garbage": (None, "garbage", "error(garbage)"),
    }
