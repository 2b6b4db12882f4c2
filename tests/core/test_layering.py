"""The core knows no plugin and no adapter; the public API is pinned."""

from __future__ import annotations

import ast
from pathlib import Path

import mxscan

SRC = Path(mxscan.__file__).parent
#: The command line: it loads the adapters' subcommands by name
#: (``cli.ADAPTER_COMMANDS``), so it is the one layer above them.
ENTRY_MODULES = ("cli.py", "__main__.py")
#: The core: the top-level modules and the packages that every adapter's scans use
#: (the quarantine store is a step of the engine).
CORE_PACKAGES = ("config", "quarantine")
CORE_MODULES = [p for p in SRC.glob("*.py") if p.name not in ENTRY_MODULES] + sorted(
    p for name in CORE_PACKAGES for p in (SRC / name).rglob("*.py")
)
#: The shared layer of the long-running adapters (listen, privileges, lifecycle,
#: serving, metrics, the ``EngineLike`` protocol).
SERVICE_MODULES = sorted((SRC / "service").rglob("*.py"))
ADAPTER_MODULES = sorted((SRC / "adapters").rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute_imports(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (lazy imports too), with
    relative imports resolved against its package."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            names.add(".".join([*base, *([node.module] if node.module else [])]))
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    return names


def _in(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_every_module_is_in_one_layer() -> None:
    every = set(SRC.rglob("*.py"))
    layered = {
        *CORE_MODULES,
        *SERVICE_MODULES,
        *ADAPTER_MODULES,
        *(SRC / n for n in ENTRY_MODULES),
    }
    assert every == layered, sorted(str(p) for p in every ^ layered)


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(("." * node.level) + (node.module or ""))
    return names


def test_core_modules_import_no_adapter_no_plugin_and_not_the_cli() -> None:
    assert CORE_MODULES
    for path in CORE_MODULES:
        for name in _absolute_imports(path):
            assert not _in(name, "mxscan.adapters"), f"{path.name} imports {name}"
            assert not _in(name, "mxscan.service"), f"{path.name} imports {name}"
            assert not _in(name, "mxscan.cli"), f"{path.name} imports {name}"
            assert not name.startswith("mxscan_"), f"{path.name} imports plugin {name}"


def test_the_service_layer_imports_only_the_core() -> None:
    assert SERVICE_MODULES
    core = {_module_name(p) for p in CORE_MODULES} | {"mxscan"}
    for path in SERVICE_MODULES:
        for name in _absolute_imports(path):
            if not _in(name, "mxscan") or _in(name, "mxscan.service"):
                assert not name.startswith("mxscan_"), f"{path} imports plugin {name}"
                continue
            assert name in core, f"{_module_name(path)} imports {name}"


def test_adapters_import_only_the_core_and_their_own_package() -> None:
    """Not the command line (which loads them: a cycle), not another adapter,
    not a plugin. ``mxscan.service`` is the shared layer for long-running ones."""
    assert ADAPTER_MODULES
    core = {_module_name(p) for p in CORE_MODULES} | {"mxscan"}
    for path in ADAPTER_MODULES:
        module = _module_name(path)
        own = ".".join(module.split(".")[:3])  # mxscan.adapters.NAME
        for name in _absolute_imports(path):
            if not _in(name, "mxscan") or _in(name, own) or _in(name, "mxscan.service"):
                assert not name.startswith("mxscan_"), f"{module} imports plugin {name}"
                continue
            assert name in core, f"{module} imports {name}"


def test_the_command_line_loads_adapters_only_by_name() -> None:
    from mxscan import cli

    for name in ENTRY_MODULES:
        for imported in _absolute_imports(SRC / name):
            assert not _in(imported, "mxscan.adapters"), f"{name} imports {imported}"
    for module in cli.ADAPTER_COMMANDS:
        assert _in(module, "mxscan.adapters"), module
        assert (SRC.parent / (module.replace(".", "/") + ".py")).exists() or (
            SRC.parent / module.replace(".", "/") / "__init__.py"
        ).exists(), module


def _module_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(("." * node.level) + (node.module or ""))
    return names


def test_core_depends_on_attrs_and_stdlib_only() -> None:
    """Optional extras (a quarantine store's database driver) may only be
    imported lazily, inside the function that needs them."""
    import sys

    allowed = set(sys.stdlib_module_names) | {"attrs", "__future__", "mxscan"}
    for path in CORE_MODULES:
        for name in _module_level_imports(path):
            if name.startswith("."):
                continue
            assert name.split(".")[0] in allowed, f"{path.name} imports {name}"


def test_metrics_are_the_service_layers_alone() -> None:
    """Only a long-running adapter serves metrics: prometheus-client is imported
    by ``mxscan.service.metrics`` and nowhere else, lazily even there."""
    for path in SRC.rglob("*.py"):
        users = {n for n in _absolute_imports(path) if _in(n, "prometheus_client")}
        if path == SRC / "service" / "metrics.py":
            assert users and not any(
                _in(n, "prometheus_client") for n in _module_level_imports(path)
            )
        else:
            assert not users, f"{_module_name(path)} imports {users}"


def _classes(path: Path) -> list[ast.ClassDef]:
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef)]


def test_one_engine_protocol_and_one_engine_holder() -> None:
    """What an adapter needs from an engine is spelled once (``EngineLike``), and
    the holder that swaps engines on reload is written once (``mxscan.holder``)."""
    protocols: list[str] = []
    holders: list[str] = []
    for path in SRC.rglob("*.py"):
        for node in _classes(path):
            bases = {ast.unparse(b) for b in node.bases}
            methods = {
                n.name for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            }
            if "Protocol" in bases and {"scan", "policy_for"} <= methods:
                protocols.append(f"{_module_name(path)}.{node.name}")
            if {"replace", "aclose"} <= methods and any("Generic" in b for b in bases):
                holders.append(f"{_module_name(path)}.{node.name}")
    assert protocols == ["mxscan.service.engines.EngineLike"]
    assert holders == ["mxscan.holder.EngineHolder"]


def test_milter_names_do_not_shadow_the_core() -> None:
    """``mxscan.Action``, ``mxscan.Step``: a milter module defines neither name."""
    for path in sorted((SRC / "adapters" / "milter").glob("*.py")):
        names = {node.name for node in _classes(path)}
        assert not names & {"Action", "Step"}, f"{_module_name(path)} defines {names}"


def test_public_api_is_pinned() -> None:
    assert sorted(mxscan.__all__) == sorted(
        [
            "ENHANCED_STATUS", "Action", "Address", "Body", "BodyBuilder", "Conditions", "Config", "ConfigError", "EditKind",
            "PolicyRouter", "Envelope", "Header", "HeaderEdit", "InetAddress", "InvalidHeader",
            "Message", "MimeLimits", "Pipeline", "Registry", "Result", "Route", "Scanner", "ScannerError",
            "SmtpReply", "Step", "UnixAddress", "Verdict", "__version__", "ascan",
            "format_result", "header_name_length", "load_config", "open_connection", "options", "parse_address",
            "parse_addresses", "parse_duration", "parse_size", "received_header", "scan",
        ]
    )  # fmt: skip
    for name in mxscan.__all__:
        assert hasattr(mxscan, name)


def test_testing_is_the_one_public_submodule_and_uses_only_the_public_api() -> None:
    """``mxscan.testing`` is documented public API (like pytest's ``pytester``):
    its names are pinned here, it imports mxscan only through the package's
    public names (as a plugin does), and no core module imports it."""
    import mxscan.testing

    assert sorted(mxscan.testing.__all__) == ["FakeEngine", "StaticScanner"]
    tree = ast.parse((SRC / "testing.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "mxscan":
            assert {a.name for a in node.names} <= set(mxscan.__all__)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and not (node.module or "").startswith("mxscan"), node.module
    for path in CORE_MODULES:
        if path.name != "testing.py":
            assert not any("testing" in name for name in _imports(path)), path.name


def test_py_typed_is_shipped() -> None:
    assert (SRC / "py.typed").exists()
