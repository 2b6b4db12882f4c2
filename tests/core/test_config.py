"""Configuration: the documented shape, one clear error per mistake, config show."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mxscan import Action, Config, ConfigError, Registry, load_config
from mxscan.router import DEFAULT_POLICY
from tests.support.scanners import FakeScanner


class Opt(FakeScanner):
    """A fake plugin with options and defaults, like a real one."""

    def __init__(
        self, *, name: str, threshold: float = 5.0, style: str = "tag", timeout: float = 0.0
    ) -> None:
        super().__init__(name)
        self.threshold = threshold
        self.style = style
        self.timeout = timeout


def registry() -> Registry:
    return Registry({"opt": Opt, "plain": lambda *, name: FakeScanner(name)})


GOOD = """
[defaults]
on_error = "tempfail"
timeout = "30s"

[scanner.inbound]
plugin = "plain"

[scanner.spam]
plugin = "opt"
threshold = 7.5
timeout = "500ms"
on_error = "accept"

[scanner.virus]
plugin = "opt"

[[stage]]
run = ["inbound"]
[[stage]]
run = ["virus", "spam"]

[policy."example.net"]
spam.threshold = 10.0

[policy.".example.jp"]
spam.threshold = 2000.0
spam.on_error = "reject"
"""


def test_good_config_parses() -> None:
    config = Config.from_toml(GOOD)
    assert config.timeout == 30.0
    assert config.stages == (("inbound",), ("virus", "spam"))
    spam = config.scanners["spam"]
    assert spam.timeout == 0.5
    assert spam.on_error is Action.ACCEPT
    assert spam.options == {"threshold": 7.5}
    assert config.scanners["virus"].timeout == 30.0
    assert config.scanners["virus"].origins == {"on_error": "[defaults]", "timeout": "[defaults]"}


async def test_build_makes_pipelines_per_policy_sharing_unchanged_scanners() -> None:
    engine = Config.from_toml(GOOD).build(registry())
    default = {s.name: s for s in engine.default.steps}
    net = {s.name: s for s in engine.policies["example.net"].steps}
    jp = {s.name: s for s in engine.policies[".example.jp"].steps}
    assert default["spam"].scanner.threshold == 7.5  # type: ignore[attr-defined]
    assert net["spam"].scanner.threshold == 10.0  # type: ignore[attr-defined]
    assert jp["spam"].scanner.threshold == 2000.0  # type: ignore[attr-defined]
    assert jp["spam"].on_error is Action.REJECT
    assert net["virus"].scanner is default["virus"].scanner
    assert default["spam"].timeout == 0.5
    # The core's timeout is handed to factories that take one.
    assert default["spam"].scanner.timeout == 0.5  # type: ignore[attr-defined]
    assert engine.policy_for("user@EXAMPLE.NET") == "example.net"
    assert engine.policy_for("user@mx.example.jp") == ".example.jp"
    assert engine.policy_for("user@example.jp") == DEFAULT_POLICY
    await engine.aclose()
    assert default["virus"].scanner.closed == 1  # type: ignore[attr-defined]


def test_without_stages_each_scanner_is_its_own_stage_in_file_order() -> None:
    config = Config.from_toml('[scanner.b]\nplugin="plain"\n[scanner.a]\nplugin="plain"\n')
    assert config.stages == (("b",), ("a",))


BAD: list[tuple[str, str]] = [
    ("[scanner.x]\nplugin='plain'\n[wat]\n", "wat: unknown key"),
    ("", "defines no scanners"),
    ("[scanner.x]\n", "[scanner.x] plugin: required"),
    ("[scanner.x]\nplugin='plain'\non_error='discard'\n", "on_error: expected one of accept"),
    ("[scanner.x]\nplugin='plain'\ntimeout='soon'\n", "timeout: expected a duration"),
    ("[scanner.x]\nplugin='plain'\ntimeout=0\n", "timeout: must be more than 0"),
    ("[defaults]\nretries=3\n[scanner.x]\nplugin='plain'\n", "[defaults] retries: unknown key"),
    ("[scanner.'a b']\nplugin='plain'\n", "letters, digits"),
    ("[scanner.x]\nplugin='plain'\n[[stage]]\nrun=['y']\n", "no [scanner.y] is defined"),
    ("[scanner.x]\nplugin='plain'\n[[stage]]\nrun=['x']\n[[stage]]\nrun=['x']\n", "already runs"),
    ("[scanner.x]\nplugin='plain'\n[scanner.y]\nplugin='plain'\n[[stage]]\nrun=['x']\n",
     "[scanner.y] is defined but runs in no [[stage]]"),
    ("[scanner.x]\nplugin='plain'\n[[stage]]\nrun='x'\n", "run: expected a list"),
    ("[scanner.x]\nplugin='plain'\n[policy.'a@b']\n", "expected a recipient domain"),
    ("[scanner.x]\nplugin='plain'\n[policy.'b.net']\ny.k=1\n", "no [scanner.y] is defined"),
    ("[scanner.x]\nplugin='plain'\n[policy.'b.net']\nx.plugin='z'\n", "not the plugin"),
    ("[scanner.x]\nplugin='plain'\n[log]\ntarget='file'\n", "target: expected one of stderr"),
    ("[scanner.x]\nplugin='plain'\n[spool]\nthreshold='big'\n", "[spool] threshold"),
    ("[scanner.x]\nplugin='plain'\n[spool]\ndirectory='/nonexistent/x'\n", "not a directory"),
    ("[scanner.x\n", "not valid TOML"),
    ("[scanner.x]\nplugin='plain'\n[mime]\nmax_depth=0\n",
     "[mime] max_depth: expected a whole number of at least 1, got 0"),
    ("[scanner.x]\nplugin='plain'\n[mime]\nmax_parts='many'\n", "[mime] max_parts: expected"),
    ("[scanner.x]\nplugin='plain'\n[mime]\nmax_nesting=true\n", "[mime] max_nesting: expected"),
    ("[scanner.x]\nplugin='plain'\n[mime]\non_unchecked='discard'\n",
     "[mime] on_unchecked: expected one of accept, quarantine, tempfail, reject, got 'discard'"),
    ("[scanner.x]\nplugin='plain'\n[mime]\nmax_size=1\n", "[mime] max_size: unknown key"),
    ("[scanner.mime]\nplugin='plain'\n", "the name 'mime' is taken by the [mime] limits"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_config_gives_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_toml(text, source="/etc/mxscan/mxscan.toml")
    assert message in str(info.value)
    assert str(info.value).startswith("/etc/mxscan/mxscan.toml:")


BAD_OPTIONS: list[tuple[str, str]] = [
    ("[scanner.s]\nplugin='nope'\n", "no scanner plugin 'nope' is installed (installed: "),
    ("[scanner.s]\nplugin='opt'\nthreshhold=1\n",
     "[scanner.s] threshhold: not an option of plugin 'opt' (its options: threshold, style)"),
    ("[scanner.s]\nplugin='opt'\n[policy.'a.net']\ns.bogus=1\n", "bogus: not an option"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD_OPTIONS)
def test_bad_plugin_options_are_config_errors(text: str, message: str) -> None:
    config = Config.from_toml(text, source="f.toml")
    with pytest.raises(ConfigError) as info:
        config.build(registry())
    assert message in str(info.value)


def test_plugin_raising_value_error_becomes_config_error() -> None:
    def factory(*, name: str, level: Any = None) -> FakeScanner:
        raise ValueError("level: expected a number")

    config = Config.from_toml("[scanner.s]\nplugin='f'\nlevel='x'\n", source="f.toml")
    with pytest.raises(ConfigError, match=r"f.toml: \[scanner.s\] level: expected a number"):
        config.build(Registry({"f": factory}))


def test_plugin_returning_a_non_scanner_is_refused() -> None:
    config = Config.from_toml("[scanner.s]\nplugin='f'\n", source="f.toml")
    with pytest.raises(ConfigError, match="lacks name, scan"):
        config.build(Registry({"f": lambda *, name: object()}))


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"[scanner.x]\nplugin = \xff\n")
    with pytest.raises(ConfigError, match="bad.toml"):
        load_config(bad)


def test_render_shows_every_value_with_its_origin() -> None:
    text = Config.from_toml(GOOD, source="mx.toml").render(registry())
    lines = text.splitlines()
    assert lines[0].endswith("read from mx.toml")
    assert 'on_error = "tempfail"  # file' in lines
    assert 'timeout = "30s"  # file' in lines
    assert 'target = "stderr"  # default' in lines
    assert 'threshold = "1MiB"  # default' in lines
    assert "[scanner.spam]" in lines
    assert 'timeout = "500ms"  # file' in lines
    assert "threshold = 7.5  # file" in lines
    assert 'style = "tag"  # default of plugin opt' in lines
    assert 'mode = "enforce"  # default' in lines
    assert 'on_error = "tempfail"  # [defaults]' in lines  # virus
    assert 'run = ["virus", "spam"]  # file' in lines
    assert '[policy."example.net"]' in lines
    assert "spam.threshold = 10.0  # file" in lines


def test_rendered_config_is_valid_toml_that_loads_back() -> None:
    import tomllib

    text = Config.from_toml(GOOD).render(registry())
    data = tomllib.loads(text)
    assert data["scanner"]["spam"]["threshold"] == 7.5
    assert data["policy"][".example.jp"]["spam"]["threshold"] == 2000.0


def test_mime_limits_parse_build_and_render() -> None:
    from mxscan.mimelimits import MimeLimits

    text = GOOD + '\n[mime]\nmax_parts = 100\non_unchecked = "tempfail"\n'
    config = Config.from_toml(text, source="mx.toml")
    assert config.mime == MimeLimits(max_parts=100, on_unchecked=Action.TEMPFAIL)
    engine = config.build(registry())
    pipelines = [engine.default, *engine.policies.values()]
    assert all(p.limits == config.mime for p in pipelines)
    lines = config.render(registry()).splitlines()
    assert "[mime]" in lines
    assert "max_depth = 20  # default" in lines
    assert "max_parts = 100  # file" in lines
    assert 'on_unchecked = "tempfail"  # file' in lines
    assert Config.from_toml(GOOD).mime == MimeLimits()


# -- relative paths: against the configuration file's directory ----------------


class TableFile:
    """A plugin with a path option, as header-rules' ``file``."""

    path_options = ("file",)

    def __init__(self, *, name: str, file: str) -> None:
        self.scanner = FakeScanner(name)
        self.name = name
        self.file = file
        Path(file.partition("pcre:")[2] or file).read_bytes()  # must be readable from here

    async def scan(self, message: Any) -> Any:
        return await self.scanner.scan(message)

    async def aclose(self) -> None:
        pass


