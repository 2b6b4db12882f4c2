"""When a scanner applies at all (milter-manager's "applicable conditions").

Skipping is an explicit, logged verdict (``skipped(authenticated)``), never a
silent pass: the log line always says which scanners looked at a message.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import attrs

from .message import Message

__all__ = ["Conditions", "parse_networks"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDR blocks (``10.0.0.0/8``, ``::1/128``, or a bare address)."""
    networks = []
    for value in values:
        if not isinstance(value, str):
            raise ValueError(f"expected a CIDR block such as 192.0.2.0/24, got {value!r}")
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"expected a CIDR block such as 192.0.2.0/24, got {value!r}") from None
    return tuple(networks)


@attrs.frozen
class Conditions:
    """Reasons to skip a scanner for one message."""

    skip_authenticated: bool = False
    skip_networks: tuple[Network, ...] = ()
    max_size: int | None = None

    def skip_reason(self, message: Message) -> tuple[str, str] | None:
        """``(token, reason)`` when the scanner should not run, else None."""
        envelope = message.envelope
        if self.skip_authenticated and envelope.auth_user:
            return "authenticated", f"client authenticated as {envelope.auth_user}"
        if self.skip_networks and envelope.client_address:
            try:
                address = ipaddress.ip_address(envelope.client_address.strip("[]"))
            except ValueError:
                address = None
            if address is not None:
                for network in self.skip_networks:
                    if address in network:
                        return "network", f"client {address} is in {network}"
        if self.max_size is not None and message.size > self.max_size:
            return "oversize", f"message of {message.size} bytes is over max_size {self.max_size}"
        return None
