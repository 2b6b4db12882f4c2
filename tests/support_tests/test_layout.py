"""The test tree's own rules: shared code is imported from ``tests.support`` (never
reached by editing ``sys.path``), benchmarks import support code and no test, and
each plugin's tests run alone as well as in the whole suite."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemons import REPO_ROOT

TREES = ("tests", "benchmarks", "plugins", "docs/examples")
PLUGIN_TESTS = sorted(
    str(p.relative_to(REPO_ROOT))
    for p in [*REPO_ROOT.glob("plugins/*/tests"), *REPO_ROOT.glob("docs/examples/*/tests")]
)


MUTATORS = {"insert", "append", "extend", "remove", "pop", "clear", "__setitem__"}


def sources(*trees: str) -> Iterator[Path]:
    for tree in trees:
        for path in sorted((REPO_ROOT / tree).rglob("*.py")):
            if not {".venv", "build", ".nox"} & set(path.parts):
                yield path


def sys_path_edits(tree: ast.AST) -> list[int]:
    """Lines that change ``sys.path``: a call of one of its mutating methods, or
    an assignment to it or to an item of it."""
    lines = []
    for node in ast.walk(tree):
        target = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in MUTATORS:
                target = node.func.value
        elif isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            target = next((t for t in targets if ast.unparse(t).startswith("sys.path")), None)
        if target is not None and re.fullmatch(r"sys\.path(\[.*\])?", ast.unparse(target)):
            lines.append(node.lineno)
    return sorted(lines)


def test_the_detector_sees_each_way_of_editing_sys_path() -> None:
    code = "import sys\nsys.path.insert(0, 'x')\nsys.path.append('y')\nsys.path[:0] = ['z']\n"
    code += "sys.path += ['w']\nprint(sys.path)\nsys.path.index('x')\nsys.path.remove('x')\n"
    assert sys_path_edits(ast.parse(code)) == [2, 3, 4, 5, 8]


def test_no_sys_path_edits_in_tests_or_benchmarks() -> None:
    found = [
        f"{path.relative_to(REPO_ROOT)}:{line}"
        for path in sources(*TREES)
        for line in sys_path_edits(ast.parse(path.read_text(), str(path)))
    ]
    assert found == [], "import from tests.support (or use monkeypatch.syspath_prepend)"


def imported_modules(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_benchmarks_import_support_code_and_no_test_module() -> None:
    bad = []
    for path in sources("benchmarks"):
        for name in imported_modules(ast.parse(path.read_text(), str(path))):
            first, _, rest = name.partition(".")
            leaf = name.rpartition(".")[2]
            if (
                leaf.startswith("test_")
                or leaf == "conftest"
                or (first == "tests" and not (rest == "support" or rest.startswith("support.")))
            ):
                bad.append(f"{path.name}: {name}")
    assert bad == []


def test_no_module_imports_a_test_module_by_its_bare_name() -> None:
    """``from test_x import y`` works only while pytest puts the test's directory
    on sys.path: what two test modules share belongs in a support module."""
    bad = [
        f"{path.relative_to(REPO_ROOT)}: {name}"
        for path in sources(*TREES)
        for name in imported_modules(ast.parse(path.read_text(), str(path)))
        if name.partition(".")[0].startswith("test_") or name.partition(".")[0] == "conftest"
    ]
    assert bad == []


def test_no_prefix_named_helper_modules_beside_the_tests() -> None:
    """A helper shared by several test modules is a module of tests.support, not a
    file named milter_*.py or *_support.py that pytest's rootdir insertion finds."""
    helpers = [
        str(path.relative_to(REPO_ROOT))
        for path in sources("tests")
        if path.parts[len(REPO_ROOT.parts) + 1] not in ("support", "data")
        and not path.name.startswith("test_")
        and path.name not in ("conftest.py", "__init__.py")
    ]
    assert helpers == []


@pytest.mark.parametrize("tests_dir", PLUGIN_TESTS)
def test_a_plugins_tests_collect_alone(tests_dir: str) -> None:
    """``pytest plugins/X`` alone imports tests.support as the whole suite does (a
    plugin pyproject with its own [tool.pytest.ini_options] made the plugin its
    own rootdir, without the repository on sys.path)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(  # -P: as the pytest script, without the cwd on sys.path
        [sys.executable, "-P", "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         str(Path(tests_dir).parent)],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"^\d+ tests? collected", proc.stdout, re.M), proc.stdout[-500:]
