"""Command-line options every subcommand spells alike, the adapters' included.

Here, not in ``cli.py``: ``cli.py`` loads the adapters' subcommands, so an
adapter that imported it back would close an import cycle.
"""

from __future__ import annotations

import argparse

from .config import default_config_path

__all__ = ["config_arg"]


def config_arg(parser: argparse.ArgumentParser) -> None:
    """``-c/--config``, worded alike for every subcommand (adapters' too)."""
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help=f"TOML configuration (default: $MXSCAN_CONFIG or {default_config_path()})",
    )
