"""Per-recipient-domain policies on top of pipelines.

A milter-based stack applies one spam threshold to every domain. Here each
policy is its own pipeline (sharing scanner instances whose options did not
change), recipients are grouped by policy, and each group gets its own verdict.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import attrs

from .message import Message
from .pipeline import Pipeline, Step, close_scanners
from .verdict import Result

if TYPE_CHECKING:
    from .quarantine.keeper import Keeper

__all__ = ["DEFAULT_POLICY", "PolicyRouter", "domain_of"]

DEFAULT_POLICY = "default"


def domain_of(address: str) -> str:
    """The domain of an address, lower-cased; ``<user@Example.NET>`` -> ``example.net``."""
    address = address.strip().strip("<>")
    return address.rpartition("@")[2].lower().rstrip(".") if "@" in address else ""


def _matches(pattern: str, domain: str) -> bool:
    # Postfix table convention: "example.net" is that domain, ".example.net"
    # its subdomains.
    if pattern.startswith("."):
        return domain.endswith(pattern)
    return domain == pattern


class PolicyRouter:
    """Routes each message (or each group of its recipients) to a pipeline."""

    def __init__(
        self,
        default: Pipeline,
        policies: Mapping[str, Pipeline] | None = None,
        *,
        keeper: Keeper | None = None,
    ) -> None:
        self.default = default
        #: The ``[quarantine]`` step: copies kept before any adapter answers.
        self.keeper = keeper
        self.policies = {k.lower(): v for k, v in (policies or {}).items()}
        if DEFAULT_POLICY in self.policies:
            raise ValueError(f"{DEFAULT_POLICY!r} cannot be a policy domain")
        # Exact domains before subdomain patterns, longest patterns first.
        self._order = sorted(self.policies, key=lambda p: (p.startswith("."), -len(p)))

    @property
    def steps(self) -> tuple[Step, ...]:
        """Every step of every policy, the default policy's first; policies share
        the scanner instances whose options they do not change."""
        pipelines = (self.default, *self.policies.values())
        return tuple(step for p in pipelines for step in p.steps)

    @property
    def changes_body(self) -> bool:
        """Whether any scanner may replace the body: a milter asks the MTA for
        that right only then, so the common case negotiates no more than it uses."""
        return any(getattr(step.scanner, "changes_body", False) is True for step in self.steps)

    def policy_for(self, recipient: str) -> str:
        domain = domain_of(recipient)
        for pattern in self._order:
            if _matches(pattern, domain):
                return pattern
        return DEFAULT_POLICY

    def pipeline(self, policy: str) -> Pipeline:
        return self.default if policy == DEFAULT_POLICY else self.policies[policy]

    def group(self, recipients: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """Recipients by policy, in first-seen order."""
        groups: dict[str, list[str]] = {}
        for recipient in recipients:
            groups.setdefault(self.policy_for(recipient), []).append(recipient)
        return {policy: tuple(rcpts) for policy, rcpts in groups.items()}

    async def scan(self, message: Message) -> Result:
        result = await self._scan(message)
        if self.keeper is not None:
            # The original bytes, as received, whatever scanners edited.
            result = await self.keeper.keep(result, message)
        return result

    async def _scan(self, message: Message) -> Result:
        groups = self.group(message.envelope.recipients) or {DEFAULT_POLICY: ()}
        if len(groups) == 1:
            (policy,) = groups  # every recipient: the message's envelope as it is
            return await self._run_group(policy, message)
        runs = []
        for policy, recipients in groups.items():
            envelope = attrs.evolve(message.envelope, recipients=recipients)
            runs.append(self._run_group(policy, message.with_envelope(envelope)))
        results = await asyncio.gather(*runs)
        worst = max(results, key=lambda r: r.verdict.action)
        return Result(
            verdict=worst.verdict,
            verdicts=tuple(v for r in results for v in r.verdicts),
            message=worst.message,
            edits=worst.edits,
            policy="split",
            recipients=message.envelope.recipients,
            splits=tuple(results),
            body_replaced=worst.body_replaced,
        )

    async def _run_group(self, policy: str, message: Message) -> Result:
        result = await self.pipeline(policy).run(message)
        recipients = message.envelope.recipients
        if result.policy == policy and result.recipients == recipients:
            return result  # as Pipeline.run leaves it for the default policy
        return attrs.evolve(result, policy=policy, recipients=recipients)

    async def aclose(self) -> None:
        """Close each scanner instance once: policies share unchanged ones."""
        await close_scanners(step.scanner for step in self.steps)
        if self.keeper is not None:
            await self.keeper.aclose()
