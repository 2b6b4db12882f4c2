"""mxscan's SpamAssassin scanner plugin (entry point ``spamassassin``)."""

from ._version import __version__
from .scanner import SpamAssassin

__all__ = ["SpamAssassin", "__version__"]
