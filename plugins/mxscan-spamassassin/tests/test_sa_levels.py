"""Score -> action, status and reason, with amavisd-style levels."""

from __future__ import annotations

from mxscan import Action
from mxscan_spamassassin.answer import SpamdAnswer
from mxscan_spamassassin.levels import Levels, decide


def answer(score: float, threshold: float = 5.0) -> SpamdAnswer:
    return SpamdAnswer(score >= threshold, score, threshold)


def test_without_levels_spamd_decides_and_nothing_is_dropped() -> None:
    spam = decide(answer(1000.0), Levels())
    assert (spam.action, spam.is_spam, spam.tag) == (Action.ACCEPT, True, True)
    assert spam.status == "spam(1000.0)"
    assert spam.reason == "score 1000.0 / threshold 5.0"
    ham = decide(answer(-1.0), Levels())
    assert (ham.action, ham.is_spam, ham.tag) == (Action.ACCEPT, False, True)
    assert ham.status == "ham(-1.0)"


def test_spamd_is_spam_flag_is_trusted_without_spam_score() -> None:
    # spamd compares before rounding: its word wins over our rounded numbers.
    assert decide(SpamdAnswer(True, 4.99, 5.0), Levels()).is_spam


def test_spam_score_overrides_required_score() -> None:
    decision = decide(answer(3.0), Levels(spam_score=2.5))
    assert decision.is_spam
    assert decision.threshold == 2.5
    assert decision.reason == "score 3.0 / threshold 2.5"
    assert not decide(answer(6.0), Levels(spam_score=7.0)).is_spam


def test_tag_score() -> None:
    assert not decide(answer(1.0), Levels(tag_score=2.0)).tag
    assert decide(answer(2.0), Levels(tag_score=2.0)).tag
    # spam is always tagged, whatever the levels say
    assert decide(answer(6.0), Levels(tag_score=10.0, spam_score=5.0)).tag


def test_discard_and_reject() -> None:
    levels = Levels(discard_score=15.0)
    assert decide(answer(14.9), levels).action is Action.ACCEPT
    discarded = decide(answer(15.0), levels)
    assert discarded.action is Action.DISCARD
    assert "discard_score 15.0" in discarded.reason
    both = Levels(discard_score=10.0, reject_score=20.0)
    assert decide(answer(12.0), both).action is Action.DISCARD
    assert decide(answer(25.0), both).action is Action.REJECT
    assert decide(answer(25.0), Levels(reject_score=20.0, discard_score=30.0)).action is (
        Action.REJECT
    )
