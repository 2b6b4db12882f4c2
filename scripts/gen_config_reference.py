#!/usr/bin/env python3
"""Generate docs/reference/configuration.md from the code, so it cannot drift.

Every key, default and choice in the page is read from mxscan itself: the keys
each table accepts and the choices of each key from the configuration parser's
own error messages, the defaults from ``mxscan config show`` of a minimal file,
and each plugin's options from its factory's signature. Only the one-line
meanings are written here; a key without one (or a meaning for a key the code
no longer has) stops the generator, so a new key cannot go undocumented. A
plugin option's meaning is the first sentence of its row in the plugin page's
"## Options" table (a missing row stops the generator too), and the values it
takes are the plugin's own words for a wrong value (``expected one of ...``).

    python scripts/gen_config_reference.py           # rewrite the page
    python scripts/gen_config_reference.py --check   # exit 1 if it is stale

tests/test_docs_reference.py runs the check in CI.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import inspect
import io
import logging
import re
import sys
from pathlib import Path
from typing import Any

from mxscan import Config, ConfigError, Message, Registry, Verdict
from mxscan.config import CONDITION_KEYS, CORE_KEYS, _toml
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
#: Options a plugin needs before it checks another one (for the value probe).
PROBE_BASE: dict[str, dict[str, object]] = {"header-rules": {"rules": ""}}

CORE_MEANINGS: dict[str, dict[str, str]] = {
    "": {
        "defaults": "defaults for every scanner",
        "log": "where the one line per message goes",
        "spool": "where large message bodies are kept while they are scanned",
        "scanner": "one `[scanner.NAME]` table per scanner instance",
        "stage": "`[[stage]]` tables: the order scanners run in",
        "policy": '`[policy."DOMAIN"]` tables: per recipient domain overrides',
    },
    "defaults": {
        "on_error": "what a scanner that gives no verdict (down, timeout, garbage, crash) "
        "turns into",
        "timeout": "time a scanner gets per message",
    },
    "log": {
        "target": "where log lines go (`syslog` is `/dev/log`)",
        "facility": "syslog facility",
        "level": "lowest level logged; the per-message line is `info`",
    },
    "spool": {
        "threshold": "bodies above this size go to an unlinked temporary file",
        "directory": "where those files go (must exist)",
    },
    "scanner": {
        "plugin": "the plugin's entry-point name (`mxscan plugins` lists them)",
        "on_error": "overrides `[defaults] on_error` for this scanner",
        "timeout": "overrides `[defaults] timeout`; plugins with a `timeout` option get it too",
        "max_concurrent": "scans of this scanner in flight at once; more wait in mxscan, "
        "and the wait counts in `timeout` (`mxscan_scanner_wait_seconds`). Default: what "
        "the plugin declares (its daemon's default: spamassassin 5 = spamd "
        "`--max-children`, clamav 10 = clamd `MaxThreads`), else no bound. Set it to "
        "your daemon's setting; a policy cannot change it",
        "mode": "`shadow`: run, log and count the verdict, apply nothing it says",
        "skip_authenticated": "skip the scanner when the SMTP client authenticated "
        "(`skipped(authenticated)`)",
        "skip_networks": "skip it for clients in these CIDR blocks (`skipped(network)`)",
        "max_size": "skip it for messages above this size (`skipped(oversize)`); "
        "a plugin with its own `max_size` option gets the value instead",
    },
    "stage": {
        "run": "scanner names that run concurrently in this stage; every scanner runs in "
        "exactly one stage",
    },
}

_PROBE = "__probe__"
SCANNER_ORDER = ("plugin", "on_error", "timeout", "max_concurrent", *CONDITION_KEYS)


def _error(toml: str) -> str:
    try:
        Config.from_toml(toml)
    except ConfigError as exc:
        return str(exc)
    raise AssertionError(f"expected a configuration error for:\n{toml}")


def _allowed(toml_with_probe: str) -> list[str]:
    """The keys a table accepts, from the parser's 'unknown key' message."""
    found = re.search(r"unknown key \(expected one of: ([^)]*)\)", _error(toml_with_probe))
    assert found, toml_with_probe
    return [k.strip() for k in found[1].split(",")]


def _choices(toml: str) -> list[str] | None:
    found = re.search(r"expected one of ([\w, -]+?), got", _error(toml))
    return [c.strip() for c in found[1].split(",")] if found else None


class _Probe:
    def __init__(self, *, name: str) -> None:
        self.name = name

    async def scan(self, message: Message) -> Verdict:
        return Verdict()

    async def aclose(self) -> None:
        pass


