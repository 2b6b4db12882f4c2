"""Declared options (``mxscan.options``): one declaration per key gives the
check, the default, the doc and ``config show``, for a plugin as for the core."""

from __future__ import annotations

import enum
from pathlib import Path

import pytest

from mxscan import Config, ConfigError, Message, Registry, Verdict, options
from mxscan.config import TABLES
from mxscan.options import REQUIRED, Option


class Style(enum.Enum):
    TAG = "tag"
    DROP = "drop"


class DemoOptions(options.Options):
    """A plugin's options, each declared once."""

    level = Option(options.number, 5.0, "score at which it acts")
    wait = Option(options.duration, "2s", "how long it waits")
    style = Option(options.one_of(Style), "tag", "what it does")
    words = Option(options.text, REQUIRED, "what it looks for")
    table = Option(options.optional(options.text), None, "a file it reads", path=True)


class Demo:
    options_class = DemoOptions

    def __init__(self, name: str = "demo", **values: object) -> None:
        self.name = name
        self.options = DemoOptions.parse(values)

    async def scan(self, message: Message) -> Verdict:
        return Verdict()

    async def aclose(self) -> None:
        pass


def registry() -> Registry:
    return Registry({"demo": Demo})


def built(text: str, source: str = "/etc/mxscan/m.toml") -> Demo:
    engine = Config.from_toml(text, source=source).build(registry())
    (step,) = engine.default.stages[0]
    scanner = step.scanner
    assert isinstance(scanner, Demo)
    return scanner


BASE = '[scanner.d]\nplugin = "demo"\nwords = "x"\n'


def test_declared_defaults_are_checked_like_values_from_the_file() -> None:
    opts = built(BASE).options
    assert (opts.level, opts.wait, opts.style, opts.words) == (5.0, 2.0, Style.TAG, "x")
    assert opts.table is None
    assert opts.given == {"words"}
    opts = built(BASE + 'wait = "500ms"\nstyle = "DROP"\n').options
    assert (opts.wait, opts.style) == (0.5, Style.DROP)


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ('level = "high"', "[scanner.d] level: expected a number, got 'high'"),
        ("wait = 0", "[scanner.d] wait: must be more than 0 seconds"),
        ('style = "burn"', "[scanner.d] style: expected one of tag, drop, got 'burn'"),
        (
            "levle = 1",
            "[scanner.d] levle: not an option of plugin 'demo' "
            "(its options: level, wait, style, words, table)",
        ),
    ],
)
def test_a_bad_option_is_refused_naming_file_table_and_key(line: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        built(BASE + line + "\n")
    assert str(info.value).startswith("/etc/mxscan/m.toml: ")
    assert error in str(info.value)


def test_a_required_option_is_named() -> None:
    with pytest.raises(ConfigError, match=r"m.toml: \[scanner.d\] words: required by plugin"):
        built('[scanner.d]\nplugin = "demo"\n')
    with pytest.raises(ConfigError, match="words: required, what it looks for"):
        Demo()


def test_a_policy_typo_is_blamed_on_the_policy() -> None:
    config = Config.from_toml(BASE + '[policy."example.net"]\nd.styel = "drop"\n', source="f")
    with pytest.raises(ConfigError, match=r'^f: \[policy."example.net"\] d.styel: not an option'):
        config.build(registry())


def test_a_declared_path_option_resolves_against_the_config_files_directory(
    tmp_path: Path,
) -> None:
    source = str(tmp_path / "etc" / "m.toml")
    assert built(BASE + 'table = "pcre:rules"\n', source).options.table == (
        f"pcre:{tmp_path}/etc/rules"
    )


def test_config_show_writes_each_declared_default_once_as_declared() -> None:
    lines = Config.from_toml(BASE, source="m.toml").render(registry()).splitlines()
    assert "level = 5.0  # default of plugin demo" in lines
    assert 'wait = "2s"  # default of plugin demo' in lines
    assert 'style = "tag"  # default of plugin demo' in lines
    assert 'words = "x"  # file' in lines
    assert not any(line.startswith("table =") for line in lines)  # unset: not shown


def test_a_wrong_default_fails_when_the_class_is_declared() -> None:
    with pytest.raises(ConfigError, match="wait: expected a duration"):

        class Broken(options.Options):
            wait = Option(options.duration, "soon", "a typo in a default")


def test_options_are_typed_by_their_checks() -> None:
    opts = DemoOptions.parse({"words": "x", "level": 3})
    level: float = opts.level  # mypy reads float from options.number
    assert level == 3.0 and isinstance(level, float)
    assert DemoOptions.level.doc == "score at which it acts"
    with pytest.raises(ConfigError, match=r"^bogus: not an option \(its options: level, "):
        DemoOptions.parse({"words": "x", "bogus": 1})


@pytest.mark.parametrize("table", [t for t in TABLES if t.key not in ("scanner", "policy")])
def test_an_unknown_key_of_a_core_table_is_refused_naming_file_and_table(table: object) -> None:
    from mxscan.config.schema import Table

    assert isinstance(table, Table) and table.options is not None
    text = BASE
    if table.key == "stage":
        text += '[[stage]]\nrun = ["d"]\nbogus = 1\n'
        where = "[[stage]] #1"
    else:
        text += f"[{table.key}]\nbogus = 1\n"
        where = f"[{table.key}]"
    with pytest.raises(ConfigError) as info:
        Config.from_toml(text, source="/etc/mxscan/m.toml")
    allowed = ", ".join(table.options.declared())
    assert str(info.value) == (
        f"/etc/mxscan/m.toml: {where} bogus: unknown key (expected one of: {allowed})"
    )


def test_an_unknown_top_level_table_is_refused_naming_the_file() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_toml(BASE + "[filters]\n", source="/etc/mxscan/m.toml")
    assert str(info.value) == (
        "/etc/mxscan/m.toml: filters: unknown key (expected one of: "
        + ", ".join(t.key for t in TABLES)
        + ")"
    )
