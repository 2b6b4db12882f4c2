"""The TOML configuration file: named scanner instances, stages, policies.

One file replaces the five programs' configs of the classic stack. Every error
names the file, the key and what was expected, because the admin reads it in a
terminal or a log, not in a traceback. ``render()`` is ``mxscan config show``:
the effective configuration with every default filled in and its origin.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from . import options as checks
from . import paths
from .body import DEFAULT_SPOOL_THRESHOLD
from .conditions import Conditions, parse_networks
from .engine import Engine
from .errors import ConfigError
from .mimelimits import LIMITS, ON_UNCHECKED_ACTIONS, MimeLimits
from .mimelimits import SCANNER as MIME_SCANNER
from .pipeline import ON_ERROR_ACTIONS, Pipeline, Step
from .plugins import PluginInfo, Registry
from .quarantine.keeper import Keeper
from .quarantine.settings import QuarantineSettings, format_age, parse_quarantine
from .quarantine.store import open_store
from .scanner import Scanner
from .slots import Slots, default_slots
from .units import format_duration, format_size, parse_size
from .verdict import Action

__all__ = [
    "DEFAULT_CONFIG",
    "Config",
    "ScannerConfig",
    "default_config_path",
    "load_config",
    "load_given_config",
    "parse_config",
]

DEFAULT_ON_ERROR = Action.TEMPFAIL
DEFAULT_TIMEOUT = 60.0

#: Keys of a ``[scanner.NAME]`` table that the core reads; the rest go to the plugin.
CONDITION_KEYS = ("mode", "skip_authenticated", "skip_networks")
CORE_KEYS = frozenset(
    {"plugin", "on_error", "timeout", "max_concurrent", "keep_copy", *CONDITION_KEYS}
)
_TOP_KEYS = ("defaults", "log", "spool", "mime", "scanner", "stage", "policy", "quarantine")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
#: A recipient domain, or ``.domain`` for its subdomains (labels of letters,
#: digits, ``-`` and ``_``, Unicode letters included for SMTPUTF8 domains).
_DOMAIN = re.compile(r"\.?[\w-]+(?:\.[\w-]+)*")
_FACILITIES = (
    "mail", "daemon", "user", "local0", "local1", "local2", "local3", "local4", "local5",
    "local6", "local7",
)  # fmt: skip
_LEVELS = ("debug", "info", "warning", "error")


@attrs.frozen
class ScannerConfig:
    """One ``[scanner.NAME]`` table, validated, with the origin of each core value."""

    name: str
    plugin: str
    on_error: Action
    timeout: float
    options: Mapping[str, Any]
    origins: Mapping[str, str]
    #: ``mode``, ``skip_authenticated``, ``skip_networks`` as written (validated).
    conditions: Mapping[str, Any] = attrs.field(factory=dict)
    #: ``max_concurrent`` as written; None: the plugin's default (or no bound).
    max_concurrent: int | None = None


@attrs.frozen
class Config:
    """A validated configuration; [`build`][mxscan.Config.build] turns it into a
    running [`Engine`][mxscan.Engine]."""

    source: str
    on_error: Action
    timeout: float
    scanners: Mapping[str, ScannerConfig]
    stages: tuple[tuple[str, ...], ...]
    policies: Mapping[str, Mapping[str, Mapping[str, Any]]]
    log_target: str = "stderr"
    log_facility: str = "mail"
    log_level: str = "info"
    spool_threshold: int = DEFAULT_SPOOL_THRESHOLD
    spool_dir: str | None = None
    origins: Mapping[str, str] = attrs.field(factory=dict)
    #: ``[quarantine]``; None: no copies kept, QUARANTINE is Postfix's hold.
    quarantine: QuarantineSettings | None = None
    mime: MimeLimits = attrs.field(factory=MimeLimits)

    @property
    def base_dir(self) -> str | None:
        """Where relative paths in the file resolve (see ``mxscan.paths``)."""
        return paths.config_dir(self.source)

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<string>") -> Config:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
        return parse_config(data, source=source)

    # -- building ------------------------------------------------------------

    def build(self, registry: Registry | None = None) -> Engine:
        """Instantiate every scanner (once per distinct option set) and the
        pipelines of the default policy and of each ``[policy."domain"]``."""
        registry = registry if registry is not None else Registry()
        base = {name: self._step(registry, sc, {}) for name, sc in self.scanners.items()}
        # One bound per scanner, shared by its policy variants: they talk to
        # the same daemon.
        slots = {name: step.slots for name, step in base.items()}
        default = Pipeline([[base[n] for n in stage] for stage in self.stages], limits=self.mime)
        policies: dict[str, Pipeline] = {}
        for domain, overrides in self.policies.items():
            steps = {
                name: self._step(registry, sc, overrides[name], slots[name], domain)
                if name in overrides
                else base[name]
                for name, sc in self.scanners.items()
            }
            policies[domain] = Pipeline(
                [[steps[n] for n in stage] for stage in self.stages], limits=self.mime
            )
        return Engine(default, policies, keeper=self._keeper())

    def _keeper(self) -> Keeper | None:
        if self.quarantine is None:
            return None
        try:
            store = open_store(self.quarantine.store)
        except ValueError as exc:
            raise ConfigError(f"{self.source}: [quarantine] store: {exc}") from None
        return Keeper(store, self.quarantine)

    def _step(
        self,
        registry: Registry,
        sc: ScannerConfig,
        overrides: Mapping[str, Any],
        shared: Slots | Literal[False] | None = False,
        domain: str | None = None,
    ) -> Step:
        # A policy's options are blamed on the policy: its table is where the
        # admin wrote them (and where a typo is).
        table = f"[scanner.{sc.name}]" if domain is None else f"[policy.{json.dumps(domain)}]"
        prefix = "" if domain is None else f"{sc.name}."
        where = table if domain is None else f"{table} {sc.name}."
        timeout, on_error = sc.timeout, sc.on_error
        if "timeout" in overrides:
            timeout = _duration(self.source, where, "timeout", overrides["timeout"])
        if "on_error" in overrides:
            on_error = _on_error(self.source, where, overrides["on_error"])
        options = {**sc.options, **{k: v for k, v in overrides.items() if k not in CORE_KEYS}}
        conditions = {**sc.conditions, **_conditions(self.source, where, overrides)}
        max_size = None
        if "max_size" in options and not _takes(registry, sc, "max_size"):
            # Plugins with their own size handling (on_oversize) get max_size;
            # for the others the core skips the scanner above it.
            try:
                max_size = checks.size("max_size", options.pop("max_size"))
            except ConfigError as exc:
                raise ConfigError(f"{self.source}: {table} {prefix}{exc}") from None
        try:
            factory = registry.factory(sc.plugin)
        except ConfigError:
            factory = None  # _instantiate names the missing plugin
        options = paths.resolve_options(options, factory, self.base_dir)
        scanner = _instantiate(registry, self.source, sc, options, timeout, table, prefix)
        if shared is not False:
            slots = shared
        elif sc.max_concurrent is not None:
            slots = Slots(sc.max_concurrent)
        else:
            slots = default_slots(scanner)
        return Step(
            scanner,
            slots=slots,
            timeout=timeout,
            on_error=on_error,
            conditions=Conditions(
                skip_authenticated=bool(conditions.get("skip_authenticated", False)),
                skip_networks=parse_networks(conditions.get("skip_networks", ())),
                max_size=max_size,
            ),
            shadow=conditions.get("mode", "enforce") == "shadow",
        )

    def problems(self, registry: Registry | None = None) -> tuple[dict[str, str], list[Scanner]]:
        """Build every scanner on its own: an error per table that cannot be
        built (``scanner.NAME`` or ``policy.DOMAIN``), and the scanners that
        could (to be closed). ``config show`` shows a configuration with a
        missing file, marked, rather than failing on it."""
        registry = registry if registry is not None else Registry()
        errors: dict[str, str] = {}
        built: list[Scanner] = []
        for name, sc in self.scanners.items():
            try:
                built.append(self._step(registry, sc, {}).scanner)
            except ConfigError as exc:
                errors[f"scanner.{name}"] = str(exc)
        for domain, overrides in self.policies.items():
            for name, options in overrides.items():
                if f"scanner.{name}" in errors:
                    continue
                try:
                    built.append(
                        self._step(registry, self.scanners[name], options, domain=domain).scanner
                    )
                except ConfigError as exc:
                    errors.setdefault(f"policy.{domain}", str(exc))
        return errors, built

    # -- showing ---------------------------------------------------------------

    def render(
        self, registry: Registry | None = None, errors: Mapping[str, str] | None = None
    ) -> str:
        """The effective configuration as TOML, each value commented with its
        origin; ``errors`` (from ``problems()``) are marked where they are."""
        registry = registry if registry is not None else Registry()
        errors = errors or {}
        out = [
            f"# mxscan effective configuration, read from {self.source}",
            "# after each value: where it came from (file, [defaults] or default)",
            "",
            "[defaults]",
            _line("on_error", str(self.on_error), self.origins.get("defaults.on_error")),
            _line("timeout", format_duration(self.timeout), self.origins.get("defaults.timeout")),
            "",
            "[log]",
            _line("target", self.log_target, self.origins.get("log.target")),
            _line("facility", self.log_facility, self.origins.get("log.facility")),
            _line("level", self.log_level, self.origins.get("log.level")),
            "",
            "[spool]",
            _line("threshold", format_size(self.spool_threshold),
                  self.origins.get("spool.threshold")),
            _line("directory", self.spool_dir or "", self.origins.get("spool.directory"),
                  note="" if self.spool_dir else "the system's temporary directory"),
            "",
            "[mime]",
            *(_line(key, getattr(self.mime, key), self.origins.get(f"mime.{key}"))
              for key in LIMITS),
            _line("on_unchecked", str(self.mime.on_unchecked),
                  self.origins.get("mime.on_unchecked")),
        ]  # fmt: skip
        for sc in self.scanners.values():
            try:
                info: PluginInfo | None = registry.info(sc.plugin)
            except ConfigError as exc:
                info, errors = None, {f"scanner.{sc.name}": str(exc), **errors}
            plugin_note = f"{info.distribution} {info.version}" if info else ""
            table = [
                _line("plugin", sc.plugin, "file", note=plugin_note),
                _line("on_error", str(sc.on_error), sc.origins["on_error"]),
                _line("timeout", format_duration(sc.timeout), sc.origins["timeout"]),
                _max_concurrent_line(sc, info.load() if info else None),
                _line("mode", sc.conditions.get("mode", "enforce"),
                      "file" if "mode" in sc.conditions else "default"),
                _line("skip_authenticated", sc.conditions.get("skip_authenticated", False),
                      "file" if "skip_authenticated" in sc.conditions else "default"),
                _line("skip_networks", sc.conditions.get("skip_networks", []),
                      "file" if "skip_networks" in sc.conditions else "default"),
            ]  # fmt: skip
            resolved = paths.resolve_options(
                sc.options, info.load() if info else None, self.base_dir
            )
            for key, value in sc.options.items():
                note = "" if resolved[key] == value else f"{value!r} in the file"
                table.append(_line(key, resolved[key], "file", note=note))
            try:
                defaults = _plugin_defaults(info.load()) if info else {}
            except ConfigError:
                defaults = {}
            for key, value in defaults.items():
                if key not in sc.options:
                    table.append(_line(key, value, f"default of plugin {sc.plugin}"))
            out += ["", f"[scanner.{sc.name}]", *_marked(table, errors.get(f"scanner.{sc.name}"))]
        if self.quarantine is not None:
            q = self.quarantine

            def origin(key: str) -> str:
                return "file" if key in q.given else "default"

            out += [
                "",
                "[quarantine]",
                _line("store", q.store, origin("store")),
                _line("keep", format_age(q.keep), origin("keep")),
                _line("max_size", format_size(q.max_size) if q.max_size else "",
                      origin("max_size"), note="" if q.max_size else "no limit"),
                _line("keep_copy", sorted(q.keep_copy), origin("keep_copy")),
                _line("quarantine_action", q.quarantine_action, origin("quarantine_action")),
                _line("on_store_error", q.on_store_error, origin("on_store_error")),
                _line("release", q.release, origin("release")),
            ]  # fmt: skip
        for stage in self.stages:
            out += ["", "[[stage]]", _line("run", list(stage), self.origins.get("stages"))]
        for domain, overrides in self.policies.items():
            table = [
                _line(f"{scanner}.{key}", value, "file")
                for scanner, options in overrides.items()
                for key, value in options.items()
            ]
            out += ["", f"[policy.{json.dumps(domain)}]"]
            out += _marked(table, errors.get(f"policy.{domain}"))
        return "\n".join(out) + "\n"


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


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))


def _line(key: str, value: Any, origin: str | None, note: str = "") -> str:
    comment = origin or "default"
    if note:
        comment += f"; {note}"
    return f"{key} = {_toml(value)}  # {comment}"


def _max_concurrent_line(sc: ScannerConfig, factory: Any) -> str:
    if sc.max_concurrent is not None:
        return _line("max_concurrent", sc.max_concurrent, "file")
    declared = getattr(factory, "max_concurrent", None)
    if isinstance(declared, int) and not isinstance(declared, bool) and declared >= 1:
        return _line("max_concurrent", declared, f"default of plugin {sc.plugin}")
    return "# max_concurrent: no bound (the plugin declares none)  # default"


def _max_concurrent(source: str, where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{source}: {where} max_concurrent: expected a whole number >= 1 "
            f"(scans in flight at once), got {value!r}"
        )
    return value


def _plugin_defaults(factory: Any) -> dict[str, Any]:
    """Option defaults read from the factory's signature, for ``config show``."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    defaults = {}
    for param in params.values():
        if param.name == "name" or param.name in CORE_KEYS:
            continue
        if param.default is inspect.Parameter.empty:
            continue
        if param.default is None:
            continue
        defaults[param.name] = param.default
    return defaults


