"""A real rspamd killed (SIGKILL, no goodbye): the pipeline's on_error decides.

A private rspamd of its own (the shared one stays up for the other tests),
started by the same script (tests/support/rspamd.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest
from mxscan_rspamd import Rspamd
from rspamd_support import CLEAN

from mxscan import Action, Envelope, Message, Pipeline, Step
from tests.support.postfix import process_alive
from tests.support.rspamd import PrivateRspamd, children, private_rspamd

pytestmark = pytest.mark.rspamd


@pytest.fixture
def own_rspamd(rspamd: str) -> Iterator[PrivateRspamd]:
    with private_rspamd() as instance:
        yield instance


async def test_rspamd_killed_gives_on_error(own_rspamd: PrivateRspamd) -> None:
    address = own_rspamd.address
    message = Message.from_bytes(CLEAN, envelope=Envelope(recipients=["bob@example.net"]))
    scanner = Rspamd(address=address, timeout=10)
    pipeline = Pipeline([[Step(scanner, timeout=10, on_error=Action.TEMPFAIL)]])
    before = await pipeline.run(message)
    assert before.action is Action.ACCEPT
    assert before.verdicts[0].status.startswith("no-action(")

    main = own_rspamd.main_pid
    victims = [main, *children(main)]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    for pid in victims:
        for _ in range(100):
            if not process_alive(pid):
                break
            await asyncio.sleep(0.05)

    after = await pipeline.run(message)
    await pipeline.aclose()
    assert after.action is Action.TEMPFAIL
    assert f"cannot reach rspamd: {address}" in after.verdicts[0].reason
    assert "refused" in after.verdicts[0].reason
