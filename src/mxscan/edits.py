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

from .editbuffer import EditBuffer
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


def apply_edits(headers: Iterable[Header], edits: Iterable[HeaderEdit], eol: bytes) -> list[Header]:
    """Apply ``edits`` in order and return the new header list.

    Unedited headers are the very same objects, so their bytes cannot change. The
    cost is linear in headers plus edits for edits in header order, forwards or
    backwards (see ``mxscan.editbuffer``): a message cannot make it quadratic.
    """
    result = EditBuffer(headers, _name)
    # Only a message cut short has a last header without a line ending; it needs
    # one before anything can follow it, and gets it at the first addition.
    open_last = result.get(len(result) - 1) if len(result) else None
    if open_last is not None and open_last.eol:
        open_last = None
    for edit in edits:
        if edit.kind is EditKind.DELETE:
            assert edit.occurrence is not None
            position = result.find(edit.name, edit.occurrence)
            if position is not None:
                if result.get(position) is open_last:
                    open_last = None
                result.delete(position)
            continue
        assert edit.value is not None
        if edit.kind is EditKind.CHANGE:
            assert edit.occurrence is not None
            position = result.find(edit.name, edit.occurrence)
            if position is not None:
                old = result.get(position)
                if old is open_last:
                    open_last = None
                result.replace(position, Header._checked(edit.name, edit.value, old.eol or eol))
                continue
        if open_last is not None:
            result.replace(len(result) - 1, Header(open_last.raw + eol))
            open_last = None
        new = Header._checked(edit.name, edit.value, eol)
        if edit.kind is EditKind.INSERT:
            assert edit.index is not None
            result.insert(edit.index, new)
        else:  # ADD, or CHANGE past the last occurrence (libmilter appends)
            result.append(new)
    return result.items()


def _name(header: Header) -> str:
    return header.name