def _takes(registry: Registry, sc: ScannerConfig, option: str) -> bool:
    """Whether the plugin's factory names ``option`` as a parameter."""
    try:
        return option in inspect.signature(registry.factory(sc.plugin)).parameters
    except (TypeError, ValueError, ConfigError):
        return False


def _conditions(source: str, where: str, table: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the condition keys of a scanner table (or policy override)."""
    found: dict[str, Any] = {}
    if "mode" in table:
        found["mode"] = _choice(source, where, "mode", table["mode"], ("enforce", "shadow"))
    if "skip_authenticated" in table:
        if not isinstance(table["skip_authenticated"], bool):
            raise ConfigError(f"{source}: {where} skip_authenticated: expected true or false")
        found["skip_authenticated"] = table["skip_authenticated"]
    if "skip_networks" in table:
        value = table["skip_networks"]
        try:
            if not isinstance(value, list):
                raise ValueError(f"expected a list of CIDR blocks, got {value!r}")
            parse_networks(value)
        except ValueError as exc:
            raise ConfigError(f"{source}: {where} skip_networks: {exc}") from None
        found["skip_networks"] = list(value)
    return found


def _instantiate(
    registry: Registry,
    source: str,
    sc: ScannerConfig,
    options: Mapping[str, Any],
    timeout: float,
    table: str | None = None,
    prefix: str = "",
) -> Scanner:
    """The plugin's scanner for ``options``; an error names ``table`` (the
    scanner's, or the policy's that changed its options) and ``prefix`` + key."""
    where = f"{source}: {table or f'[scanner.{sc.name}]'}"
    plugin_where = f"{source}: [scanner.{sc.name}]"
    try:
        factory = registry.factory(sc.plugin)
    except ConfigError as exc:
        raise ConfigError(f"{plugin_where} plugin: {exc}") from None
    kwargs: dict[str, Any] = dict(options)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = None
    if params is not None:
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        if not takes_any:
            known = [p for p in params if p not in ("name", "timeout", "self")]
            for key in options:
                if key not in params or key in ("name", "timeout"):
                    raise ConfigError(
                        f"{where} {prefix}{key}: not an option of plugin {sc.plugin!r} "
                        f"(its options: {', '.join(known) or 'none'})"
                    )
            for pname, param in params.items():
                if (
                    param.default is inspect.Parameter.empty
                    and param.kind is param.KEYWORD_ONLY
                    and pname not in options
                    and pname not in ("name", "timeout")
                ):
                    raise ConfigError(f"{where} {pname}: required by plugin {sc.plugin!r}")
        if "timeout" in params:
            kwargs["timeout"] = timeout
    try:
        scanner = factory(name=sc.name, **kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where} {prefix}{exc}") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"{where} {prefix}{exc}") from None
    if not isinstance(scanner, Scanner):
        raise ConfigError(
            f"{where}: plugin {sc.plugin!r} returned {type(scanner).__name__}, "
            "which lacks name, scan() or aclose()"
        )
    return scanner


# -- parsing -----------------------------------------------------------------


def _expect_table(source: str, key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: {key}: expected a table, got {type(value).__name__}")
    return value


def _unknown(source: str, where: str, table: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"{source}: {where} {key}: unknown key (expected one of: {', '.join(allowed)})"
            )


def _duration(source: str, where: str, key: str, value: Any) -> float:
    try:
        return checks.duration(key, value)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {where} {exc}") from None


def _on_error(source: str, where: str, value: Any) -> Action:
    choices = ", ".join(str(a) for a in ON_ERROR_ACTIONS)
    if isinstance(value, str):
        try:
            action = Action.parse(value)
        except ValueError:
            action = None
        if action in ON_ERROR_ACTIONS:
            return action
    raise ConfigError(f"{source}: {where} on_error: expected one of {choices}, got {value!r}")


def _choice(source: str, where: str, key: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(
            f"{source}: {where} {key}: expected one of {', '.join(choices)}, got {value!r}"
        )
    return value


DEFAULT_CONFIG = "/etc/mxscan/mxscan.toml"


def default_config_path() -> Path:
    """``$MXSCAN_CONFIG`` or /etc/mxscan/mxscan.toml."""
    return Path(os.environ.get("MXSCAN_CONFIG") or DEFAULT_CONFIG)


def load_given_config(path: str | os.PathLike[str] | None) -> Config:
    """What every command does with ``--config``: that file, or the default
    one, with a clear error when neither is there."""
    if path:
        return load_config(path)
    default = default_config_path()
    if not default.exists():
        raise ConfigError(f"no configuration: give --config FILE or create {default}")
    return load_config(default)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML file; every problem is a [`ConfigError`][mxscan.ConfigError]."""
    source = str(path)
    try:
        with Path(path).open("rb") as fp:
            data = tomllib.load(fp)
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such configuration file") from None
    except PermissionError:
        raise ConfigError(f"{source}: permission denied") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a configuration file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 text: {exc}") from None
    return parse_config(data, source=source)


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> Config:
    _unknown(source, "", data, _TOP_KEYS)
    origins: dict[str, str] = {}

    defaults = _expect_table(source, "[defaults]", data.get("defaults", {}))
    _unknown(source, "[defaults]", defaults, ("on_error", "timeout"))
    on_error, timeout = DEFAULT_ON_ERROR, DEFAULT_TIMEOUT
    if "on_error" in defaults:
        on_error = _on_error(source, "[defaults]", defaults["on_error"])
        origins["defaults.on_error"] = "file"
    if "timeout" in defaults:
        timeout = _duration(source, "[defaults]", "timeout", defaults["timeout"])
        origins["defaults.timeout"] = "file"

    log = _expect_table(source, "[log]", data.get("log", {}))
    _unknown(source, "[log]", log, ("target", "facility", "level"))
    log_target = _choice(
        source, "[log]", "target", log.get("target", "stderr"), ("stderr", "syslog")
    )
    log_facility = _choice(source, "[log]", "facility", log.get("facility", "mail"), _FACILITIES)
    log_level = _choice(source, "[log]", "level", log.get("level", "info"), _LEVELS)
    for key in log:
        origins[f"log.{key}"] = "file"

    spool = _expect_table(source, "[spool]", data.get("spool", {}))
    _unknown(source, "[spool]", spool, ("threshold", "directory"))
    spool_threshold = DEFAULT_SPOOL_THRESHOLD
    if "threshold" in spool:
        try:
            spool_threshold = parse_size(spool["threshold"])
        except ValueError as exc:
            raise ConfigError(f"{source}: [spool] threshold: {exc}") from None
        origins["spool.threshold"] = "file"
    spool_dir = spool.get("directory")
    if isinstance(spool_dir, str):
        spool_dir = paths.resolve(spool_dir, paths.config_dir(source))
    if spool_dir is not None:
        if not isinstance(spool_dir, str) or not Path(spool_dir).is_dir():
            raise ConfigError(f"{source}: [spool] directory: {spool_dir!r} is not a directory")
        origins["spool.directory"] = "file"

    mime = _parse_mime(source, data.get("mime", {}), origins)

    scanner_tables = _expect_table(source, "[scanner]", data.get("scanner", {}))
    if not scanner_tables:
        raise ConfigError(
            f"{source}: defines no scanners: add at least one [scanner.NAME] table with a plugin"
        )
    scanners: dict[str, ScannerConfig] = {}
    for name, table in scanner_tables.items():
        where = f"[scanner.{name}]"
        if not _NAME.fullmatch(name):
            raise ConfigError(
                f"{source}: {where}: a scanner name may hold letters, digits, '-' and '_' only"
            )
        if name == MIME_SCANNER:
            raise ConfigError(
                f"{source}: {where}: the name {name!r} is taken by the [mime] limits' "
                "verdict in the log line; choose another"
            )
        table = _expect_table(source, where, table)
        plugin = table.get("plugin")
        if not isinstance(plugin, str) or not plugin:
            raise ConfigError(f"{source}: {where} plugin: required, the name of a scanner plugin")
        sc_origins = {
            key: "[defaults]" if f"defaults.{key}" in origins else "default"
            for key in ("on_error", "timeout")
        }
        sc_on_error, sc_timeout = on_error, timeout
        if "on_error" in table:
            sc_on_error = _on_error(source, where, table["on_error"])
            sc_origins["on_error"] = "file"
        if "timeout" in table:
            sc_timeout = _duration(source, where, "timeout", table["timeout"])
            sc_origins["timeout"] = "file"
        options = {k: v for k, v in table.items() if k not in CORE_KEYS}
        conditions = _conditions(source, where, table)
        max_concurrent = None
        if "max_concurrent" in table:
            max_concurrent = _max_concurrent(source, where, table["max_concurrent"])
        scanners[name] = ScannerConfig(
            name, plugin, sc_on_error, sc_timeout, options, sc_origins, conditions, max_concurrent
        )

    stages = _parse_stages(source, data.get("stage"), scanners)
    origins["stages"] = "file" if "stage" in data else "default (one stage per scanner)"
    policies = _parse_policies(source, data.get("policy", {}), scanners)
    quarantine = parse_quarantine(source, data.get("quarantine"), scanner_tables)
    return Config(
        source=source,
        on_error=on_error,
        timeout=timeout,
        scanners=scanners,
        stages=stages,
        policies=policies,
        log_target=log_target,
        log_facility=log_facility,
        log_level=log_level,
        spool_threshold=spool_threshold,
        spool_dir=spool_dir,
        origins=origins,
        quarantine=quarantine,
        mime=mime,
    )


