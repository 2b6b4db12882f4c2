"""Command-line options every subcommand spells alike, the adapters' included.

Here, not in ``cli.py``: ``cli.py`` loads the adapters' subcommands, so an
adapter that imported it back would close an import cycle.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TextIO

from .config import default_config_path

__all__ = ["config_arg", "table"]


def config_arg(parser: argparse.ArgumentParser) -> None:
    """``-c/--config``, worded alike for every subcommand (adapters' too)."""
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help=f"TOML configuration (default: $MXSCAN_CONFIG or {default_config_path()})",
    )


def table(header: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    """Columns padded to their widest cell, as every listing command prints them."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=True)]
        out.write("  ".join(cells).rstrip() + "\n")
