"""Does the clamd we reach say when it stops at a limit, or answer ``OK``?

Without ``AlertExceedsMax yes`` clamd answers ``OK`` for a file it stopped
scanning at MaxRecursion, MaxFiles, MaxFileSize or MaxScanSize, and the
plugin's ``on_limits`` never fires: a virus one zip deeper than MaxRecursion is
"clean". Nothing in clamd's protocol reports its configuration, so the probe
asks the way a hostile sender would: a harmless file nested in more zips than
any sane MaxRecursion (default 17). ``Heuristics.Limits.Exceeded.MaxRecursion``
means the limits are reported; ``OK`` means they are not (or MaxRecursion is
above the probe's depth, which the message says).

For ``mxscan config check --connect``: ``await scanner.probe_limits()`` probes
each of the scanner's clamd addresses on its own (failover would hide one that
is set up differently) and gives one ``LimitsProbe`` per address.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

from mxscan import Address

from .client import ClamdClient
from .protocol import is_limit

__all__ = ["PROBE_DEPTH", "LimitsProbe", "probe_file", "probe_limits"]

#: Zips in the probe: far above clamd's default MaxRecursion of 17, yet 11 KB.
PROBE_DEPTH = 64


@dataclass(frozen=True)
class LimitsProbe:
    """What the probe found; ``problem`` is the line to show an admin, or None."""

    alerts: bool
    signatures: tuple[str, ...]
    address: str

    @property
    def problem(self) -> str | None:
        if self.alerts:
            return None
        answer = ", ".join(self.signatures) or "OK"
        return (
            f"clamd at {self.address} answered {answer} for a file nested {PROBE_DEPTH} zips "
            "deep, not Heuristics.Limits.Exceeded.MaxRecursion: it does not report scans "
            "cut short by its limits, so on_limits never applies and such mail passes as "
            "clean. Set 'AlertExceedsMax yes' (and keep 'HeuristicAlerts yes') in clamd.conf"
            f" (or its MaxRecursion is above {PROBE_DEPTH})."
        )


def probe_file(depth: int = PROBE_DEPTH) -> bytes:
    """A harmless text file inside ``depth`` nested zips, built on the spot."""
    data, name = b"mxscan probe: is AlertExceedsMax on?\n", "probe.txt"
    for level in range(depth, 0, -1):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr(name, data)
        data, name = buf.getvalue(), f"level{level}.zip"
    return data


async def probe_limits(
    addresses: Sequence[Address], *, timeout: float = 30.0, connect_timeout: float = 5.0
) -> list[LimitsProbe]:
    """Scan ``probe_file()`` at each address; a clamd that gives no verdict
    raises ``ClamdError`` (naming it), as a scan would."""
    probe = probe_file()
    found = []
    for address in addresses:
        client = ClamdClient([address], timeout=timeout, connect_timeout=connect_timeout)
        result = await client.instream([probe])
        alerts = any(is_limit(name) for name in result.signatures)
        found.append(LimitsProbe(alerts, result.signatures, str(address)))
    return found
