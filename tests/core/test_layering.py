"""The core knows no plugin and no adapter; the public API is pinned."""

from __future__ import annotations

import ast
from pathlib import Path

import mxscan

SRC = Path(mxscan.__file__).parent
CORE_MODULES = [
    p for p in SRC.glob("*.py") if p.name not in ("cli.py", "__main__.py", "__init__.py")
]


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(("." * node.level) + (node.module or ""))
    return names


def test_core_modules_import_no_adapter_and_no_plugin() -> None:
    assert CORE_MODULES
    for path in CORE_MODULES:
        for name in _imports(path):
            assert "adapters" not in name, f"{path.name} imports {name}"
            assert not name.startswith("mxscan_"), f"{path.name} imports plugin {name}"


def _module_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(("." * node.level) + (node.module or ""))
    return names


def test_core_depends_on_attrs_and_stdlib_only() -> None:
    """Optional extras (prometheus-client for metrics) may only be imported
    lazily, inside the function that needs them."""
    import sys

    allowed = set(sys.stdlib_module_names) | {"attrs", "__future__", "mxscan"}
    for path in CORE_MODULES:
        for name in _module_level_imports(path):
            if name.startswith("."):
                continue
            assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def test_public_api_is_pinned() -> None:
    assert sorted(mxscan.__all__) == sorted(
        [
            "Action", "Address", "Body", "BodyBuilder", "Conditions", "Config", "ConfigError", "EditKind",
            "Engine", "Envelope", "Header", "HeaderEdit", "InetAddress", "InvalidHeader",
            "Message", "Pipeline", "Registry", "Result", "Route", "Scanner", "ScannerError",
            "SmtpReply", "Step", "UnixAddress", "Verdict", "__version__", "ascan",
            "format_result", "load_config", "open_connection", "options", "parse_address",
            "parse_addresses", "parse_duration", "parse_size", "received_header", "scan",
        ]
    )  # fmt: skip
    for name in mxscan.__all__:
        assert hasattr(mxscan, name)


def test_py_typed_is_shipped() -> None:
    assert (SRC / "py.typed").exists()
