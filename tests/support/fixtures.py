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
from tests.support.postfix import PostfixInstance
from tests.support.sink import SMTPSink

__all__ = ["make_postfix", "postfix_instance", "smtp_sink"]


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
