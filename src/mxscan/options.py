"""Declared options: one place says a key's check, its default and its meaning.

A plugin declares its ``[scanner.NAME]`` options once, as a subclass of
[`Options`][mxscan.options.Options] holding one [`Option`][mxscan.options.Option]
per key, and names that class in its factory's ``options_class``. The core reads
the declaration for everything it does with an option: refusing a key the plugin
does not have, passing the scanner's ``timeout``, resolving path options against
the configuration file's directory, showing each default in ``mxscan config
show`` and writing the configuration reference. The factory calls
``MyOptions.parse(values)`` and reads checked, typed values from the result.

The core's own tables are declared the same way (``mxscan.config.schema``), so
a key of the core and an option of a plugin are documented and checked alike.

Why descriptors and not an attrs class: a default is written once, the way an
admin writes it in TOML (``"5s"``, not ``5.0`` next to a string spelling for the
docs), and goes through the same check as a value from the file. An attrs
field's default must already be the checked value, and an attrs converter does
not know the field's name that every error message starts with. Here the
check's return type is the attribute's type, which mypy reads from the
declaration without a plugin.

Each check takes the option's name and the value from the TOML file and returns
the checked value, or raises [`ConfigError`][mxscan.ConfigError] naming the
option and what was expected; the core adds the file and ``[scanner.NAME]`` in
front. The checks are usable on their own too:
``mxscan.options.size("max_size", value)``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar, overload

import attrs

from .addresses import Address, parse_addresses
from .errors import ConfigError
from .units import format_duration, format_size, parse_duration, parse_size

__all__ = [
    "REQUIRED",
    "Check",
    "Option",
    "Options",
    "addresses",
    "check",
    "choice",
    "choices",
    "declared",
    "duration",
    "flag",
    "line",
    "number",
    "one_of",
    "optional",
    "size",
    "text",
    "whole",
]

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)
OptionsT = TypeVar("OptionsT", bound="Options")


def _same(value: Any) -> object:
    return value


@attrs.frozen
class Check(Generic[T]):
    """A value check, with the words the configuration reference shows for it."""

    function: Callable[[str, object], T]
    #: What it accepts, for the reference's "values" column ("a size such as 500KiB, ...").
    expects: str
    #: The TOML types it reads ("string or integer").
    kind: str
    #: A checked value as ``config show`` writes it back (a size as ``"1MiB"``).
    show: Callable[[Any], object] = _same

    def __call__(self, option: str, value: object) -> T:
        return self.function(option, value)


def check(
    expects: str, kind: str = "string", show: Callable[[Any], object] = _same
) -> Callable[[Callable[[str, object], T]], Check[T]]:
    """Make a plugin's own check function declarable: ``@check("a host name")``."""

    def wrap(function: Callable[[str, object], T]) -> Check[T]:
        return Check(function, expects, kind, show)

    return wrap


