"""Stages of scanners: concurrent within a stage, sequential across stages.

Edits of a stage (header edits, then a replacement body) are applied before
the next stage runs, so header rules in a later stage see the headers that
scanners added - the thing Postfix's
header_checks cannot do with milters. A scanner that fails, hangs or returns
nonsense gets its ``on_error`` outcome instead of taking the message down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

import attrs

from .conditions import Conditions
from .edits import HeaderEdit
from .message import Message
from .mimelimits import MimeLimits
from .scanner import Scanner, ScannerError
from .slots import Slots, default_slots
from .verdict import Action, Result, SmtpReply, Verdict

__all__ = ["ON_ERROR_ACTIONS", "Pipeline", "Step", "combine"]

log = logging.getLogger("mxscan")

#: What ``on_error`` may say: pass unscanned, ask the client to retry, refuse.
ON_ERROR_ACTIONS = (Action.ACCEPT, Action.TEMPFAIL, Action.REJECT)

_ERROR_REJECT = SmtpReply(554, "5.7.0", "Message could not be scanned")
# What combine() says when nothing objects (verdicts are immutable: share them).
#: Above this many header fields plus edits, a stage's edits are applied in a worker
#: thread: linear, but 40,000 fields are still tens of milliseconds that the event
#: loop (a milter's other connections) should not wait for.
THREAD_EDITS = 2000

_ACCEPTED = Verdict(scanner="mxscan", reason="accepted by every scanner", status="accept")
_NO_SCANNERS = Verdict(scanner="mxscan", reason="no scanners", status="accept")
#: The MIME limits a pipeline checks unless told otherwise (frozen: shared).
DEFAULT_LIMITS = MimeLimits()


def _check_on_error(_: object, __: object, value: Action) -> None:
    if value not in ON_ERROR_ACTIONS:
        raise ValueError(f"on_error must be accept, tempfail or reject, not {value}")


def _check_timeout(_: object, __: object, value: float) -> None:
    if not value > 0:
        raise ValueError(f"timeout must be positive, got {value}")


@attrs.frozen
class Step:
    """A scanner in a stage, with what to do when it cannot give a verdict."""

    scanner: Scanner
    timeout: float = attrs.field(default=60.0, validator=_check_timeout)
    on_error: Action = attrs.field(default=Action.TEMPFAIL, validator=_check_on_error)
    conditions: Conditions = attrs.field(factory=Conditions)
    #: Shadow mode: run and log the scanner, apply nothing it says.
    shadow: bool = False
    #: ``max_concurrent``: scans of this scanner in flight at once (waiting for
    #: a slot counts in ``timeout``); by default what the plugin declares.
    slots: Slots | None = attrs.field(eq=False)

    @slots.default
    def _plugins_slots(self) -> Slots | None:
        return default_slots(self.scanner)

    @property
    def name(self) -> str:
        return self.scanner.name


def _error_verdict(step: Step, kind: str, reason: str) -> Verdict:
    reply = _ERROR_REJECT if step.on_error is Action.REJECT else None
    return Verdict(
        action=step.on_error,
        scanner=step.name,
        reason=f"{reason} (on_error={step.on_error})",
        error=kind,
        reply=reply,
    )


async def _run_step(step: Step, message: Message) -> Verdict:
    skip = step.conditions.skip_reason(message)
    if skip is not None:
        token, reason = skip
        return Verdict.skipped(token, scanner=step.name, reason=reason)
    loop = asyncio.get_running_loop()
    start = loop.time()
    waited: list[float] = []
    verdict = await _scan(step, message, waited)
    return verdict._recorded(
        step.name, step.shadow, loop.time() - start, waited[0] if waited else None
    )


async def _scan(step: Step, message: Message, waited: list[float]) -> Verdict:
    """The scanner's verdict within ``timeout``, a slot wait included (its
    length goes into ``waited``)."""
    loop = asyncio.get_running_loop()
    try:
        # Typed as object: third-party scanners may return anything.
        async with asyncio.timeout(step.timeout):
            if step.slots is None:
                verdict: object = await step.scanner.scan(message)
            else:
                start = loop.time()
                async with step.slots:
                    waited.append(loop.time() - start)
                    verdict = await step.scanner.scan(message)
    except TimeoutError:
        if step.slots is not None and not waited:
            waited.append(step.timeout)
            return _error_verdict(
                step,
                "timeout",
                f"no free slot within {step.timeout:g}s "
                f"(all max_concurrent={step.slots.size} scans busy)",
            )
        return _error_verdict(step, "timeout", f"no verdict within {step.timeout:g}s")
    except ScannerError as exc:
        return _error_verdict(step, "failed", str(exc) or type(exc).__name__)
    except Exception as exc:
        log.exception("scanner %s raised an unexpected error", step.name)
        return _error_verdict(step, "crashed", f"{type(exc).__name__}: {exc}")
    if not isinstance(verdict, Verdict):
        kind = type(verdict).__name__
        return _error_verdict(step, "garbage", f"returned {kind}, not a Verdict")
    return verdict


async def _run_stage(stage: Sequence[Step], message: Message) -> list[Verdict]:
    """The stage's verdicts, in stage order, from steps run concurrently.

    The first step runs in the calling task, the others each in a task of
    their own: what gather() did, without the first step's task, the gathering
    future and a loop pass (about 10 us of a 70 us no-op scan in ``bench_core``).
    Cancelling the caller still cancels every step."""
    if not stage:
        return []
    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(_run_step(step, message)) for step in stage[1:]]
    try:
        verdicts = [await _run_step(stage[0], message)]
        for task in tasks:
            verdicts.append(await task)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    return verdicts


def combine(verdicts: Sequence[Verdict]) -> Verdict:
    """The most severe verdict wins (REJECT > DISCARD > QUARANTINE > TEMPFAIL >
    ACCEPT); the first of equals keeps its reason and reply. Shadow verdicts
    do not count."""
    worst: Verdict | None = None
    for verdict in verdicts:
        if verdict.shadow:
            continue
        if worst is None or verdict.action > worst.action:
            worst = verdict
    if worst is None or worst.action is Action.ACCEPT:
        return _ACCEPTED if verdicts else _NO_SCANNERS
    return attrs.evolve(worst, edits=())


def _as_step(item: Scanner | Step) -> Step:
    if isinstance(item, Step):
        return item
    if isinstance(item, Scanner):
        return Step(item)
    raise TypeError(f"a stage holds scanners or Steps, not {type(item).__name__}")


class Pipeline:
    """An ordered list of stages; build one directly or from a config file.

    ``limits`` are the MIME structure limits checked before any stage (None
    checks none); past one, the scanners run only if ``on_unchecked`` is
    accept, since any other outcome is already decided without them."""

    def __init__(
        self,
        stages: Iterable[Iterable[Scanner | Step]] = (),
        *,
        limits: MimeLimits | None = DEFAULT_LIMITS,
    ) -> None:
        self.limits = limits
        self.stages: tuple[tuple[Step, ...], ...] = tuple(
            tuple(_as_step(item) for item in stage) for stage in stages
        )
        names = [step.name for stage in self.stages for step in stage]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"scanner names must be unique in a pipeline: {duplicates}")

    @property
    def steps(self) -> tuple[Step, ...]:
        return tuple(step for stage in self.stages for step in stage)

    async def run(self, message: Message) -> Result:
        verdicts: list[Verdict] = []
        edits: list[HeaderEdit] = []
        current = message
        body_replaced = False
        unchecked = self.limits.verdict(message) if self.limits is not None else None
        stages = self.stages
        if unchecked is not None:
            verdicts.append(unchecked)
            if unchecked.action is not Action.ACCEPT:
                stages = ()
        for stage in stages:
            results = await _run_stage(stage, current)
            stage_edits = [e for v in results if not v.shadow for e in v.edits]
            if stage_edits:
                if len(stage_edits) + len(current.headers) > THREAD_EDITS:
                    current = await asyncio.to_thread(current.apply, stage_edits)
                else:
                    current = current.apply(stage_edits)
                edits.extend(stage_edits)
            bodies = [v.body for v in results if not v.shadow and v.body is not None]
            if bodies:
                # The last in stage order wins (see Verdict.body).
                current = attrs.evolve(current, body=bodies[-1])
                body_replaced = True
            verdicts.extend(results)
            if any(v.action >= Action.DISCARD and not v.shadow for v in results):
                break
        return Result(
            verdict=combine(verdicts),
            verdicts=tuple(verdicts),
            message=current,
            edits=tuple(edits),
            recipients=message.envelope.recipients,
            body_replaced=body_replaced,
        )

    async def aclose(self) -> None:
        await close_scanners(step.scanner for step in self.steps)


async def close_scanners(scanners: Iterable[Scanner]) -> None:
    """Close each distinct scanner once, even if one of them fails to close."""
    seen: set[int] = set()
    for scanner in scanners:
        if id(scanner) in seen:
            continue
        seen.add(id(scanner))
        try:
            await scanner.aclose()
        except Exception:
            log.exception("closing scanner %s failed", getattr(scanner, "name", "?"))
