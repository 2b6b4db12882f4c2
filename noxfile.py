"""Sessions: tests (each Python 3.11-3.13 found), lint, typecheck, docs, bench.

Interpreters are looked up on PATH and, where pyenv is used, in its versions
directory, so every installed Python runs the suite without pyenv shims.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYTHONS = ["3.11", "3.12", "3.13"]
# The official plugins, and the example plugin distribution the docs teach from
# (installed, type-checked and tested exactly like them).
PLUGINS = sorted(
    str(p.parent)
    for pattern in ("plugins/*/pyproject.toml", "docs/examples/*/pyproject.toml")
    for p in ROOT.glob(pattern)
)
#: Beyond pyproject.toml's [test] extra: tests install small plugin distributions
#: with pip --no-build-isolation (no index needed), which needs the build backend.
BUILD_BACKEND = "hatchling>=1.18"

nox.options.sessions = ["lint", "typecheck", "docs", "tests"]
nox.options.error_on_missing_interpreters = False
nox.options.default_venv_backend = "venv"

for found in sorted((Path.home() / ".pyenv" / "versions").glob("3.1[1-3]*/bin")):
    bindir = str(found)
    if bindir not in os.environ.get("PATH", ""):
        os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + bindir


def install_project(session: nox.Session) -> None:
    session.install(
        "-e", ".[metrics,http,postgresql,test]", *(f"-e{plugin}" for plugin in PLUGINS),
        BUILD_BACKEND,
    )  # fmt: skip


#: The Python that runs every test, Postfix-driven ones included (Debian 12's own).
PRIMARY = "3.11"
#: Marker expression for the other Pythons: the private-Postfix end-to-end and
#: fault tests exercise processes and daemons, not the interpreter, and tripling
#: them would push CI past its time budget; the Debian package is built with
#: Debian's own Python whatever runs the tests. MXSCAN_EVERY_TEST_EVERY_PYTHON=1 runs
#: them on every Python anyway.
SECONDARY_MARKERS = "not postfix and not faults and not package"


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The whole test suite, real daemons included (start them with scripts/daemons)."""
    install_project(session)
    # The built site's checks run in the docs session, which builds it; here they
    # could only skip.
    args = ["--ignore=tests/test_docs_site.py", *session.posargs]
    if session.python != PRIMARY and os.environ.get("MXSCAN_EVERY_TEST_EVERY_PYTHON") != "1":
        session.log(f"Python {session.python}: -m {SECONDARY_MARKERS!r} (all tests on {PRIMARY})")
        args = ["-m", SECONDARY_MARKERS, *args]
    session.run("pytest", *args)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    session.install("mypy>=1.10")
    install_project(session)
    session.run("mypy", "src", *(f"{plugin}/src" for plugin in PLUGINS))


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """The documentation site (MkDocs Material, API reference from docstrings);
    warnings are errors (tests/test_docs_reference.py keeps the generated pages current).
    Then tests/test_docs_site.py checks the built pages; here it must not skip."""
    session.install("mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26")
    install_project(session)
    site = ROOT / ".nox" / "site"
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", str(site),
        env={"NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    session.run(
        "pytest", "tests/test_docs_site.py",
        env={"MXSCAN_DOCS_SITE": str(site), "MXSCAN_REQUIRE_MKDOCS": "1"},
    )  # fmt: skip


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Throughput and memory figures, printed (never asserted in tests)."""
    install_project(session)
    session.run("python", "-m", "benchmarks", *session.posargs)