_SCANNER = '[scanner.x]\nplugin = "probe"\n'


def _defaults() -> dict[str, dict[str, str]]:
    """Effective defaults, as ``mxscan config show`` prints them for a minimal file."""
    text = Config.from_toml(_SCANNER).render(Registry({"probe": _Probe}))
    table, out = "", {}
    for line in text.splitlines():
        if line.startswith("["):
            table = line.strip("[]").split(".")[0]
            continue
        found = re.match(r"(\w+) = (.*?)  # default", line)
        if found:
            out.setdefault(table, {})[found[1]] = found[2]
    return out


def _core_rows() -> dict[str, list[tuple[str, str, str]]]:
    """Per table: (key, default, meaning), with every key the parser accepts."""
    keys = {
        "": _allowed(f"{_PROBE} = 1\n{_SCANNER}"),
        "defaults": _allowed(f"[defaults]\n{_PROBE} = 1\n{_SCANNER}"),
        "log": _allowed(f"[log]\n{_PROBE} = 1\n{_SCANNER}"),
        "spool": _allowed(f"[spool]\n{_PROBE} = 1\n{_SCANNER}"),
        "stage": _allowed(f'{_SCANNER}[[stage]]\nrun = ["x"]\n{_PROBE} = 1\n'),
        "scanner": [*sorted(CORE_KEYS, key=[*SCANNER_ORDER].index), "max_size"],
    }
    defaults = _defaults()
    rows: dict[str, list[tuple[str, str, str]]] = {}
    for table, names in keys.items():
        meanings = CORE_MEANINGS[table]
        missing = [n for n in names if n not in meanings]
        stale = [n for n in meanings if n not in names]
        if missing or stale:
            raise SystemExit(
                f"gen_config_reference: [{table or 'top level'}] keys without a meaning here: "
                f"{missing}; meanings for keys the code lacks: {stale}"
            )
        rows[table] = []
        for name in names:
            default = defaults.get(table, {}).get(name, "")
            if table == "scanner" and name == "max_size":
                default = "none"
            if table == "scanner" and name == "max_concurrent":
                default = "the plugin's"
            if table == "scanner" and name == "plugin":
                default = "required"
            if table == "spool" and name == "directory" and default == '""':
                default = "the system's temporary directory"
            if table == "stage":
                default = "one stage per scanner, in file order"
            meaning = meanings[name]
            choices = _choice_list(table, name)
            if choices:
                meaning += ": " + ", ".join(f"`{c}`" for c in choices)
            rows[table].append((name, default, meaning))
    return rows


def _choice_list(table: str, key: str) -> list[str] | None:
    if table in ("defaults", "log"):
        return _choices(f'[{table}]\n{key} = "{_PROBE}"\n{_SCANNER}')
    if table == "scanner" and key in ("on_error", "mode"):
        return _choices(f'{_SCANNER}{key} = "{_PROBE}"\n')
    return None


def _plugin_rows(factory: Any) -> list[tuple[str, str, str]]:
    """(option, type, default) from the factory's signature."""
    rows = []
    for param in inspect.signature(factory).parameters.values():
        if param.name in ("name", "self") or param.kind is param.VAR_KEYWORD:
            continue
        annotation = param.annotation
        kind = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
        if param.default is inspect.Parameter.empty:
            default = "required"
        elif param.name == "timeout":
            default = "the scanner's `timeout`"
        elif param.default is None:
            default = "unset"
        else:
            default = _cell_code(_toml(param.default))
        rows.append((param.name, kind, default))
    return rows


def _type_words(kind: str) -> str:
    """``int | str | None`` -> "`int`, `str` or none": a literal ``|`` cannot be
    written inside a code span in a Markdown table cell (``\\|`` shows as is)."""
    parts = [p.strip() for p in kind.split("|")]
    words = ["none" if p == "None" else f"`{p}`" for p in parts]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _cell_code(text: str) -> str:
    """Code in a table cell; a ``|`` in it as an HTML entity, which tables allow."""
    if "|" not in text:
        return f"`{text}`"
    return "<code>" + html.escape(text).replace("|", "&#124;") + "</code>"


