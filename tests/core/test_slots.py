"""max_concurrent: at most N scans of a scanner in flight; a wait counts in its timeout.

Behaviour only (no timed assertions): how many scans are inside the scanner at
once, and that a scan that cannot get a slot ends with its own timeout instead
of hanging.
"""

from __future__ import annotations

import asyncio

import pytest

from mxscan import Config, Message, Pipeline, Registry, Step, Verdict
from mxscan.errors import ConfigError
from mxscan.service.metrics import Metrics
from mxscan.slots import Slots

MESSAGE = b"Subject: x\r\n\r\nbody\r\n"


class Gate:
    """A scanner that counts the scans inside it and holds each until released."""

    def __init__(self, name: str = "gate", max_concurrent: int | None = None) -> None:
        self.name = name
        if max_concurrent is not None:
            self.max_concurrent = max_concurrent
        self.inside = 0
        self.peak = 0
        self.release = asyncio.Event()

    async def scan(self, message: Message) -> Verdict:
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        try:
            await self.release.wait()
        finally:
            self.inside -= 1
        return Verdict(status="clean")

    async def aclose(self) -> None:
        pass


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_at_most_n_scans_run_and_the_others_wait_then_run() -> None:
    gate = Gate()
    pipeline = Pipeline([[Step(gate, timeout=60, slots=Slots(2))]])
    runs = [asyncio.create_task(pipeline.run(Message.from_bytes(MESSAGE))) for _ in range(7)]
    await _settle()
    assert gate.inside == 2
    assert pipeline.steps[0].slots is not None and pipeline.steps[0].slots.waiting == 5
    gate.release.set()
    results = await asyncio.wait_for(asyncio.gather(*runs), 30)
    assert gate.peak == 2
    assert [r.verdicts[0].status for r in results] == ["clean"] * 7
    waits = [r.verdicts[0].waited for r in results]
    assert all(w is not None and w >= 0 for w in waits)


async def test_a_scan_that_gets_no_slot_fails_by_its_own_timeout() -> None:
    gate = Gate()  # never released: the slot is held for good
    pipeline = Pipeline([[Step(gate, timeout=0.3, slots=Slots(1))]])
    first = asyncio.create_task(pipeline.run(Message.from_bytes(MESSAGE)))
    await _settle()
    second = await asyncio.wait_for(pipeline.run(Message.from_bytes(MESSAGE)), 30)
    verdict = second.verdicts[0]
    assert verdict.status == "error(timeout)"
    assert "no free slot within 0.3s (all max_concurrent=1 scans busy)" in verdict.reason
    assert verdict.waited == 0.3
    held = (await asyncio.wait_for(first, 30)).verdicts[0]
    assert held.status == "error(timeout)" and "no verdict within 0.3s" in held.reason
    assert gate.inside == 0


async def test_the_plugins_declared_default_applies_and_none_means_no_bound() -> None:
    bounded, unbounded = Gate("a", max_concurrent=3), Gate("b")
    pipeline = Pipeline([[bounded, unbounded]])
    a, b = pipeline.steps
    assert a.slots is not None and a.slots.size == 3
    assert b.slots is None


class Keyed(Gate):
    max_concurrent = 7  # a class attribute: config show reads it without building

    def __init__(self, name: str = "gate", keyword: str = "") -> None:
        super().__init__(name)
        self.keyword = keyword


CONFIG = """
[scanner.kw]
plugin = "keyed"
keyword = "x"
{limit}
[policy."example.net".kw]
keyword = "y"
"""


@pytest.mark.parametrize(("limit", "size"), [("max_concurrent = 4", 4), ("", 7)])
def test_config_sets_it_and_shares_one_bound_across_policies(limit: str, size: int) -> None:
    engine = Config.from_toml(CONFIG.format(limit=limit)).build(Registry({"keyed": Keyed}))
    (default,) = engine.default.steps
    (other,) = engine.policies["example.net"].steps
    assert default.scanner is not other.scanner  # the policy has its own options...
    assert default.slots is other.slots  # ...and the daemon's one bound
    assert default.slots is not None and default.slots.size == size


@pytest.mark.parametrize("value", [0, -1, "4", 2.5, True])
def test_a_bad_max_concurrent_is_a_config_error(value: object) -> None:
    text = f'[scanner.kw]\nplugin = "keyword"\nmax_concurrent = {value!r}\n'.replace("'", '"')
    if value is True:
        text = text.replace("True", "true")
    with pytest.raises(ConfigError, match="max_concurrent: expected a whole number >= 1"):
        Config.from_toml(text)


def test_a_policy_cannot_change_it() -> None:
    with pytest.raises(ConfigError, match=r"kw\.max_concurrent: set it in \[scanner\.kw\]"):
        Config.from_toml(
            '[scanner.kw]\nplugin = "keyword"\n[policy."example.net".kw]\nmax_concurrent = 2\n'
        )


async def test_the_wait_shows_in_the_metrics() -> None:
    pytest.importorskip("prometheus_client")
    gate = Gate()
    gate.release.set()
    pipeline = Pipeline([[Step(gate, timeout=5, slots=Slots(1))]])
    metrics = Metrics()
    for _ in range(3):
        metrics.observe(await pipeline.run(Message.from_bytes(MESSAGE)))
    count = metrics.registry.get_sample_value(
        "mxscan_scanner_wait_seconds_count", {"scanner": "gate"}
    )
    assert count == 3


@pytest.mark.parametrize(
    ("limit", "shown"),
    [("max_concurrent = 4", "max_concurrent = 4  # file"),
     ("", "max_concurrent = 7  # default of plugin keyed")],
)  # fmt: skip
def test_config_show_says_where_the_bound_comes_from(limit: str, shown: str) -> None:
    text = Config.from_toml(CONFIG.format(limit=limit)).render(Registry({"keyed": Keyed}))
    assert shown in text.splitlines()
