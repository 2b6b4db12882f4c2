"""The documentation cannot drift from the code: the generated configuration
reference is current, every plugin option is explained on its plugin's page, and
every Postfix snippet the docs show is a file the end-to-end tests read."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def generator() -> ModuleType:
    path = REPO / "scripts" / "gen_config_reference.py"
    spec = importlib.util.spec_from_file_location("gen_config_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_is_generated_from_the_current_code() -> None:
    gen = generator()
    committed = (DOCS / "reference" / "configuration.md").read_text()
    assert committed == gen.render(), "stale: run python scripts/gen_config_reference.py"


def test_generator_refuses_a_core_key_without_a_meaning(monkeypatch: pytest.MonkeyPatch) -> None:
    """The drift check can fail: a key the parser accepts but the page does not explain."""
    gen = generator()
    log = dict(gen.CORE_MEANINGS["log"])
    del log["facility"]
    monkeypatch.setitem(gen.CORE_MEANINGS, "log", log)
    with pytest.raises(SystemExit, match=r"\[log\] keys without a meaning here: \['facility'\]"):
        gen.render()


@pytest.mark.parametrize("plugin", ["clamav", "spamassassin", "header-rules", "example-keyword"])
def test_every_plugin_option_is_explained_on_its_page(plugin: str) -> None:
    gen = generator()
    page = DOCS / gen.PLUGINS[plugin].removeprefix("../")
    text = page.read_text()
    if plugin == "example-keyword":  # the example documents itself in its docstring
        from mxscan_example_keyword import Keyword

        text = Keyword.__doc__ or ""
    missing = [o for o in gen.plugin_options(plugin) if f"`{o}`" not in text]
    assert not missing, f"{page.name} does not explain {missing}"


FENCED = re.compile(r"^```\n(.*?)^```$", re.M | re.S)


def test_postfix_page_shows_every_snippet_file_verbatim() -> None:
    """The page holds each file's text itself (readable as raw Markdown too, where
    an include line would show instead), byte for byte what the tests run."""
    for page in ("postfix.md", "milter.md"):
        blocks = FENCED.findall((DOCS / page).read_text())
        for snippet in (DOCS / "snippets").iterdir():
            if page == "postfix.md" or snippet.name == "milter-main.cf":
                assert snippet.read_text() in blocks, f"{page} does not show {snippet.name}"


def test_every_snippet_file_is_read_by_an_end_to_end_test() -> None:
    readers = {
        "milter-main.cf": REPO / "tests" / "adapters" / "milter" / "milter_snippets.py",
        "pipe-main.cf": REPO / "tests" / "adapters" / "pipe" / "pipe_postfix.py",
        "pipe-master.cf": REPO / "tests" / "adapters" / "pipe" / "pipe_postfix.py",
        "mxscan-hold.regexp": REPO / "tests" / "adapters" / "pipe" / "test_pipe_postfix.py",
    }
    assert set(readers) == {p.name for p in (DOCS / "snippets").iterdir()}
    for name, reader in readers.items():
        assert name in reader.read_text(), f"{reader} does not read docs/snippets/{name}"


def test_every_page_is_in_the_site_navigation() -> None:
    nav = (REPO / "mkdocs.yml").read_text()
    pages = {
        str(p.relative_to(DOCS))
        for p in DOCS.rglob("*.md")
        if p.relative_to(DOCS).parts[0] not in ("examples", "snippets")
    }
    missing = [p for p in sorted(pages) if f": {p}\n" not in nav]
    assert not missing


def test_readme_quick_start_is_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    block = re.search(r"## Quick start\n.*?```sh\n(.*?)```", readme, re.S)
    assert block, "README has no Quick start code block"
    commands = [line.split("#")[0].strip() for line in block[1].splitlines() if line.strip()]
    assert commands == ["bash scripts/quickstart", "bash scripts/test"]


def test_api_page_lists_every_public_name() -> None:
    import mxscan

    text = (DOCS / "api.md").read_text()
    alias = {"Address"}  # UnixAddress | InetAddress, both listed
    public = [n for n in mxscan.__all__ if not n.startswith("_") and n not in alias]
    missing = [n for n in public if f"::: mxscan.{n}\n" not in text]
    assert not missing, f"docs/api.md does not list {missing}"
