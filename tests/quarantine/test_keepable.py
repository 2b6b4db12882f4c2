"""Which final actions the quarantine may keep a copy of: one ``match`` over
``Action`` (mypy names it when a member is added), and the ``keep_copy`` words
are exactly those actions."""

from __future__ import annotations

from mxscan import Action
from mxscan.quarantine.settings import KEEPABLE, keepable


def test_only_undelivered_mail_is_keepable() -> None:
    assert {a for a in Action if keepable(a)} == {Action.QUARANTINE, Action.DISCARD, Action.REJECT}


def test_the_keep_copy_words_are_the_keepable_actions() -> None:
    assert sorted(KEEPABLE) == sorted(str(a) for a in Action if keepable(a))
