"""Fixtures for the fault-injection tests (marker ``faults``).

The milter and pipe rigs of the adapter tests (``tests.support``) are reused as
they are, so a fault test starts exactly the ``mxscan milter`` process and
Postfix setup the adapter tests prove.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.faults import FIGURES
from tests.support.milter import install_slowplugin


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The load accounts and fault figures belong in the CI log even when tests pass."""
    if FIGURES:
        terminalreporter.section("mxscan faults: figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def slowplugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/data/mxscan-slowplugin (the ``sleep`` scanner) installed for subprocesses."""
    target = tmp_path_factory.mktemp("faults-slowplugin")
    target.chmod(0o755)
    return install_slowplugin(target)
