"""The TOML configuration file: named scanner instances, stages, policies.

One file replaces the five programs' configs of the classic stack. The package
is split by job: ``schema`` declares every key of the core's tables (check,
default, meaning), ``parse`` turns a file into a validated
[`Config`][mxscan.Config] (``model``), ``build`` turns that into a running
[`PolicyRouter`][mxscan.PolicyRouter], and ``render`` is ``mxscan config show``. Plugin
options are declared with ``mxscan.options``, in each plugin.
"""

from __future__ import annotations

from ..errors import ConfigError
from .model import Config, ScannerConfig
from .parse import (
    DEFAULT_CONFIG,
    default_config_path,
    load_config,
    load_given_config,
    parse_config,
)
from .schema import CONDITION_KEYS, CORE_KEYS, TABLES

__all__ = [
    "CONDITION_KEYS",
    "CORE_KEYS",
    "DEFAULT_CONFIG",
    "TABLES",
    "Config",
    "ConfigError",
    "ScannerConfig",
    "default_config_path",
    "load_config",
    "load_given_config",
    "parse_config",
]
