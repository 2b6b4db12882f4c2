"""``mxscan config show``: the effective configuration, every default filled in.

Each value is written as TOML with a comment saying where it came from (the
file, ``[defaults]``, the core's default or the plugin's). The core's tables
are written from their declarations (``config.schema``), so a new key is shown
without a line here; a plugin's defaults come from its declared options.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import paths
from ..errors import ConfigError
from ..options import Options
from ..plugins import PluginInfo, Registry
from ..units import format_duration
from .build import plugin_defaults
from .schema import CONDITION_KEYS, ScannerTable

if TYPE_CHECKING:
    from .model import Config, ScannerConfig

__all__ = ["render", "toml_value"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def render(config: Config, registry: Registry, errors: Mapping[str, str]) -> str:
    out = [
        f"# mxscan effective configuration, read from {config.source}",
        "# after each value: where it came from (file, [defaults] or default)",
    ]
    for key in ("defaults", "log", "spool", "mime"):
        out += ["", f"[{key}]", *_declared_lines(config.tables[key])]
    for sc in config.scanners.values():
        try:
            info: PluginInfo | None = registry.info(sc.plugin)
        except ConfigError as exc:
            info, errors = None, {f"scanner.{sc.name}": str(exc), **errors}
        table = _scanner_lines(config, sc, info)
        out += ["", f"[scanner.{sc.name}]", *_marked(table, errors.get(f"scanner.{sc.name}"))]
    if "quarantine" in config.tables:
        out += ["", "[quarantine]", *_declared_lines(config.tables["quarantine"])]
    for stage in config.stages:
        out += ["", "[[stage]]", _line("run", list(stage), config.origins.get("stages"))]
    for domain, overrides in config.policies.items():
        table = [
            _line(f"{scanner}.{key}", value, "file")
            for scanner, options in overrides.items()
            for key, value in options.items()
        ]
        out += ["", f"[policy.{json.dumps(domain)}]"]
        out += _marked(table, errors.get(f"policy.{domain}"))
    return "\n".join(out) + "\n"


def _declared_lines(table: Options) -> list[str]:
    """One line per declared key of a core table, as its check writes it."""
    lines = []
    for name, option in table.declared().items():
        origin = "file" if name in table.given else "default"
        value = table.shown(name)
        if value is None:
            lines.append(_line(name, "", origin, note=option.default_doc or "unset"))
        else:
            lines.append(_line(name, value, origin))
    return lines


def _scanner_lines(config: Config, sc: ScannerConfig, info: PluginInfo | None) -> list[str]:
    factory = None
    if info is not None:
        try:
            factory = info.load()
        except ConfigError:
            factory = None
    declared = ScannerTable.declared()
    lines = [
        _line("plugin", sc.plugin, "file",
              note=f"{info.distribution} {info.version}" if info else ""),
        _line("on_error", str(sc.on_error), sc.origins["on_error"]),
        _line("timeout", format_duration(sc.timeout), sc.origins["timeout"]),
        _max_concurrent_line(sc, factory),
        *(_line(key, sc.conditions.get(key, declared[key].check.show(declared[key].default)),
                "file" if key in sc.conditions else "default")
          for key in CONDITION_KEYS),
    ]  # fmt: skip
    resolved = paths.resolve_options(sc.options, factory, config.base_dir)
    for key, value in sc.options.items():
        note = "" if resolved[key] == value else f"{value!r} in the file"
        lines.append(_line(key, resolved[key], "file", note=note))
    defaults = plugin_defaults(factory) if factory is not None else {}
    for key, value in defaults.items():
        if key not in sc.options:
            lines.append(_line(key, value, f"default of plugin {sc.plugin}"))
    return lines


def _max_concurrent_line(sc: ScannerConfig, factory: Any) -> str:
    if sc.max_concurrent is not None:
        return _line("max_concurrent", sc.max_concurrent, "file")
    declared = getattr(factory, "max_concurrent", None)
    if isinstance(declared, int) and not isinstance(declared, bool) and declared >= 1:
        return _line("max_concurrent", declared, f"default of plugin {sc.plugin}")
    return "# max_concurrent: no bound (the plugin declares none)  # default"


def _marked(lines: list[str], error: str | None) -> list[str]:
    """``lines`` of a table with ``error`` marked on the line whose value it
    names (a missing file's path), or above them all when none does."""
    if error is None:
        return lines
    note = f"ERROR: {error}"
    for index, line in enumerate(lines):
        value = line.split(" = ", 1)[1].rsplit("  # ", 1)[0] if " = " in line else ""
        if len(value) > 2 and value.startswith('"') and json.loads(value) in error:
            return [*lines[:index], f"{line}; {note}", *lines[index + 1 :]]
    return [f"# {note}", *lines]


def toml_value(value: Any) -> str:
    """``value`` written as TOML (a table inline)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = (f"{_toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return json.dumps(str(value))


def _toml_key(key: str) -> str:
    """A bare key when TOML allows one (``reject``), else quoted (``"soft reject"``)."""
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _line(key: str, value: Any, origin: str | None, note: str = "") -> str:
    comment = origin or "default"
    if note:
        comment += f"; {note}"
    return f"{key} = {toml_value(value)}  # {comment}"
