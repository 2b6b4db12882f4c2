"""Relative paths in a configuration file are relative to that file's directory.

Why: ``mxscan config check --config /etc/mxscan/mxscan.toml`` must read the same
tables from any working directory, and a milter started by a service manager has
no meaningful one. The core resolves every key declared with ``path=True``:
``[spool] directory`` and the plugin options so declared (e.g. header-rules'
``file``), and for an undeclared plugin those its factory lists in
``path_options``; a
Postfix-style table type in front (``pcre:header_checks``) stays in front. The
result is joined onto the directory as the configuration file was named, so
``--config examples/mxscan.toml`` turns ``header_checks`` into
``examples/header_checks`` and ``/etc/mxscan/mxscan.toml`` into
``/etc/mxscan/header_checks``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .options import Option, declared

_TABLE_TYPE = re.compile(r"[a-z][a-z0-9_]*:")


def config_dir(source: str) -> str | None:
    """The directory relative paths of the file ``source`` resolve against."""
    # Strings, not Path: "mxscan.toml" has the directory "" (nothing to join), not ".".
    return os.path.dirname(source) if source and not source.startswith("<") else None  # noqa: PTH120


def resolve(value: str, base: str | None) -> str:
    """``value`` (maybe ``type:path``) with a relative path joined onto ``base``."""
    if not base or not value:
        return value
    prefix = _TABLE_TYPE.match(value)
    head = prefix.group(0) if prefix else ""
    path = value[len(head) :]
    if os.path.isabs(path):  # noqa: PTH117
        return value
    return head + os.path.join(base, path)  # noqa: PTH118


def path_options(factory: object) -> tuple[str, ...]:
    """The options a plugin factory declares to be file paths: those of its
    options class declared with ``path=True``, else its ``path_options``."""
    options = declared(factory)
    if options is not None:
        return tuple(o.name for o in options.declared().values() if o.path)
    listed = getattr(factory, "path_options", ())
    if isinstance(listed, str):
        return (listed,)
    return tuple(name for name in listed if isinstance(name, str))


def resolve_declared(
    values: Mapping[str, Any], options: Iterable[Option[Any]], base: str | None
) -> dict[str, Any]:
    """``values`` with each key declared ``path=True`` (a string) resolved."""
    out = dict(values)
    for option in options:
        if option.path and isinstance(out.get(option.name), str):
            out[option.name] = resolve(out[option.name], base)
    return out


def resolve_options(
    options: Mapping[str, Any], factory: object, base: str | None
) -> dict[str, Any]:
    """``options`` with each declared path option (a string) resolved."""
    out = dict(options)
    for name in path_options(factory):
        if isinstance(out.get(name), str):
            out[name] = resolve(out[name], base)
    return out
