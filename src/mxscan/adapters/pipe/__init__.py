"""Pipe adapter: mxscan as a Postfix ``pipe(8)`` after-queue content filter.

``plan`` decides (sans I/O) what a scan result means for each recipient group,
``reinject`` runs sendmail, ``runner`` is the guarded stdin -> scan -> re-inject
path, ``cli`` the ``mxscan pipe`` arguments. See docs/pipe.md.
"""

from .cli import add_parser

__all__ = ["add_parser"]
