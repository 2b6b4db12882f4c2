"""From a TOML file to a validated [`Config`][mxscan.Config]: one clear error per mistake.

Every error names the file, the table and the key, because the admin reads it
in a terminal or a log, not in a traceback. The keys of each table, their
checks and defaults are the declarations of ``config.schema``; what is left
here is the file's shape: scanner names, stages, policies and what refers to
what.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import ConfigError
from ..mimelimits import LIMITS, MimeLimits
from ..mimelimits import SCANNER as MIME_SCANNER
from ..options import Options
from ..quarantine.settings import QuarantineSettings
from .model import Config, ScannerConfig
from .schema import (
    CONDITION_KEYS,
    CORE_KEYS,
    TOP_KEYS,
    DefaultsTable,
    LogTable,
    MimeTable,
    QuarantineTable,
    ScannerTable,
    SpoolTable,
    StageTable,
)

__all__ = [
    "DEFAULT_CONFIG",
    "default_config_path",
    "load_config",
    "load_given_config",
    "parse_config",
    "parse_text",
]

DEFAULT_CONFIG = "/etc/mxscan/mxscan.toml"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
#: A recipient domain, or ``.domain`` for its subdomains (labels of letters,
#: digits, ``-`` and ``_``, Unicode letters included for SMTPUTF8 domains).
_DOMAIN = re.compile(r"\.?[\w-]+(?:\.[\w-]+)*")
#: What a policy may not change, and why (the admin reads the why).
_NOT_PER_POLICY = {
    "keep_copy": "which copies are kept does not depend on the recipient's domain",
    "max_concurrent": "the bound is the daemon's, shared by every policy",
}


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


def parse_text(text: str, *, source: str = "<string>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return parse_config(data, source=source)


# -- tables of declared keys ---------------------------------------------------


def expect_table(source: str, key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: {key}: expected a table, got {type(value).__name__}")
    return value


def refuse_unknown(
    source: str, where: str, table: Mapping[str, Any], allowed: Sequence[str]
) -> None:
    for key in table:
        if key not in allowed:
            place = f"{where} {key}" if where else key
            raise ConfigError(
                f"{source}: {place}: unknown key (expected one of: {', '.join(allowed)})"
            )


def checked(source: str, where: str, cls: type[Options], table: Mapping[str, Any]) -> Options:
    """``table`` parsed with its declaration; an error names file, table and key.
    Declared path keys are resolved against the file's directory first."""
    table = paths.resolve_declared(table, cls.declared().values(), paths.config_dir(source))
    try:
        return cls.parse(table)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {where} {exc}") from None


def declared_table(source: str, key: str, cls: type[Options], value: Any) -> Options:
    """A top-level table that holds only declared keys (``[log]``, ``[mime]``...)."""
    where = f"[{key}]"
    table = expect_table(source, where, value)
    refuse_unknown(source, where, table, tuple(cls.declared()))
    return checked(source, where, cls, table)


def check_keys(source: str, where: str, table: Mapping[str, Any], keys: Sequence[str]) -> None:
    """The given ``keys`` of ``table`` pass their ``[scanner.NAME]`` checks
    (``where`` ends in the scanner's name and a dot in a policy)."""
    declared = ScannerTable.declared()
    for key in keys:
        if key in table:
            try:
                declared[key].check(key, table[key])
            except ConfigError as exc:
                raise ConfigError(f"{source}: {where}{exc}") from None


# -- the file ------------------------------------------------------------------


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> Config:
    refuse_unknown(source, "", data, TOP_KEYS)
    tables = {
        key: declared_table(source, key, cls, data.get(key, {}))
        for key, cls in (
            ("defaults", DefaultsTable),
            ("log", LogTable),
            ("spool", SpoolTable),
            ("mime", MimeTable),
        )
    }
    origins = {f"{key}.{name}": "file" for key, table in tables.items() for name in table.given}
    defaults, log, spool, mime = (tables[k] for k in ("defaults", "log", "spool", "mime"))

    scanners, keep_copy = _parse_scanners(source, data.get("scanner", {}), defaults)
    stages = _parse_stages(source, data.get("stage"), scanners)
    origins["stages"] = "file" if "stage" in data else "default (one stage per scanner)"
    policies = _parse_policies(source, data.get("policy", {}), scanners)
    quarantine = None
    if "quarantine" in data:
        tables["quarantine"] = declared_table(
            source, "quarantine", QuarantineTable, data["quarantine"]
        )
        quarantine = _quarantine(tables["quarantine"], keep_copy)
    elif keep_copy:
        raise ConfigError(
            f"{source}: [scanner.{next(iter(keep_copy))}] keep_copy: needs a [quarantine] "
            "table to keep copies in"
        )
    return Config(
        source=source,
        on_error=defaults["on_error"],
        timeout=defaults["timeout"],
        scanners=scanners,
        stages=stages,
        policies=policies,
        log_target=log["target"],
        log_facility=log["facility"],
        log_level=log["level"],
        spool_threshold=spool["threshold"],
        spool_dir=spool["directory"],
        origins=origins,
        quarantine=quarantine,
        mime=MimeLimits(**{key: mime[key] for key in (*LIMITS, "on_unchecked")}),
        tables=tables,
    )


