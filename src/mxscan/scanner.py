"""The contract every scanner plugin implements.

A scanner is any object with a ``name``, an async ``scan`` and an async
``aclose``; nothing needs to inherit from mxscan. Factories are found through
the ``mxscan.scanners`` entry-point group (see ``plugins.py``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .message import Message
from .verdict import Verdict

__all__ = ["Scanner", "ScannerError"]


class ScannerError(Exception):
    """The scanner could not do its work (daemon down, timeout, garbage reply).

    Raising this - never returning ACCEPT for a scan that did not happen - lets
    the pipeline apply the admin's ``on_error`` choice. The message should name
    the daemon address and what happened, because it goes into the mail log.
    """


@runtime_checkable
class Scanner(Protocol):
    """What the pipeline needs of a scanner.

    ``scan`` must not change ``message``; it returns header changes as
    ``Verdict.edits``. It may be called concurrently for different messages.
    ``aclose`` releases connections and is called once at shutdown or reload.

    Optional attribute (not part of the protocol check): ``changes_body``, true
    when ``scan`` may return a ``Verdict.body``; absent means false. Adapters
    use it to ask the MTA for the right to replace the body only when needed.

    Optional method: ``async def ping(self) -> None``, a cheap health probe
    (clamd's zPING, spamd's PING) that returns when the backend would take a scan
    now and raises otherwise; ``mxscan milter --metrics`` calls it periodically
    for ``mxscan_scanner_up``. Scanners without a backend need not have it.
    """

    name: str

    async def scan(self, message: Message) -> Verdict: ...

    async def aclose(self) -> None: ...
