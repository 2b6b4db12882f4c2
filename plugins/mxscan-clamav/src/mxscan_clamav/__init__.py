"""mxscan-clamav: scan mail for viruses with clamd, as an mxscan scanner plugin.

Enabled in the configuration with ``plugin = "clamav"`` (entry point group
``mxscan.scanners``). The clamd client is usable on its own too::

    client = ClamdClient(["unix:/run/clamav/clamd.ctl", "inet:127.0.0.1:3310"])
    result = await client.instream(message.chunks())
"""

from ._version import __version__
from .client import ClamdClient, ClamdConnectionLost, ClamdTimeout, ClamdUnavailable
from .probe import LimitsProbe, probe_limits
from .protocol import (
    ClamdError,
    ClamdErrorReply,
    ClamdProtocolError,
    ScanResult,
    StreamLimitExceeded,
)
from .scanner import ClamAV

__all__ = [
    "ClamAV",
    "ClamdClient",
    "ClamdConnectionLost",
    "ClamdError",
    "ClamdErrorReply",
    "ClamdProtocolError",
    "ClamdTimeout",
    "ClamdUnavailable",
    "LimitsProbe",
    "ScanResult",
    "StreamLimitExceeded",
    "__version__",
    "probe_limits",
]