def _relative_setup(tmp_path: Path, file: str) -> Path:
    conf_dir = tmp_path / "etc"
    (conf_dir / "spool").mkdir(parents=True)
    (conf_dir / "rules").write_text("/x/ DISCARD\n")
    config = conf_dir / "mxscan.toml"
    config.write_text(f'[spool]\ndirectory = "spool"\n[scanner.t]\nplugin = "t"\nfile = "{file}"\n')
    return config


@pytest.mark.parametrize(
    ("written", "expected"),
    [("rules", "{dir}/rules"), ("pcre:rules", "pcre:{dir}/rules"), ("{dir}/rules", "{dir}/rules")],
)
def test_relative_paths_resolve_against_the_config_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: str, expected: str
) -> None:
    conf_dir = tmp_path / "etc"
    config_path = _relative_setup(tmp_path, written.format(dir=conf_dir))
    monkeypatch.chdir(tmp_path)  # elsewhere: "rules" and "spool" do not exist here
    registry = Registry({"t": TableFile})
    config = load_config(config_path)
    assert config.spool_dir == str(conf_dir / "spool")
    engine = config.build(registry)
    (step,) = engine.default.stages[0]
    assert step.scanner.file == expected.format(dir=conf_dir)
    shown = config.render(registry)
    assert f'directory = "{conf_dir / "spool"}"' in shown
    assert f'file = "{expected.format(dir=conf_dir)}"' in shown
    # The same file named relatively resolves relatively to where it was named from.
    monkeypatch.chdir(conf_dir.parent)
    again = load_config("etc/mxscan.toml")
    assert again.spool_dir == "etc/spool"
    if written == "rules":
        (step,) = again.build(registry).default.stages[0]
        assert step.scanner.file == "etc/rules"
        assert "file = \"etc/rules\"  # file; 'rules' in the file" in again.render(registry)
