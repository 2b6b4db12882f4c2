"""Fixtures for the fault-injection tests (marker ``faults``).

The milter and pipe helpers of the adapter tests are reused as they are (their
directories go on sys.path, as their own conftests do), so a fault test starts
exactly the ``mxscan milter`` process and Postfix setup the adapter tests prove.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
for extra in (HERE, TESTS / "adapters" / "milter", TESTS / "adapters" / "pipe"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from faults_support import FIGURES  # noqa: E402
from milter_proc import install_slowplugin  # noqa: E402


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
