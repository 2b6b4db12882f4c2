"""The ``clamav`` scanner: one message in, one verdict out.

It streams the message to clamd (never holding it whole in memory) and maps
clamd's answer to the admin's choices. It never returns ACCEPT for a scan that
did not happen: a failure is a ``ScannerError`` (the pipeline's ``on_error``
decides), and a message too large to scan is an explicit, logged
``skipped(oversize)`` outcome.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable

from mxscan import Action, Address, HeaderEdit, Message, ScannerError, SmtpReply, Verdict

from . import headers
from ._version import __version__
from .client import ClamdClient
from .options import (
    ClamAVOptions,
    Heuristics,
    OnInfected,
    OnLimits,
    OnOversize,
    format_reject_message,
)
from .probe import LimitsProbe, probe_limits
from .protocol import (
    LIMITS_PREFIX,
    ClamdError,
    ScanResult,
    StreamLimitExceeded,
    is_heuristic,
    is_limit,
)

__all__ = ["ClamAV"]

OVERSIZE_TEMPFAIL = SmtpReply(452, "4.3.4", "Message too large to scan for viruses")
OVERSIZE_REJECT = SmtpReply(552, "5.3.4", "Message too large to scan for viruses")
LIMITS_TEMPFAIL = SmtpReply(451, "4.7.0", "Message could not be fully scanned for viruses")
LIMITS_REJECT = SmtpReply(554, "5.7.0", "Message could not be fully scanned for viruses")


class ClamAV:
    """Scan mail with clamd (see docs/clamav.md for every option).

    Options are checked here, at construction, and a bad one raises
    ``mxscan.ConfigError`` naming it. One instance serves concurrent scans: each
    scan is one connection to clamd, opened to the next address in turn.
    """

    #: The core's ``max_concurrent`` default: clamd's own ``MaxThreads`` default.
    max_concurrent = 10

    #: The declaration of every option, read by the core (``mxscan.options``).
    options_class = ClamAVOptions

    def __init__(self, name: str = "clamav", **values: object) -> None:
        self.name = name
        self.options = ClamAVOptions.parse(values)
        # Just under the pipeline's own deadline (the same ``timeout``), so that
        # when clamd is slow the error that reaches the log is ours, naming the
        # clamd and the phase, not the pipeline's anonymous "no verdict".
        deadline = self.options.timeout
        self.client = ClamdClient(
            self.options.address,
            timeout=deadline - min(1.0, deadline * 0.05),
            connect_timeout=self.options.connect_deadline,
        )
        self.scanned_by = f"mxscan-clamav {__version__} at {self.options.hostname}"

    def __repr__(self) -> str:
        addresses = ", ".join(str(a) for a in self.options.address)
        return f"ClamAV(name={self.name!r}, address=[{addresses}])"

    def probes(self) -> list[tuple[str, Callable[[], Awaitable[str]]]]:
        """mxscan's optional per-address probe (``config check --connect``): a
        zPING to each clamd on its own, no failover, so each address is judged;
        then the limits probe, since a clamd that answers OK past its limits
        passes such mail as clean."""
        return [(str(a), functools.partial(self._ping_one, a)) for a in self.client.addresses]

    async def _ping_one(self, address: Address) -> str:
        one = ClamdClient(
            [address], timeout=self.client.timeout, connect_timeout=self.client.connect_timeout
        )
        try:
            await one.ping()
            (limits,) = await probe_limits(
                [address], timeout=self.client.timeout, connect_timeout=self.client.connect_timeout
            )
        except ClamdError as exc:
            raise ScannerError(str(exc)) from exc
        if limits.problem:
            raise ScannerError(limits.problem)
        return "PONG, reports its limits"

    async def scan(self, message: Message) -> Verdict:
        max_size = self.options.max_size
        if max_size is not None and message.size > max_size:
            return self._oversize(
                message, f"message is {message.size} bytes, over max_size {max_size}"
            )
        try:
            result = await self.client.instream(message.chunks())
        except StreamLimitExceeded as exc:
            return self._oversize(
                message, f"message is over clamd's StreamMaxLength ({message.size} bytes; {exc})"
            )
        except ClamdError as exc:
            raise ScannerError(str(exc)) from exc
        return self._verdict(message, result)

    async def probe_limits(self) -> list[LimitsProbe]:
        """Whether each configured clamd reports scans cut short by its limits
        (see ``mxscan_clamav.probe``); ``config check --connect`` shows the
        ``problem`` of each probe that has one."""
        return await probe_limits(
            self.options.address,
            timeout=self.client.timeout,
            connect_timeout=self.options.connect_deadline,
        )

    async def aclose(self) -> None:
        """Nothing to release: connections last one request (clamd closes them)."""

    async def ping(self) -> None:
        """mxscan's optional health-probe hook: zPING, answered PONG by a live clamd
        (the next address in turn, failing over like a scan)."""
        try:
            await self.client.ping()
        except ClamdError as exc:
            raise ScannerError(str(exc)) from exc

    # -- verdicts ------------------------------------------------------------

    def _verdict(self, message: Message, result: ScanResult) -> Verdict:
        options = self.options
        if not result.infected:
            return _verdict(
                self.name,
                Action.ACCEPT,
                reason="no virus found",
                status="clean",
                edits=self._edits(message, "Clean"),
            )
        signatures = result.signatures
        real = [name for name in signatures if not is_heuristic(name)]
        names = ", ".join(signatures)
        limits = [name for name in signatures if is_limit(name)]
        if limits and not real:
            others = [name for name in signatures if not is_limit(name)]
            if not others or options.heuristics is not Heuristics.INFECTED:
                return self._limits(message, limits, names)
            signatures = tuple(others)
            names = ", ".join(others)
        if not real and options.heuristics is Heuristics.IGNORE:
            return _verdict(
                self.name,
                Action.ACCEPT,
                reason=f"only heuristic detections, ignored by configuration: {names}",
                status="clean",
                edits=self._edits(message, "Clean"),
            )
        status_header = headers.infected_status(signatures)
        if not real and options.heuristics is Heuristics.TAG:
            return _verdict(
                self.name,
                Action.ACCEPT,
                reason=f"heuristic detection (tagged, accepted by configuration): {names}",
                status=f"heuristic({','.join(signatures)})",
                findings=signatures,
                edits=self._edits(message, status_header, force=True),
            )
        on_infected = options.on_infected
        reply = None
        if on_infected is OnInfected.REJECT:
            virus = real[0] if real else signatures[0]
            reply = SmtpReply(550, "5.7.1", format_reject_message(options.reject_message, virus))
        return _verdict(
            self.name,
            on_infected.action,
            reason=f"virus found: {names}",
            status=f"infected({','.join(signatures)})",
            findings=signatures,
            edits=self._edits(
                message, status_header, force=on_infected is OnInfected.ACCEPT_AND_TAG
            ),
            reply=reply,
        )

    def _limits(self, message: Message, limits: list[str], names: str) -> Verdict:
        on_limits = self.options.on_limits
        reply = {OnLimits.TEMPFAIL: LIMITS_TEMPFAIL, OnLimits.REJECT: LIMITS_REJECT}.get(on_limits)
        short = [name.removeprefix(LIMITS_PREFIX) for name in limits]
        if on_limits is OnLimits.ACCEPT_AND_TAG:
            edits = self._edits(message, headers.unchecked_status(short), force=True)
        else:
            edits = tuple(headers.remove_forged(message)) if self.options.add_headers else ()
        return _verdict(
            self.name,
            on_limits.action,
            reason=f"not fully scanned for viruses: clamd stopped at its limit ({names}); "
            f"on_limits = {on_limits.value}",
            unchecked=tuple(_word(name) for name in short),
            findings=tuple(limits),
            edits=edits,
            reply=reply,
        )

    def _oversize(self, message: Message, why: str) -> Verdict:
        on_oversize = self.options.on_oversize
        reply = {
            OnOversize.ACCEPT_AND_LOG: None,
            OnOversize.TEMPFAIL: OVERSIZE_TEMPFAIL,
            OnOversize.REJECT: OVERSIZE_REJECT,
        }[on_oversize]
        forged = tuple(headers.remove_forged(message)) if self.options.add_headers else ()
        return Verdict.skipped(
            "oversize",
            action=on_oversize.action,
            scanner=self.name,
            reason=f"not scanned for viruses: {why}; on_oversize = {on_oversize.value}",
            edits=forged,
            reply=reply,
        )

    def _edits(
        self, message: Message, status: str, *, force: bool = False
    ) -> tuple[HeaderEdit, ...]:
        if not (self.options.add_headers or force):
            return ()
        return tuple(headers.tag(message, scanned_by=self.scanned_by, status=status))


def _verdict(
    scanner: str,
    action: Action,
    *,
    reason: str,
    status: str = "",
    unchecked: tuple[str, ...] = (),
    findings: tuple[str, ...] = (),
    edits: tuple[HeaderEdit, ...] = (),
    reply: SmtpReply | None = None,
) -> Verdict:
    """Every scanned verdict of this scanner is built here, so each one carries
    the instance name and the same fields (a status for the log line, or the
    limits that cut the scan short, and a reason)."""
    return Verdict(
        action=action,
        scanner=scanner,
        reason=reason,
        status=status,
        unchecked=unchecked,
        findings=findings,
        edits=edits,
        reply=reply,
    )


_NOT_A_WORD = re.compile(r"[^A-Za-z0-9_.-]")


def _word(limit: str) -> str:
    """A limit's name as the one short word a verdict's ``unchecked`` holds:
    clamd's names (``MaxRecursion``) already are; a future or garbled one is
    cut and cleaned rather than failing the verdict that reports it."""
    word = _NOT_A_WORD.sub("_", limit)
    return (word if word[:1].isalnum() and word[:1].isascii() else f"x{word}")[:48]
