"""rspamd's /checkv2 answer, read and checked without any I/O.

The answer is JSON from a daemon: anything missing or of the wrong type is an
``AnswerError`` (the client turns it into a ``ScannerError`` naming the address),
never a default that would let an unchecked message through as clean.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["AnswerError", "HeaderAdd", "RspamdAnswer", "parse_answer"]

#: Answers larger than this are not rspamd's (it sends a few KiB): refused
#: unread rather than held in memory.
MAX_ANSWER = 4 * 1024 * 1024


class AnswerError(ValueError):
    """The answer is not a /checkv2 result."""


@dataclass(frozen=True)
class HeaderAdd:
    """One header rspamd's milter_headers module asks for; ``order`` is its
    position (0-based, as a milter's insert header), or None to append."""

    name: str
    value: str
    order: int | None = None


@dataclass(frozen=True)
class RspamdAnswer:
    action: str
    score: float
    required_score: float
    symbols: tuple[str, ...] = ()
    smtp_message: str | None = None
    subject: str | None = None
    add_headers: tuple[HeaderAdd, ...] = ()
    #: (name, n): n = 0 removes every occurrence, n > 0 the n-th, n < 0 the
    #: n-th from the end (rspamd's milter convention).
    remove_headers: tuple[tuple[str, int], ...] = ()
    skipped: bool = False


def _number(data: dict[str, Any], key: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AnswerError(f"{key!r} is {value!r}, not a number")
    return float(value)


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise AnswerError(f"{what} is {value!r}, not a text")
    return value


def _adds(block: object) -> tuple[HeaderAdd, ...]:
    if not isinstance(block, dict):
        raise AnswerError(f"milter.add_headers is {block!r}, not an object")
    out: list[HeaderAdd] = []
    for name, spec in block.items():
        items = spec if isinstance(spec, list) else [spec]
        for item in items:
            if isinstance(item, str):
                out.append(HeaderAdd(name, item))
                continue
            if not isinstance(item, dict):
                raise AnswerError(f"milter.add_headers[{name!r}] is {item!r}")
            value = _text(item.get("value"), f"milter.add_headers[{name!r}].value")
            order = item.get("order")
            if order is not None and (isinstance(order, bool) or not isinstance(order, int)):
                raise AnswerError(f"milter.add_headers[{name!r}].order is {order!r}")
            out.append(HeaderAdd(name, value, order if order is not None and order >= 0 else None))
    return tuple(out)


def _removes(block: object) -> tuple[tuple[str, int], ...]:
    if not isinstance(block, dict):
        raise AnswerError(f"milter.remove_headers is {block!r}, not an object")
    out: list[tuple[str, int]] = []
    for name, count in block.items():
        if isinstance(count, bool) or not isinstance(count, int):
            raise AnswerError(f"milter.remove_headers[{name!r}] is {count!r}, not a number")
        out.append((name, count))
    return tuple(out)


def parse_answer(body: bytes) -> RspamdAnswer:
    """A /checkv2 JSON body; raises :class:`AnswerError` for anything else."""
    if len(body) > MAX_ANSWER:
        raise AnswerError(f"answer of {len(body)} bytes is too large")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise AnswerError(f"not JSON ({error}): {body[:80]!r}") from None
    if not isinstance(data, dict):
        raise AnswerError(f"not a JSON object: {body[:80]!r}")
    if "error" in data and "action" not in data:
        raise AnswerError(f"rspamd error: {data['error']!r}")
    action = _text(data.get("action"), "'action'")
    symbols = data.get("symbols", {})
    if not isinstance(symbols, dict):
        raise AnswerError(f"'symbols' is {symbols!r}, not an object")
    messages = data.get("messages", {})
    if not isinstance(messages, dict):
        messages = {}
    smtp_message = messages.get("smtp_message")
    subject = data.get("subject")
    milter = data.get("milter", {})
    if not isinstance(milter, dict):
        raise AnswerError(f"'milter' is {milter!r}, not an object")
    return RspamdAnswer(
        action=action,
        score=_number(data, "score"),
        required_score=_number(data, "required_score"),
        # Highest score first, so the log's findings start with what mattered.
        symbols=tuple(sorted(symbols, key=lambda name: (-_symbol_score(symbols[name]), name))),
        smtp_message=smtp_message if isinstance(smtp_message, str) else None,
        subject=_text(subject, "'subject'") if subject is not None else None,
        add_headers=_adds(milter.get("add_headers", {})),
        remove_headers=_removes(milter.get("remove_headers", {})),
        skipped=data.get("is_skipped") is True,
    )


def _symbol_score(entry: object) -> float:
    if isinstance(entry, dict):
        score = entry.get("score")
        if isinstance(score, int | float) and not isinstance(score, bool) and math.isfinite(score):
            return float(score)
    return 0.0
