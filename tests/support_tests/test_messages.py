"""The token messages: the token is where a test looks for it, and copies() counts
each delivery of exactly that message, not of another whose token starts alike."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from mxscan import Message
from tests.support.messages import copies, lunch, tagged


def test_the_token_is_in_subject_and_message_id() -> None:
    for data, subject in ((tagged("t-1"), "t-1"), (lunch("t-1"), "Lunch t-1")):
        message = Message.from_bytes(data)
        assert message.get("Subject") == subject
        assert message.get("Message-ID") == "<t-1@example.org>"
        assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF throughout


def test_copies_counts_one_token_only() -> None:
    deliveries = [SimpleNamespace(data=d) for d in (tagged("a1"), tagged("a1"), tagged("a10"))]
    sink = cast(Any, SimpleNamespace(deliveries=deliveries))
    assert (copies(sink, "a1"), copies(sink, "a10"), copies(sink, "a")) == (2, 1, 0)
