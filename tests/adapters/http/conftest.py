"""Fixtures for the HTTP adapter's end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.daemons import require_daemon
from tests.support.httpd import HttpProcess, full_config
from tests.support.sink import SMTPSink


@pytest.fixture(scope="module")
def mxscan_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpProcess]:
    """``mxscan http`` with ClamAV and SpamAssassin on the private daemons (one per
    test module: starting it costs a second or two of the shared CPUs)."""
    require_daemon("clamd")
    require_daemon("spamd")
    proc = HttpProcess(full_config(), tmp_path_factory.mktemp("mxscan-http"))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def sink() -> Iterator[SMTPSink]:
    """An SMTP sink for the MTAs (Haraka, Exim) that relay what mxscan passes."""
    s = SMTPSink().start()
    try:
        yield s
    finally:
        s.stop()
