"""Errors that reach the admin as one clear line, never as a traceback."""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """Bad configuration: the message names the file, the key and what was expected."""
