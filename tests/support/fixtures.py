"""pytest fixtures over the support helpers.

Use from a conftest.py with ``from tests.support.fixtures import *  # noqa: F403``.
Every fixture that starts something tears it down in ``finally``, so a failing
test never leaves a Postfix master or sink thread behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.daemons import require_daemon
from tests.support.own_spamd import own_spamd
from tests.support.postfix import PostfixInstance
from tests.support.sink import SMTPSink

__all__ = ["make_postfix", "postfix_instance", "smtp_sink", "tagging_spamd"]

#: What the shared spamd lacks: ``report_safe 0`` writes X-Spam-Report (a
#: tag-only setup's report, one rule a line), and an explicit trusted network
#: (TEST-NET-1) next to the rest of the address space, which is not trusted.
TAGGING_SPAMD_CONFIG = """\
report_safe 0
trusted_networks 192.0.2.0/24
"""


@pytest.fixture
def smtp_sink() -> Iterator[SMTPSink]:
    """A running SMTP sink on 127.0.0.1 (``smtp_sink.port``) recording each message."""
    sink = SMTPSink().start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def make_postfix(smtp_sink: SMTPSink) -> Iterator[Callable[..., PostfixInstance]]:
    """Factory for private Postfix instances relaying to ``smtp_sink``; call it before start.

    ``make_postfix(main_overrides={...}, master_extra=[...], start=True)``; all
    instances made are stopped at teardown.
    """
    require_daemon("postfix")
    made: list[PostfixInstance] = []

    def factory(*, start: bool = True, **kwargs: Any) -> PostfixInstance:
        kwargs.setdefault("relay_port", smtp_sink.port)
        instance = PostfixInstance(**kwargs)
        made.append(instance)
        if start:
            instance.start()
        return instance

    try:
        yield factory
    finally:
        for instance in made:
            instance.remove()


@pytest.fixture
def postfix_instance(make_postfix: Callable[..., PostfixInstance]) -> PostfixInstance:
    """A started private Postfix with default settings relaying to ``smtp_sink``."""
    return make_postfix()


@pytest.fixture(scope="session")
def tagging_spamd() -> Iterator[str]:
    """A spamd of the tests' own with TAGGING_SPAMD_CONFIG; its address."""
    require_daemon("spamd")
    with own_spamd(TAGGING_SPAMD_CONFIG) as spamd:
        yield spamd.address
