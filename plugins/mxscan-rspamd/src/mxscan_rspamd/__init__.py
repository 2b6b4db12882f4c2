"""mxscan's rspamd scanner plugin (entry point ``rspamd``)."""

from .answer import RspamdAnswer
from .client import RspamdClient
from .scanner import Rspamd

__all__ = ["Rspamd", "RspamdAnswer", "RspamdClient"]
