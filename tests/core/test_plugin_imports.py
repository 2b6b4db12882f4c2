"""Plugins (the project's own and the documented example) import only public
``mxscan`` names: what ``mxscan/__init__.py`` exports and the public submodules
``mxscan.options`` and ``mxscan.testing``. A private import would tie a plugin
to the core's layout, which changes without notice."""

from __future__ import annotations

import ast
from pathlib import Path

import mxscan

REPO = Path(__file__).resolve().parents[2]
PUBLIC_MODULES = {"mxscan", "mxscan.options", "mxscan.testing"}


def private_imports(source: str) -> list[str]:
    """Each import of ``mxscan`` in ``source`` that is not public, as written."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [
                f"import {a.name}"
                for a in node.names
                if a.name.split(".")[0] == "mxscan" and a.name not in PUBLIC_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            module = node.module
            if module.split(".")[0] != "mxscan":
                continue
            if module not in PUBLIC_MODULES:
                found.append(f"from {module} import ...")
            elif module == "mxscan":
                found += [
                    f"from mxscan import {a.name}"
                    for a in node.names
                    if a.name not in mxscan.__all__
                ]
    return found


def test_the_check_finds_each_kind_of_private_import() -> None:
    source = (
        "import mxscan\nimport mxscan.options\nfrom mxscan import Verdict, options\n"
        "from mxscan.testing import StaticScanner\n"
        "import mxscan.header\nfrom mxscan.header import header_name_length\n"
        "from mxscan import _version\n"
        "def f():\n    from mxscan.pipeline import Step\n"
    )
    assert private_imports(source) == [
        "import mxscan.header",
        "from mxscan.header import ...",
        "from mxscan import _version",
        "from mxscan.pipeline import ...",
    ]


def test_plugins_import_only_public_mxscan_names() -> None:
    sources = [*REPO.glob("plugins/*/src/**/*.py"), *REPO.glob("docs/examples/*/src/**/*.py")]
    assert len({p.parts[len(REPO.parts) + 1] for p in sources}) >= 5  # every plugin is read
    found = {
        str(p.relative_to(REPO)): bad for p in sources if (bad := private_imports(p.read_text()))
    }
    assert not found, found
