"""mxscan-header-rules: Postfix ``header_checks`` tables as an mxscan scanner.

The entry point ``header-rules`` (group ``mxscan.scanners``) names
:class:`HeaderRules`. The table parser and matcher are usable on their own:
:func:`parse_table` / :func:`load_table` give a :class:`Table` whose
``lookup(key)`` answers like ``postmap -q``.
"""

from __future__ import annotations

from ._version import __version__
from .actions import ParsedAction, parse_action
from .scanner import HeaderRules, RuleHit
from .table import Lookup, Table, TableError, load_table, parse_table

__all__ = [
    "HeaderRules",
    "Lookup",
    "ParsedAction",
    "RuleHit",
    "Table",
    "TableError",
    "__version__",
    "load_table",
    "parse_action",
    "parse_table",
]
