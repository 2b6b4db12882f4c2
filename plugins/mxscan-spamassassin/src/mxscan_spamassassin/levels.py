"""From a score to a decision, with amavisd-new's levels.

Admins migrating from amavisd know tag / tag2 / kill levels; mxscan names them
``tag_score`` / ``spam_score`` / ``discard_score`` (and ``reject_score``). Any
level left unset falls back to what spamd itself would do, so a bare
``plugin = "spamassassin"`` behaves like spamass-milter: spamd's required_score
decides spam, everything gets SpamAssassin's headers, nothing is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from mxscan import Action

from .answer import SpamdAnswer

__all__ = ["Decision", "Levels", "decide", "format_score"]


def format_score(value: float) -> str:
    """One decimal, as SpamAssassin prints scores (``1000.0``, ``-1.0``)."""
    return f"{value:.1f}"


@dataclass(frozen=True)
class Levels:
    tag_score: float | None = None
    spam_score: float | None = None
    discard_score: float | None = None
    reject_score: float | None = None


@dataclass(frozen=True)
class Decision:
    action: Action
    is_spam: bool
    tag: bool
    threshold: float
    status: str
    reason: str


def decide(answer: SpamdAnswer, levels: Levels) -> Decision:
    score = answer.score
    if levels.spam_score is None:
        threshold = answer.threshold
        is_spam = answer.is_spam
    else:
        threshold = levels.spam_score
        is_spam = score >= threshold
    tag = is_spam or levels.tag_score is None or score >= levels.tag_score
    action = Action.ACCEPT
    reason = f"score {format_score(score)} / threshold {format_score(threshold)}"
    if levels.discard_score is not None and score >= levels.discard_score:
        action = Action.DISCARD
        reason += f", discard_score {format_score(levels.discard_score)}"
    if levels.reject_score is not None and score >= levels.reject_score:
        action = Action.REJECT
        reason += f", reject_score {format_score(levels.reject_score)}"
    status = f"{'spam' if is_spam else 'ham'}({format_score(score)})"
    return Decision(action, is_spam, tag, threshold, status, reason)
