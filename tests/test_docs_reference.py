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
    """The drift check can fail: a key declared without a line that explains it."""
    from mxscan.config.schema import LogTable

    gen = generator()
    monkeypatch.setattr(LogTable.facility, "doc", "")
    with pytest.raises(SystemExit, match=r"\[log\] keys without a meaning: \['facility'\]"):
        gen.render()


def core_rows(title: str) -> dict[str, list[str]]:
    section = reference().split(f"## `{title}`", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| `")]
    return {cells[0].strip(" `"): [c.strip() for c in cells[1:]] for cells in rows}


def test_every_declared_core_key_is_in_the_reference_and_config_show_with_its_default() -> None:
    """One declaration, three readers: the parser (the key is accepted), the
    reference (a row with the default) and ``config show`` (a line with it)."""
    from mxscan import Config, Registry
    from mxscan.config import TABLES
    from mxscan.config.render import toml_value
    from mxscan.testing import StaticScanner

    registry = Registry({"static": lambda *, name: StaticScanner(name=name)})
    shown = Config.from_toml(
        '[quarantine]\n[scanner.s]\nplugin = "static"\n', source="m.toml"
    ).render(registry)
    lines = shown.splitlines()
    checked = 0
    for table in TABLES:
        if table.options is None:
            continue
        rows = core_rows(table.title)
        for name, option in table.options.declared().items():
            assert name in rows, (table.key, name)
            default, values, meaning = rows[name]
            assert meaning == option.doc.replace("|", "&#124;")
            assert values == option.check.expects
            if table.key in ("scanner", "stage") or option.required:
                continue  # defaults that depend on other tables; checked below
            if option.default is None:
                assert default == option.default_doc, (table.key, name)
                expected = f'{name} = ""  # default; {option.default_doc}'
            else:
                value = toml_value(option.check.show(option.check(name, option.default)))
                assert default == f"`{value}`", (table.key, name)
                expected = f"{name} = {value}  # default"
            assert expected in lines, (table.key, expected)
            checked += 1
    assert checked >= 15
    assert core_rows("[scanner.NAME]")["mode"][0] == '`"enforce"`'
    assert 'mode = "enforce"  # default' in lines


@pytest.mark.parametrize(
    "plugin", ["clamav", "spamassassin", "rspamd", "header-rules", "example-keyword"]
)
def test_every_plugin_option_is_explained_on_its_page(plugin: str) -> None:
    gen = generator()
    if plugin == "example-keyword":  # the example documents itself in its docstring
        from mxscan_example_keyword import Keyword

        where, text = "Keyword.__doc__", Keyword.__doc__ or ""
    else:
        page = DOCS / gen.PLUGINS[plugin].removeprefix("../")
        where, text = page.name, page.read_text()
    missing = [o for o in gen.plugin_options(plugin) if f"`{o}`" not in text]
    assert not missing, f"{where} does not explain {missing}"


def reference() -> str:
    return (DOCS / "reference" / "configuration.md").read_text()


def test_reference_has_no_escaped_pipes() -> None:
    """Python-Markdown shows ``\\|`` inside a code span in a table literally."""
    assert "\\|" not in reference()


def plugin_rows(plugin: str) -> dict[str, list[str]]:
    section = reference().split(f'## Plugin `"{plugin}"`', 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| `")]
    return {cells[0].strip(" `"): [c.strip() for c in cells[1:]] for cells in rows}


def test_plugin_options_have_a_meaning_and_their_allowed_values() -> None:
    from mxscan_clamav.options import OnInfected
    from mxscan_spamassassin.oversize import OnOversize

    for plugin in ("clamav", "spamassassin", "header-rules"):
        rows = plugin_rows(plugin)
        assert rows and set(rows) == set(generator().plugin_options(plugin))
        for option, (_type, _default, values, meaning) in rows.items():
            assert values and len(meaning) > 10, (plugin, option)
    # the values are the plugin's own choices, read from the code
    assert plugin_rows("clamav")["on_infected"][2] == ", ".join(f"`{m.value}`" for m in OnInfected)
    assert plugin_rows("spamassassin")["on_oversize"][2] == ", ".join(
        f"`{m.value}`" for m in OnOversize
    )
    assert plugin_rows("header-rules")["type"][2] == "`pcre`, `regexp`"
    assert plugin_rows("clamav")["timeout"][2].startswith("a duration such as 60s")


@pytest.mark.parametrize("plugin", ["clamav", "spamassassin", "rspamd", "header-rules"])
def test_each_plugin_row_is_its_declaration(plugin: str) -> None:
    """A plugin option declared once: the reference row is its doc, its check's
    words and its default as declared, which is also what ``config show`` prints."""
    from mxscan import options
    from mxscan.config.render import toml_value
    from mxscan.plugins import discover

    declared = options.declared(discover()[plugin].load())
    assert declared is not None, f"{plugin} declares no options class"
    rows = plugin_rows(plugin)
    assert list(rows) == list(declared.declared())
    for name, option in declared.declared().items():
        kind, default, values, meaning = rows[name]
        assert (kind, values, meaning) == (option.check.kind, option.check.expects, option.doc)
        if option.default is not None and name != "timeout":
            assert default == f"`{toml_value(option.default)}`", (plugin, name)


def test_generator_refuses_a_plugin_option_without_a_row_on_its_page(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gen = generator()
    page = tmp_path / "docs" / "clamav.md"
    page.parent.mkdir()
    text = (DOCS / "clamav.md").read_text()
    page.write_text(
        "\n".join(ln for ln in text.splitlines() if not ln.startswith("| `heuristics`"))
    )
    for other in ("spamassassin.md", "header-rules.md"):
        (tmp_path / "docs" / other).write_text((DOCS / other).read_text())
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    with pytest.raises(SystemExit, match=r"option 'heuristics' of plugin 'clamav' has no row"):
        gen.render()


def test_the_docs_example_plugin_is_not_in_the_reference_as_shipped() -> None:
    text = reference()
    assert '## Plugin `"example-keyword"`' not in text
    assert "mxscan-example-keyword" not in text


FENCED = re.compile(r"^```\n(.*?)^```$", re.M | re.S)


def test_postfix_page_shows_every_snippet_file_verbatim() -> None:
    """The page holds each file's text itself (readable as raw Markdown too, where
    an include line would show instead), byte for byte what the tests run."""
    for page in ("postfix.md", "milter.md", "smtp.md"):
        blocks = FENCED.findall((DOCS / page).read_text())
        for snippet in (DOCS / "snippets").iterdir():
            if (
                page == "postfix.md"
                or (page == "milter.md" and snippet.name == "milter-main.cf")
                or (page == "smtp.md" and snippet.name.startswith(("smtp-", "lmtp-")))
            ):
                assert snippet.read_text() in blocks, f"{page} does not show {snippet.name}"


def test_every_snippet_file_is_read_by_an_end_to_end_test() -> None:
    readers = {
        "milter-main.cf": REPO / "tests" / "adapters" / "milter" / "milter_snippets.py",
        "pipe-main.cf": REPO / "tests" / "adapters" / "pipe" / "pipe_postfix.py",
        "pipe-master.cf": REPO / "tests" / "adapters" / "pipe" / "pipe_postfix.py",
        "mxscan-hold.regexp": REPO / "tests" / "adapters" / "pipe" / "test_pipe_postfix.py",
        **{
            name: REPO / "tests" / "adapters" / "smtp" / "smtp_proc.py"
            for name in ("smtp-main.cf", "smtp-master.cf", "lmtp-main.cf", "lmtp-master.cf")
        },
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
    import mxscan.testing  # the one public submodule

    missing = [n for n in mxscan.testing.__all__ if f"::: mxscan.testing.{n}\n" not in text]
    assert not missing, f"docs/api.md does not list {missing}"


def migration_block(after: str, lang: str) -> str:
    """The first ```LANG block after the heading ``after`` in docs/migration.md."""
    text = (DOCS / "migration.md").read_text().split(after, 1)[1]
    block = re.search(rf"^```{lang}\n(.*?)^```$", text, re.S | re.M)
    assert block, f"no ```{lang} block after {after!r}"
    return block[1]


def test_migration_after_block_is_a_working_configuration(tmp_path: Path) -> None:
    """The guide's literal *after* TOML loads and builds with the installed plugins,
    reading the *before* header_checks file it shows, without a bad line."""
    from mxscan import Config

    checks = tmp_path / "header_checks"
    checks.write_text(migration_block("`/etc/postfix/header_checks`:", ""))
    toml = migration_block("### After", "toml")
    assert 'file = "pcre:/etc/postfix/header_checks"' in toml
    toml = toml.replace("/etc/postfix/header_checks", str(checks))
    engine = Config.from_toml(toml).build()
    by_name = {step.name: step for step in engine.steps}
    assert list(by_name) == ["inbound", "clamav", "spamassassin", "outbound"]
    assert by_name["clamav"].timeout == 120.0  # ReadTimeout 120
    assert len(by_name["outbound"].scanner.table.rules) == 6  # type: ignore[attr-defined]


def test_migration_guide_shows_the_old_files_literally() -> None:
    text = (DOCS / "migration.md").read_text()
    before = text.split("### Before", 1)[1].split("### After", 1)[0]
    for line in (
        "smtpd_milters = inet:127.0.0.1:10025",
        "header_checks = pcre:/etc/postfix/header_checks",
        'define_milter("clamav-milter") do |milter|',
        "OnInfected Blackhole",
        'OPTIONS="-u spamass-milter -i 127.0.0.1"',
    ):
        assert line in before, line
