"""Header edits: the only way a scanner changes a message.

Edits mirror the milter protocol's header actions so that the milter adapter can
replay them to Postfix one for one, and they apply *sequentially*: each edit sees
the headers as the previous edit left them, exactly as Postfix applies milter
replies.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import attrs

from .header import Header, validate_name, validate_value

__all__ = ["EditKind", "HeaderEdit", "apply_edits"]


class EditKind(enum.Enum):
    ADD = "add"
    INSERT = "insert"
    CHANGE = "change"
    DELETE = "delete"


def _check(edit: HeaderEdit) -> None:
    validate_name(edit.name)
    if edit.value is not None:
        validate_value(edit.name, edit.value)
    if edit.kind in (EditKind.CHANGE, EditKind.DELETE) and (
        edit.occurrence is None or edit.occurrence < 1
    ):
        raise ValueError(f"{edit.kind.value} needs an occurrence >= 1 (it is 1-based)")
    if edit.kind is EditKind.INSERT and (edit.index is None or edit.index < 0):
        raise ValueError("insert needs an index >= 0")


@attrs.frozen
class HeaderEdit:
    """One change to the header. Build it with [`add`][mxscan.HeaderEdit.add],
    [`insert`][mxscan.HeaderEdit.insert], [`change`][mxscan.HeaderEdit.change] or
    [`delete`][mxscan.HeaderEdit.delete]; a value with CR or LF raises
    [`InvalidHeader`][mxscan.InvalidHeader] because it would let mail content forge
    headers."""

    kind: EditKind
    name: str
    value: str | None = None
    index: int | None = None
    occurrence: int | None = None

    def __attrs_post_init__(self) -> None:
        _check(self)

    @classmethod
    def add(cls, name: str, value: str) -> HeaderEdit:
        """Append after the last header."""
        return cls(EditKind.ADD, name, value)

    @classmethod
    def insert(cls, index: int, name: str, value: str) -> HeaderEdit:
        """Insert at 0-based ``index`` in the header list (past the end appends)."""
        return cls(EditKind.INSERT, name, value, index=index)

    @classmethod
    def change(cls, name: str, occurrence: int, value: str) -> HeaderEdit:
        """Replace the value of the ``occurrence``-th (1-based) header called
        ``name``; if there are fewer, the header is appended (libmilter's rule)."""
        return cls(EditKind.CHANGE, name, value, occurrence=occurrence)

    @classmethod
    def delete(cls, name: str, occurrence: int) -> HeaderEdit:
        """Remove the ``occurrence``-th (1-based) header called ``name``, if any."""
        return cls(EditKind.DELETE, name, occurrence=occurrence)

    def __str__(self) -> str:
        # One line even for a folded value: this goes into logs.
        value = (self.value or "").replace("\r\n", "\\r\\n")
        if self.kind is EditKind.ADD:
            return f"add {self.name}: {value}"
        if self.kind is EditKind.INSERT:
            return f"insert@{self.index} {self.name}: {value}"
        if self.kind is EditKind.CHANGE:
            return f"change {self.name}[{self.occurrence}]: {value}"
        return f"delete {self.name}[{self.occurrence}]"


def _find(headers: list[Header], name: str, occurrence: int) -> int | None:
    lowered = name.lower()
    seen = 0
    for position, header in enumerate(headers):
        if header.name.lower() == lowered:
            seen += 1
            if seen == occurrence:
                return position
    return None


def apply_edits(headers: Iterable[Header], edits: Iterable[HeaderEdit], eol: bytes) -> list[Header]:
    """Apply ``edits`` in order and return the new header list.

    Unedited headers are the very same objects, so their bytes cannot change.
    """
    result = list(headers)
    for edit in edits:
        if edit.kind is EditKind.DELETE:
            assert edit.occurrence is not None
            position = _find(result, edit.name, edit.occurrence)
            if position is not None:
                del result[position]
            continue
        assert edit.value is not None
        if result and not result[-1].eol and edit.kind is not EditKind.CHANGE:
            # The last header had no line ending (message cut short): it needs
            # one before anything can follow it.
            result[-1] = Header(result[-1].raw + eol)
        new = Header._checked(edit.name, edit.value, eol)
        if edit.kind is EditKind.ADD:
            result.append(new)
        elif edit.kind is EditKind.INSERT:
            assert edit.index is not None
            result.insert(min(edit.index, len(result)), new)
        else:
            assert edit.occurrence is not None
            position = _find(result, edit.name, edit.occurrence)
            if position is None:
                if result and not result[-1].eol:
                    result[-1] = Header(result[-1].raw + eol)
                result.append(new)
            else:
                old = result[position]
                result[position] = Header._checked(edit.name, edit.value, old.eol or eol)
    return result