def _probe_values(plugin: str, factory: Any, option: str) -> str:
    """What ``option`` takes, in the plugin's own words: the error for a value no
    option accepts. Empty when any text is accepted."""
    base = PROBE_BASE.get(plugin, {})
    for extra in ({}, base):
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                logging.disable(logging.CRITICAL)
                try:
                    factory(name="probe", **{**extra, option: _PROBE})
                finally:
                    logging.disable(logging.NOTSET)
        except (ConfigError, ValueError) as exc:
            message = str(exc).removeprefix(f"{plugin}: ")
            if not message.startswith(f"{option}:"):
                continue  # another option is missing: try again with PROBE_BASE
            found = re.search(r"expected (.*?)(?:, got .*)?$", message)
            if not found:
                return ""
            choices = re.fullmatch(r"one of ([\w, -]+)", found[1])
            if choices:
                return ", ".join(f"`{c.strip()}`" for c in choices[1].split(","))
            return found[1]
        else:
            return ""
    return ""


def _relink(text: str, page: str) -> str:
    """Links of a plugin page's text, made to work from this page (one level down)."""
    base = page.removesuffix(".md").removeprefix("../")

    def fix(m: re.Match[str]) -> str:
        target = m[1]
        if target.startswith("#"):
            return f"](../{base}.md{target})"
        if "://" in target:
            return m[0]
        return f"](../{target})"

    return re.sub(r"\]\(([^)]+)\)", fix, text)


def _options_meanings(page: Path) -> dict[str, str]:
    """Option -> first sentence of its row in the page's "## Options" table."""
    text = page.read_text()
    section = re.search(r"^## Options\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if not section:
        raise SystemExit(f"gen_config_reference: {page.name} has no '## Options' section")
    meanings: dict[str, str] = {}
    for line in section[1].splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        first = re.match(r"(.+?[.;])(?:\s+[A-Z(`]|$)", cells[-1])
        meaning = (first[1] if first else cells[-1]).rstrip(".;")
        for name in re.findall(r"`(\w+)`", cells[0]):
            meanings.setdefault(name, meaning)
    return meanings


def _code(default: str) -> str:
    """Literal values in code style; words such as "required" as they are."""
    plain = not default or " " in default or default in ("required", "none")
    return default if plain else _cell_code(default)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def render() -> str:
    core = _core_rows()
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
        "## Top level",
        "",
        *_table(("table", "meaning"), [(f"`{k}`", m) for k, _, m in core[""]]),
    ]
    titles = {
        "defaults": "`[defaults]`",
        "log": "`[log]`",
        "spool": "`[spool]`",
        "scanner": "`[scanner.NAME]`: keys the core reads",
        "stage": "`[[stage]]`",
    }
    for table, title in titles.items():
        rows = [(f"`{k}`", _code(d), m) for k, d, m in core[table]]
        out += ["", f"## {title}", "", *_table(("key", "default", "meaning"), rows)]
        if table == "scanner":
            out += [
                "",
                "Every other key of `[scanner.NAME]` is an option of its plugin (below).",
                '`[policy."DOMAIN"]` tables hold `NAME.KEY = value` overrides of any of',
                "these keys except `plugin`.",
            ]
    installed = discover()
    for plugin, page in PLUGINS.items():
        if plugin not in installed:
            raise SystemExit(f"gen_config_reference: plugin {plugin!r} is not installed")
        info = installed[plugin]
        factory = info.load()
        meanings = _options_meanings(ROOT / "docs" / page.removeprefix("../"))
        rows = []
        for name, kind, default in _plugin_rows(factory):
            if name not in meanings:
                raise SystemExit(
                    f"gen_config_reference: option {name!r} of plugin {plugin!r} has no row "
                    f"in the Options table of docs/{page.removeprefix('../')}"
                )
            values = _probe_values(plugin, factory, name)
            if not values:  # nothing refused: any text, or a value the core sets
                values = "text" if "str" in kind.split(" | ") else "–"
            meaning = _relink(meanings[name], page)
            rows.append((f"`{name}`", _type_words(kind), default, values, meaning))
        out += [
            "",
            f'## Plugin `"{plugin}"`',
            "",
            f"Distribution `{info.distribution}`, factory `{info.target}`; "
            f"each option in full in [its page]({page}#options).",
            "",
            *_table(("option", "type", "default", "values", "meaning"), rows),
        ]
    out += [
        "",
        "The example plugin of [Writing a scanner plugin](../plugins.md) is not shipped:",
        "its options are documented there.",
    ]
    return "\n".join(out) + "\n"


def plugin_options(plugin: str) -> list[str]:
    """The option names of an installed plugin (for the docs tests)."""
    return [row[0] for row in _plugin_rows(discover()[plugin].load())]


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
