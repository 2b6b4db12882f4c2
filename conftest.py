"""For every test under this repository (tests/, plugins/*/tests, docs/examples):
no DNS query leaves the test process (tests/support/no_dns.py)."""

from tests.support import no_dns


def pytest_configure() -> None:
    no_dns.install()


def pytest_unconfigure() -> None:
    no_dns.uninstall()
