"""A validated configuration: what the parser produces and the builder reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from .. import paths
from ..body import DEFAULT_SPOOL_THRESHOLD
from ..mimelimits import MimeLimits
from ..options import Options
from ..plugins import Registry
from ..quarantine.settings import QuarantineSettings
from ..router import PolicyRouter
from ..scanner import Scanner
from ..verdict import Action
from .build import build, problems
from .render import render

__all__ = ["Config", "ScannerConfig"]


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
    running [`PolicyRouter`][mxscan.PolicyRouter]."""

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
    #: The core's tables as parsed from their declarations (``config.schema``),
    #: by top-level key: what ``config show`` writes back.
    tables: Mapping[str, Options] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def base_dir(self) -> str | None:
        """Where relative paths in the file resolve (see ``mxscan.paths``)."""
        return paths.config_dir(self.source)

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<string>") -> Config:
        from .parse import parse_text  # the parser makes Configs: imported when used

        return parse_text(text, source=source)

    def build(self, registry: Registry | None = None) -> PolicyRouter:
        """Instantiate every scanner (once per distinct option set) and the
        pipelines of the default policy and of each ``[policy."domain"]``."""
        return build(self, registry if registry is not None else Registry())

    def problems(self, registry: Registry | None = None) -> tuple[dict[str, str], list[Scanner]]:
        """Build every scanner on its own: an error per table that cannot be
        built (``scanner.NAME`` or ``policy.DOMAIN``), and the scanners that
        could (to be closed). ``config show`` shows a configuration with a
        missing file, marked, rather than failing on it."""
        return problems(self, registry if registry is not None else Registry())

    def render(
        self, registry: Registry | None = None, errors: Mapping[str, str] | None = None
    ) -> str:
        """The effective configuration as TOML, each value commented with its
        origin; ``errors`` (from ``problems()``) are marked where they are."""
        return render(self, registry if registry is not None else Registry(), errors or {})