@check("a size such as 500KiB, 10MB, 2M or a number of bytes", "string or integer", format_size)
def size(option: str, value: object) -> int:
    """A size above zero (``500KiB``, ``10MB``, a number of bytes)."""
    try:
        result = parse_size(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None
    if result <= 0:
        raise ConfigError(f"{option}: must be more than 0 bytes, got {value!r}")
    return result


@check("a duration such as 60s, 500ms, 2m or 1h", "string or number", format_duration)
def duration(option: str, value: object) -> float:
    """A duration above zero (``60s``, ``500ms``, a number of seconds)."""
    try:
        result = parse_duration(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None
    if result <= 0:
        raise ConfigError(f"{option}: must be more than 0 seconds, got {value!r}")
    return result


@check("a number", "number")
def number(option: str, value: object) -> float:
    """A finite number (a score); booleans are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{option}: expected a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{option}: expected a finite number, got {value!r}")
    return float(value)


@check("true or false", "boolean")
def flag(option: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{option}: expected true or false, got {value!r}")
    return value


@check("one printable line of text")
def line(option: str, value: object) -> str:
    """One printable line of text: it may end up in a header or an SMTP reply,
    where CR or LF would inject content."""
    if not isinstance(value, str) or not value or not value.isprintable():
        raise ConfigError(f"{option}: expected one printable line of text, got {value!r}")
    return value


@check("text")
def text(option: str, value: object) -> str:
    """Any string (an inline table of rules may span lines)."""
    if not isinstance(value, str):
        raise ConfigError(f"{option}: expected a string, got {value!r}")
    return value


@check("an address such as unix:/path or inet:host:port, or a list", "string or array")
def addresses(option: str, value: object) -> tuple[Address, ...]:
    """One Postfix-style address or a list of them (failover order)."""
    if not isinstance(value, str) and not (
        isinstance(value, Sequence) and all(isinstance(item, str) for item in value)
    ):
        raise ConfigError(
            f"{option}: expected an address or a list of them (unix:/path, inet:host:port), "
            f"got {value!r}"
        )
    try:
        return parse_addresses(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None


def choice(option: str, value: object, kind: type[E]) -> E:
    """A member of the enum ``kind``, written as its (case-insensitive) value."""
    if isinstance(value, kind):
        return value
    if isinstance(value, str):
        for member in kind:
            if str(member.value) == value.strip().lower():
                return member
    choices = ", ".join(str(member.value) for member in kind)
    raise ConfigError(f"{option}: expected one of {choices}, got {value!r}")


def one_of(kind: type[E]) -> Check[E]:
    """The declarable form of [`choice`][mxscan.options.choice]: a member of ``kind``."""
    return Check(
        lambda option, value: choice(option, value, kind),
        ", ".join(f"`{member.value}`" for member in kind),
        "string",
        lambda member: member.value,
    )


def choices(*allowed: str) -> Check[str]:
    """One of these strings, exactly as written."""

    def pick(option: str, value: object) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise ConfigError(f"{option}: expected one of {', '.join(allowed)}, got {value!r}")
        return value

    return Check(pick, ", ".join(f"`{a}`" for a in allowed), "string")


def whole(minimum: int, why: str = "") -> Check[int]:
    """A whole number of at least ``minimum``; ``why`` says what it counts."""
    note = f" ({why})" if why else ""

    def count(option: str, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(
                f"{option}: expected a whole number >= {minimum}{note}, got {value!r}"
            )
        return value

    return Check(count, f"a whole number >= {minimum}", "integer")


def optional(inner: Check[T], *, empty: bool = False) -> Check[T | None]:
    """``inner``, or unset: None (the declared default), and with ``empty`` also
    ``""``, which is how TOML, which has no null, says "unset"."""

    def maybe(option: str, value: object) -> T | None:
        if value is None or (empty and value == ""):
            return None
        return inner(option, value)

    def show(value: T | None) -> object:
        return None if value is None else inner.show(value)

    return Check(maybe, inner.expects, inner.kind, show)


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: The default of an option the table must set.
REQUIRED: Any = _Required()


class Option(Generic[T]):
    """One declared key: its check, its default as written in TOML, one line of doc.

    ``path``: the value is a file path, resolved by the core against the
    configuration file's directory (a ``pcre:``-style prefix stays in front).
    """

    def __init__(
        self,
        check: Check[T],
        default: object = REQUIRED,
        doc: str = "",
        *,
        path: bool = False,
        default_doc: str = "",
    ) -> None:
        self.check = check
        self.default = default
        self.doc = doc
        self.path = path
        #: What the reference says for a default that is not a value ("the plugin's").
        self.default_doc = default_doc
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def parse(self, values: Mapping[str, object]) -> T:
        """The checked value of this key in ``values``, else of its default."""
        if self.name in values:
            return self.check(self.name, values[self.name])
        if self.required:
            raise ConfigError(f"{self.name}: required" + (f", {self.doc}" if self.doc else ""))
        return self.check(self.name, self.default)

    def __repr__(self) -> str:
        return f"Option({self.name!r}, default={self.default!r})"

    @overload
    def __get__(self, obj: None, owner: type) -> Option[T]: ...
    @overload
    def __get__(self, obj: Options, owner: type) -> T: ...
    def __get__(self, obj: Options | None, owner: type) -> Option[T] | T:
        if obj is None:
            return self
        value: T = obj._values[self.name]
        return value


class Options:
    """Base of a declared options class; each class attribute that is an
    [`Option`][mxscan.options.Option] is one key, in the order written.

    Its docstring's first line is the table's meaning in the reference.
    """

    _declared: ClassVar[dict[str, Option[Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, Option[Any]] = {}
        for klass in reversed(cls.__mro__):
            found.update({k: v for k, v in vars(klass).items() if isinstance(v, Option)})
        cls._declared = found
        # A default goes through its own check here, at import: a plugin
        # author's typo in one fails the plugin's tests, not an admin's start.
        for option in found.values():
            if not option.required:
                option.check(option.name, option.default)

    def __init__(self, values: Mapping[str, Any], given: frozenset[str]) -> None:
        self._values = dict(values)
        #: The keys the table set (the others have their default).
        self.given = given

    @classmethod
    def declared(cls) -> Mapping[str, Option[Any]]:
        """Every option by name, in declaration order."""
        return cls._declared

    @classmethod
    def unknown(cls, values: Mapping[str, object]) -> list[str]:
        """The keys of ``values`` this class does not declare."""
        return [key for key in values if key not in cls._declared]

    @classmethod
    def parse(cls: type[OptionsT], values: Mapping[str, object]) -> OptionsT:
        """Check every key of ``values`` and fill in the defaults; the first
        problem is a [`ConfigError`][mxscan.ConfigError] naming the key."""
        unknown = cls.unknown(values)
        if unknown:
            raise ConfigError(
                f"{unknown[0]}: not an option (its options: {', '.join(cls._declared)})"
            )
        checked = {name: option.parse(values) for name, option in cls._declared.items()}
        return cls(checked, frozenset(values))

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def shown(self, name: str) -> object:
        """The value of ``name`` as ``config show`` writes it back."""
        return self._declared[name].check.show(self._values[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._declared)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Options)
            and type(other) is type(self)
            and other._values == self._values
        )

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"{type(self).__name__}({inner})"


def declared(factory: object) -> type[Options] | None:
    """The options class a plugin factory declares (its ``options_class``), if any."""
    found = getattr(factory, "options_class", None)
    if isinstance(found, type) and issubclass(found, Options):
        return found
    return None
