"""Scanner plugins found through the ``mxscan.scanners`` entry-point group.

The official scanners are found exactly like third-party ones: the core imports
no plugin. ``importlib.metadata`` is the supported way to read entry points
(the ``entrypoints`` package is maintenance-only).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterator, Mapping

import attrs

from .errors import ConfigError
from .scanner import Scanner

__all__ = ["GROUP", "PluginInfo", "Registry", "discover"]

GROUP = "mxscan.scanners"

Factory = Callable[..., Scanner]


@attrs.frozen
class PluginInfo:
    name: str
    target: str
    distribution: str
    version: str
    _entry_point: importlib.metadata.EntryPoint | None = attrs.field(
        default=None, alias="entry_point", eq=False, repr=False
    )
    _factory: Factory | None = attrs.field(default=None, alias="factory", eq=False, repr=False)

    def load(self) -> Factory:
        if self._factory is not None:
            return self._factory
        assert self._entry_point is not None
        try:
            factory = self._entry_point.load()
        except Exception as exc:
            raise ConfigError(
                f"scanner plugin {self.name!r} ({self.distribution} {self.version}) "
                f"failed to load from {self.target}: {type(exc).__name__}: {exc}"
            ) from exc
        if not callable(factory):
            raise ConfigError(f"scanner plugin {self.name!r}: {self.target} is not callable")
        return factory  # type: ignore[no-any-return]


def discover() -> dict[str, PluginInfo]:
    """Every installed scanner plugin by entry-point name."""
    found: dict[str, PluginInfo] = {}
    for ep in importlib.metadata.entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        found.setdefault(
            ep.name,
            PluginInfo(
                name=ep.name,
                target=ep.value,
                distribution=dist.metadata["Name"] if dist is not None else "?",
                version=dist.version if dist is not None else "?",
                entry_point=ep,
            ),
        )
    return found


class Registry:
    """Installed plugins plus any registered in code (for embedding and tests)."""

    def __init__(self, extra: Mapping[str, Factory] | None = None) -> None:
        self._plugins = discover()
        for name, factory in (extra or {}).items():
            self.register(name, factory)

    def register(self, name: str, factory: Factory) -> None:
        module = getattr(factory, "__module__", "?")
        self._plugins[name] = PluginInfo(
            name=name,
            target=f"{module}:{getattr(factory, '__qualname__', '?')}",
            distribution="(registered in code)",
            version="",
            factory=factory,
        )

    def info(self, name: str) -> PluginInfo:
        try:
            return self._plugins[name]
        except KeyError:
            installed = ", ".join(sorted(self._plugins)) or "none"
            raise ConfigError(
                f"no scanner plugin {name!r} is installed (installed: {installed})"
            ) from None

    def factory(self, name: str) -> Factory:
        return self.info(name).load()

    def __iter__(self) -> Iterator[PluginInfo]:
        return iter(sorted(self._plugins.values(), key=lambda p: p.name))
