"""mxscan: scan mail on an MX with ClamAV, SpamAssassin and header rules in one pipeline.

This module is the whole public API; submodules are implementation details.
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import options
from .addresses import (
    Address,
    InetAddress,
    UnixAddress,
    open_connection,
    parse_address,
    parse_addresses,
)
from .api import ascan, scan
from .body import Body, BodyBuilder
from .conditions import Conditions
from .config import Config, load_config
from .edits import EditKind, HeaderEdit
from .errors import ConfigError
from .header import Header, InvalidHeader, header_name_length
from .logline import format_result
from .message import Envelope, Message
from .mimelimits import MimeLimits
from .pipeline import Pipeline, Step
from .plugins import Registry
from .received import received_header
from .router import PolicyRouter
from .scanner import Scanner, ScannerError
from .units import parse_duration, parse_size
from .verdict import ENHANCED_STATUS, Action, Result, Route, SmtpReply, Verdict

__all__ = [
    "ENHANCED_STATUS",
    "Action",
    "Address",
    "Body",
    "BodyBuilder",
    "Conditions",
    "Config",
    "ConfigError",
    "EditKind",
    "Envelope",
    "Header",
    "HeaderEdit",
    "InetAddress",
    "InvalidHeader",
    "Message",
    "MimeLimits",
    "Pipeline",
    "PolicyRouter",
    "Registry",
    "Result",
    "Route",
    "Scanner",
    "ScannerError",
    "SmtpReply",
    "Step",
    "UnixAddress",
    "Verdict",
    "__version__",
    "ascan",
    "format_result",
    "header_name_length",
    "load_config",
    "open_connection",
    "options",
    "parse_address",
    "parse_addresses",
    "parse_duration",
    "parse_size",
    "received_header",
    "scan",
]