def _parse_scanners(
    source: str, value: Any, defaults: Options
) -> tuple[dict[str, ScannerConfig], dict[str, frozenset[str]]]:
    """The scanners, and the ``keep_copy`` of those that set one."""
    scanner_tables = expect_table(source, "[scanner]", value)
    if not scanner_tables:
        raise ConfigError(
            f"{source}: defines no scanners: add at least one [scanner.NAME] table with a plugin"
        )
    scanners: dict[str, ScannerConfig] = {}
    keep_copy: dict[str, frozenset[str]] = {}
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
        table = expect_table(source, where, table)
        core = checked(
            source, where, ScannerTable, {k: v for k, v in table.items() if k in CORE_KEYS}
        )
        origins = {}
        for key in ("on_error", "timeout"):
            origins[key] = (
                "file"
                if key in core.given
                else "[defaults]"
                if key in defaults.given
                else "default"
            )
        if core["keep_copy"] is not None:
            keep_copy[name] = core["keep_copy"]
        scanners[name] = ScannerConfig(
            name,
            core["plugin"],
            defaults["on_error"] if core["on_error"] is None else core["on_error"],
            defaults["timeout"] if core["timeout"] is None else core["timeout"],
            {k: v for k, v in table.items() if k not in CORE_KEYS},
            origins,
            {key: core[key] for key in CONDITION_KEYS if key in core.given},
            core["max_concurrent"],
        )
    return scanners, keep_copy


def _quarantine(table: Options, per_scanner: Mapping[str, frozenset[str]]) -> QuarantineSettings:
    return QuarantineSettings(
        store=table["store"],
        keep=table["keep"],
        max_size=table["max_size"],
        keep_copy=table["keep_copy"],
        per_scanner=dict(per_scanner),
        quarantine_action=table["quarantine_action"],
        on_store_error=table["on_store_error"],
        release=table["release"],
        given=table.given,
    )


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
        stage = expect_table(source, where, stage)
        refuse_unknown(source, where, stage, tuple(StageTable.declared()))
        run: tuple[str, ...] = checked(source, where, StageTable, stage)["run"]
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
        stages.append(run)
    unused = [name for name in scanners if name not in used]
    if unused:
        raise ConfigError(f"{source}: [scanner.{unused[0]}] is defined but runs in no [[stage]]")
    return tuple(stages)


def _parse_policies(
    source: str, value: Any, scanners: Mapping[str, ScannerConfig]
) -> dict[str, dict[str, dict[str, Any]]]:
    value = expect_table(source, "[policy]", value)
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
        table = expect_table(source, where, table)
        overrides: dict[str, dict[str, Any]] = {}
        for scanner, options in table.items():
            if scanner not in scanners:
                raise ConfigError(
                    f"{source}: {where} {scanner}: no [scanner.{scanner}] is defined "
                    f"(defined: {', '.join(scanners)})"
                )
            options = expect_table(source, f"{where} {scanner}", options)
            if "plugin" in options:
                raise ConfigError(
                    f"{source}: {where} {scanner}.plugin: a policy changes options, not the plugin"
                )
            for key, why in _NOT_PER_POLICY.items():
                if key in options:
                    raise ConfigError(
                        f"{source}: {where} {scanner}.{key}: set it in [scanner.{scanner}]: {why}"
                    )
            check_keys(source, f"{where} {scanner}.", options, ("on_error", "timeout"))
            check_keys(source, f"{where} {scanner}.", options, CONDITION_KEYS)
            overrides[scanner] = dict(options)
        policies[domain.lower()] = overrides
    return policies