def _parse_mime(source: str, value: Any, origins: dict[str, str]) -> MimeLimits:
    table = _expect_table(source, "[mime]", value)
    _unknown(source, "[mime]", table, (*LIMITS, "on_unchecked"))
    limits: dict[str, Any] = {}
    for key in LIMITS:
        if key in table:
            number = table[key]
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise ConfigError(
                    f"{source}: [mime] {key}: expected a whole number of at least 1, got {number!r}"
                )
            limits[key] = number
            origins[f"mime.{key}"] = "file"
    if "on_unchecked" in table:
        choices = [str(a) for a in ON_UNCHECKED_ACTIONS]
        text = _choice(source, "[mime]", "on_unchecked", table["on_unchecked"], choices)
        limits["on_unchecked"] = Action.parse(text)
        origins["mime.on_unchecked"] = "file"
    return MimeLimits(**limits)


def _parse_stages(
    source: str, value: Any, scanners: Mapping[str, ScannerConfig]
) -> tuple[tuple[str, ...], ...]:
    if value is None:
        return tuple((name,) for name in scanners)
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{source}: [[stage]]: expected one or more [[stage]] tables")
    stages: list[tuple[str, ...]] = []
    used: dict[str, int] = {}
    for number, stage in enumerate(value, 1):
        where = f"[[stage]] #{number}"
        stage = _expect_table(source, where, stage)
        _unknown(source, where, stage, ("run",))
        run = stage.get("run")
        if not isinstance(run, list) or not run or not all(isinstance(n, str) for n in run):
            raise ConfigError(f"{source}: {where} run: expected a list of scanner names")
        for name in run:
            if name not in scanners:
                raise ConfigError(
                    f"{source}: {where} run: no [scanner.{name}] is defined "
                    f"(defined: {', '.join(scanners)})"
                )
            if name in used:
                raise ConfigError(
                    f"{source}: {where} run: {name} already runs in [[stage]] #{used[name]}"
                )
            used[name] = number
        stages.append(tuple(run))
    unused = [name for name in scanners if name not in used]
    if unused:
        raise ConfigError(f"{source}: [scanner.{unused[0]}] is defined but runs in no [[stage]]")
    return tuple(stages)


