"""From a validated [`Config`][mxscan.Config] to a running [`PolicyRouter`][mxscan.PolicyRouter].

Here the plugins are found and called: each ``[scanner.NAME]`` becomes a scanner
(once per distinct option set), with its bound, deadline and conditions. A
plugin that declares an options class (``mxscan.options``) is checked against
the declaration: a key it does not declare is refused naming the table, before
its factory runs. For one that declares none, its factory's keyword
parameters are the declaration.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from .. import options as checks
from .. import paths
from ..conditions import Conditions, parse_networks
from ..errors import ConfigError
from ..pipeline import Pipeline, Step
from ..plugins import Registry
from ..quarantine.keeper import Keeper
from ..quarantine.store import open_store
from ..router import PolicyRouter
from ..scanner import Scanner
from ..slots import Slots, default_slots
from .schema import CONDITION_KEYS, CORE_KEYS, ON_ERROR, ScannerTable

if TYPE_CHECKING:
    from .model import Config, ScannerConfig

__all__ = ["build", "plugin_defaults", "plugin_options", "problems"]

#: Parameters of a factory the core fills in itself: not options of the plugin.
_SET_BY_CORE = ("name", "timeout", "self")


def build(config: Config, registry: Registry) -> PolicyRouter:
    base = {name: _step(config, registry, sc, {}) for name, sc in config.scanners.items()}
    # One bound per scanner, shared by its policy variants: they talk to
    # the same daemon.
    slots = {name: step.slots for name, step in base.items()}
    stages = config.stages
    default = Pipeline([[base[n] for n in stage] for stage in stages], limits=config.mime)
    policies: dict[str, Pipeline] = {}
    for domain, overrides in config.policies.items():
        steps = {
            name: _step(config, registry, sc, overrides[name], slots[name], domain)
            if name in overrides
            else base[name]
            for name, sc in config.scanners.items()
        }
        policies[domain] = Pipeline(
            [[steps[n] for n in stage] for stage in stages], limits=config.mime
        )
    return PolicyRouter(default, policies, keeper=_keeper(config))


def problems(config: Config, registry: Registry) -> tuple[dict[str, str], list[Scanner]]:
    errors: dict[str, str] = {}
    built: list[Scanner] = []
    for name, sc in config.scanners.items():
        try:
            built.append(_step(config, registry, sc, {}).scanner)
        except ConfigError as exc:
            errors[f"scanner.{name}"] = str(exc)
    for domain, overrides in config.policies.items():
        for name, options in overrides.items():
            if f"scanner.{name}" in errors:
                continue
            try:
                step = _step(config, registry, config.scanners[name], options, domain=domain)
                built.append(step.scanner)
            except ConfigError as exc:
                errors.setdefault(f"policy.{domain}", str(exc))
    return errors, built


def _keeper(config: Config) -> Keeper | None:
    if config.quarantine is None:
        return None
    try:
        store = open_store(config.quarantine.store)
    except ValueError as exc:
        raise ConfigError(f"{config.source}: [quarantine] store: {exc}") from None
    return Keeper(store, config.quarantine)


def _step(
    config: Config,
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
    where = f"{config.source}: {table} {prefix}"
    timeout, on_error = sc.timeout, sc.on_error
    try:
        if "timeout" in overrides:
            timeout = checks.duration("timeout", overrides["timeout"])
        if "on_error" in overrides:
            on_error = ON_ERROR("on_error", overrides["on_error"])
        condition_keys = ScannerTable.declared()
        conditions = {
            **sc.conditions,
            **{
                key: condition_keys[key].check(key, overrides[key])
                for key in CONDITION_KEYS
                if key in overrides
            },
        }
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
    options = {**sc.options, **{k: v for k, v in overrides.items() if k not in CORE_KEYS}}
    try:
        factory = registry.factory(sc.plugin)
    except ConfigError:
        factory = None  # _instantiate names the missing plugin
    max_size = None
    if "max_size" in options and (factory is None or "max_size" not in plugin_options(factory)):
        # Plugins with their own size handling (on_oversize) get max_size;
        # for the others the core skips the scanner above it.
        try:
            max_size = checks.size("max_size", options.pop("max_size"))
        except ConfigError as exc:
            raise ConfigError(f"{where}{exc}") from None
    options = paths.resolve_options(options, factory, config.base_dir)
    scanner = _instantiate(registry, config.source, sc, options, timeout, table, prefix)
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


def plugin_options(factory: Any) -> dict[str, Any]:
    """A factory's options by name, each with its default (``checks.REQUIRED``
    when it has none), the ``timeout`` the core passes included: from its
    options class, else from its keyword parameters. Empty when it takes
    ``**kwargs`` without a declaration (the core then checks nothing)."""
    declared = checks.declared(factory)
    if declared is not None:
        return {name: option.default for name, option in declared.declared().items()}
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    found: dict[str, Any] = {}
    for name, p in params.items():
        if name in ("name", "self") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.default is not inspect.Parameter.empty:
            found[name] = p.default
        else:  # only a keyword-only one must be given: a positional one may have no TOML key
            found[name] = checks.REQUIRED if p.kind is p.KEYWORD_ONLY else None
    return found


def plugin_defaults(factory: Any) -> dict[str, Any]:
    """Option defaults, for ``config show``: those with a value (not None, not
    required), without the core's own keys."""
    return {
        name: default
        for name, default in plugin_options(factory).items()
        if name not in CORE_KEYS and default is not None and default is not checks.REQUIRED
    }


def _checks_nothing(factory: Any) -> bool:
    """A factory that takes any keyword and declares no options."""
    if checks.declared(factory) is not None:
        return False
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


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
    if not _checks_nothing(factory):
        known = plugin_options(factory)
        names = [n for n in known if n not in _SET_BY_CORE]
        for key in options:
            if key not in names:
                raise ConfigError(
                    f"{where} {prefix}{key}: not an option of plugin {sc.plugin!r} "
                    f"(its options: {', '.join(names) or 'none'})"
                )
        for name in names:
            if known[name] is checks.REQUIRED and name not in options:
                raise ConfigError(f"{where} {name}: required by plugin {sc.plugin!r}")
        if "timeout" in known:
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
