#!/usr/bin/env python3
"""Generate docs/reference/configuration.md from the code, so it cannot drift.

Every key, default, accepted value and meaning in the page is read from the
declarations mxscan itself checks the file with: the core's tables from
``mxscan.config.TABLES`` (``mxscan/config/schema.py``), each shipped plugin's
options from the options class its factory names (``options_class``, see
``mxscan.options``). A key declared without a meaning stops the generator, and
so does a plugin option without a row in its plugin page's "## Options" table,
where it is explained in full.

    python scripts/gen_config_reference.py           # rewrite the page
    python scripts/gen_config_reference.py --check   # exit 1 if it is stale

tests/test_docs_reference.py runs the check in CI.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path
from typing import Any

from mxscan import options
from mxscan.config import TABLES
from mxscan.config.render import toml_value
from mxscan.plugins import discover

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "reference" / "configuration.md"

#: The shipped plugins documented here, with their pages (paths relative to docs/).
#: The docs' example plugin (docs/examples/) is not shipped and not listed.
PLUGINS = {
    "clamav": "../clamav.md",
    "spamassassin": "../spamassassin.md",
    "rspamd": "../rspamd.md",
    "header-rules": "../header-rules.md",
}
#: Keys the core fills in for a plugin, and what the reference says for their default.
SET_BY_CORE = {"timeout": "the scanner's `timeout`"}


def _cell(text: str) -> str:
    """Text in a table cell: a literal ``|`` would end the cell (and ``\\|`` shows
    as is inside a code span), so it is written as an HTML entity."""
    return text.replace("|", "&#124;")


def _cell_code(text: str) -> str:
    """Code in a table cell; a ``|`` in it as an HTML entity, which tables allow."""
    if "|" not in text:
        return f"`{text}`"
    return "<code>" + html.escape(text).replace("|", "&#124;") + "</code>"


def _default(option: options.Option[Any], plugin: bool = False) -> str:
    """The default as ``config show`` writes it, or the words for one that is not a value."""
    if option.required:
        return "required"
    if plugin and option.name in SET_BY_CORE:
        return SET_BY_CORE[option.name]
    if option.default_doc:
        return option.default_doc
    if option.default is None:
        return "unset"
    if plugin:  # config show writes a plugin's default as the plugin declares it
        return _cell_code(toml_value(option.default))
    shown = option.check.show(option.check(option.name, option.default))
    return _cell_code(toml_value(shown))


def _rows(where: str, declared: type[options.Options]) -> list[options.Option[Any]]:
    rows = list(declared.declared().values())
    missing = [o.name for o in rows if not o.doc]
    if missing:
        raise SystemExit(f"gen_config_reference: {where} keys without a meaning: {missing}")
    return rows


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def _core() -> list[str]:
    out = [
        "## Top level",
        "",
        *_table(("table", "meaning"), [(f"`{t.key}`", _cell(t.meaning)) for t in TABLES]),
    ]
    for table in TABLES:
        if table.options is None:
            continue
        title = f"`{table.title}`" + (": keys the core reads" if table.key == "scanner" else "")
        rows = [
            (f"`{o.name}`", _default(o), _cell(o.check.expects), _cell(o.doc))
            for o in _rows(f"[{table.key}]", table.options)
        ]
        out += ["", f"## {title}", "", *_table(("key", "default", "values", "meaning"), rows)]
        if table.key == "scanner":
            out += [
                "",
                "Every other key of `[scanner.NAME]` is an option of its plugin (below).",
                '`[policy."DOMAIN"]` tables hold `NAME.KEY = value` overrides of any of',
                "these keys except `plugin`, `max_concurrent` and `keep_copy`.",
            ]
    return out


def _page_rows(page: Path) -> set[str]:
    """The options named in the first cell of each row of the page's "## Options" table."""
    text = page.read_text()
    section = re.search(r"^## Options\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if not section:
        raise SystemExit(f"gen_config_reference: {page.name} has no '## Options' section")
    names: set[str] = set()
    for line in section[1].splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`(\w+)`", line.strip().strip("|").split(" | ")[0]))
    return names


def declared_options(plugin: str) -> type[options.Options]:
    """The options class of an installed plugin; a shipped one must declare one."""
    installed = discover()
    if plugin not in installed:
        raise SystemExit(f"gen_config_reference: plugin {plugin!r} is not installed")
    declared = options.declared(installed[plugin].load())
    if declared is None:
        raise SystemExit(
            f"gen_config_reference: plugin {plugin!r} declares no options class "
            "(options_class, see mxscan.options)"
        )
    return declared


def _plugins() -> list[str]:
    out: list[str] = []
    installed = discover()
    for plugin, page in PLUGINS.items():
        declared = declared_options(plugin)
        info = installed[plugin]
        documented = _page_rows(ROOT / "docs" / page.removeprefix("../"))
        rows = []
        for option in _rows(f'plugin "{plugin}"', declared):
            if option.name not in documented:
                raise SystemExit(
                    f"gen_config_reference: option {option.name!r} of plugin {plugin!r} has "
                    f"no row in the Options table of docs/{page.removeprefix('../')}"
                )
            rows.append(
                (
                    f"`{option.name}`",
                    _cell(option.check.kind),
                    _default(option, plugin=True),
                    _cell(option.check.expects),
                    _cell(option.doc),
                )
            )
        out += [
            "",
            f'## Plugin `"{plugin}"`',
            "",
            f"Distribution `{info.distribution}`, factory `{info.target}`; "
            f"each option in full in [its page]({page}#options).",
            "",
            *_table(("option", "type", "default", "values", "meaning"), rows),
        ]
    return out


def render() -> str:
    out = [
        "# Configuration reference",
        "",
        "<!-- Generated by scripts/gen_config_reference.py from the code; do not edit.",
        "     tests/test_docs_reference.py fails when this page is stale. -->",
        "",
        "Every key the configuration file accepts, with its default as",
        "`mxscan config show` prints it. Sizes, durations and addresses are written as in",
        "[Configuration](../configuration.md).",
        "",
        *_core(),
        *_plugins(),
        "",
        "The example plugin of [Writing a scanner plugin](../plugins.md) is not shipped:",
        "its options are documented there.",
    ]
    return "\n".join(out) + "\n"


def plugin_options(plugin: str) -> list[str]:
    """The option names of an installed plugin (for the docs tests)."""
    return list(declared_options(plugin).declared())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = PAGE.read_text() if PAGE.exists() else ""
        if current != text:
            print(f"{PAGE.relative_to(ROOT)} is stale: run python {__file__}", file=sys.stderr)
            return 1
        return 0
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(text)
    print(f"wrote {PAGE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