def _parse_policies(
    source: str, value: Any, scanners: Mapping[str, ScannerConfig]
) -> dict[str, dict[str, dict[str, Any]]]:
    value = _expect_table(source, "[policy]", value)
    policies: dict[str, dict[str, dict[str, Any]]] = {}
    for domain, table in value.items():
        where = f"[policy.{json.dumps(domain)}]"
        if "*" in domain:
            suffix = domain.lstrip("*.")
            raise ConfigError(
                f"{source}: {where}: a policy domain has no wildcards; write "
                f"[policy.{json.dumps('.' + suffix)}] for the subdomains of {suffix} "
                f"(and [policy.{json.dumps(suffix)}] for {suffix} itself), as in Postfix tables"
            )
        if not _DOMAIN.fullmatch(domain) or domain == "default":
            raise ConfigError(
                f"{source}: {where}: expected a recipient domain such as example.net "
                "(or .example.net for its subdomains)"
            )
        table = _expect_table(source, where, table)
        overrides: dict[str, dict[str, Any]] = {}
        for scanner, options in table.items():
            if scanner not in scanners:
                raise ConfigError(
                    f"{source}: {where} {scanner}: no [scanner.{scanner}] is defined "
                    f"(defined: {', '.join(scanners)})"
                )
            options = _expect_table(source, f"{where} {scanner}", options)
            if "plugin" in options:
                raise ConfigError(
                    f"{source}: {where} {scanner}.plugin: a policy changes options, not the plugin"
                )
            if "keep_copy" in options:
                raise ConfigError(
                    f"{source}: {where} {scanner}.keep_copy: set it in [scanner.{scanner}]: "
                    "which copies are kept does not depend on the recipient's domain"
                )
            if "max_concurrent" in options:
                raise ConfigError(
                    f"{source}: {where} {scanner}.max_concurrent: set it in "
                    f"[scanner.{scanner}]: the bound is the daemon's, shared by every policy"
                )
            if "on_error" in options:
                _on_error(source, f"{where} {scanner}.", options["on_error"])
            if "timeout" in options:
                _duration(source, f"{where} {scanner}.", "timeout", options["timeout"])
            _conditions(source, f"{where} {scanner}.", options)
            overrides[scanner] = dict(options)
        policies[domain.lower()] = overrides
    return policies
