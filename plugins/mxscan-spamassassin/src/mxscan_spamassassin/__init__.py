"""mxscan's SpamAssassin scanner plugin (entry point ``spamassassin``)."""

from .scanner import SpamAssassin

__all__ = ["SpamAssassin"]
