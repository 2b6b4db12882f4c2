"""Table syntax details that the Postfix vectors do not cover."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mxscan_header_rules import load_table, parse_table
from mxscan_header_rules.table import read_logical_lines


def value(table_text: str, key: str, kind: str = "pcre") -> str | None:
    hit = parse_table(table_text, kind).lookup(key.encode())  # type: ignore[arg-type]
    return None if hit is None else hit.value.decode()


def test_continuation_lines_join_without_separator() -> None:
    data = b"/a/ REJECT one\n  two\n# comment inside\n\tthree\n/b/ OK\n"
    assert list(read_logical_lines(data)) == [(1, b"/a/ REJECT one  two\tthree"), (5, b"/b/ OK")]


def test_pcre_is_case_insensitive_by_default_and_i_toggles() -> None:
    assert value("/^subject:/ A", "SUBJECT: x") == "A"
    assert value("/^subject:/i A", "SUBJECT: x") is None


def test_pcre_dotall_default_and_s_toggles() -> None:
    assert value("/a.b/ A", "a\nb") == "A"
    assert value("/a.b/s A", "a\nb") is None


def test_pcre_multiline_flag() -> None:
    folded = "Subject: x\nX-Spam-Flag: YES"
    assert value("/^X-Spam-Flag:/ A", folded) is None
    assert value("/^X-Spam-Flag:/m A", folded) == "A"


def test_pcre_features_stdlib_re_lacks() -> None:
    assert value(r"/^[[:alpha:]]+: \Qa.b*\E$/ A", "Subject: a.b*") == "A"
    assert value(r"/^[[:alpha:]]+: \Qa.b*\E$/ A", "Subject: axbb") is None
    # \Z matches before a final newline, \z only at the very end
    assert value(r"/x\Z/ A", "x\n") == "A"
    assert value(r"/x\z/ A", "x\n") is None


def test_pcre_anchored_ungreedy_and_dollar_endonly() -> None:
    assert value("/b/A A", "ab") is None
    assert value("/(a+)/U <$1>", "aaa") == "<a>"
    assert value("/a$/ A", "a\n") == "A"
    assert value("/a$/E A", "a\n") is None


def test_substitution_forms_and_dollar_dollar() -> None:
    assert value("/(a)(b)/ $1-${2}-$(1) $$5", "ab") == "a-b-a $5"


def test_unset_group_expands_to_nothing() -> None:
    assert value("/(x)?(b)/ [$1][$2]", "b") == "[][b]"


def test_regexp_two_patterns_and_posix_longest_match() -> None:
    assert value("/^a/!/b/ A", "ac", "regexp") == "A"
    assert value("/^a/!/b/ A", "ab", "regexp") is None
    # POSIX alternation is leftmost-longest; Perl's would give "a"
    assert value("/(a|ab)/ <$1>", "ab", "regexp") == "<ab>"
    assert value("/(a|ab)/ <$1>", "ab", "pcre") == "<a>"


def test_regexp_flags() -> None:
    assert value("/^Subject/i A", "subject: x", "regexp") is None
    assert value("/^X-Flag/m A", "Subject: x\nX-Flag: 1", "regexp") == "A"
    assert value("/^X-Flag/ A", "Subject: x\nX-Flag: 1", "regexp") is None
    # x toggles extended syntax off: BRE, where \( \) group
    assert value(r"/\(a\)b/x <$1>", "ab", "regexp") == "<a>"


def test_regexp_compile_error_is_a_warning() -> None:
    table = parse_table("/(/ A\n/b/ B\n", "regexp", "t")
    assert len(table.warnings) == 1
    assert table.warnings[0].startswith("regexp map t, line 1: ")
    assert table.lookup(b"b") is not None


def test_nul_in_key_ends_the_key() -> None:
    assert value("/b/ A", "a\0b") is None


def test_load_table_prefix(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "hc"  # type: ignore[operator]
    path.write_text("/(a|ab)/ <$1>\n")
    assert load_table(f"regexp:{path}").lookup(b"ab").value == b"<ab>"  # type: ignore[union-attr]
    assert load_table(f"pcre:{path}").lookup(b"ab").value == b"<a>"  # type: ignore[union-attr]
    assert load_table(str(path)).kind == "pcre"


def test_missing_file_is_a_clear_error(tmp_path: pytest.TempPathFactory) -> None:
    from mxscan_header_rules import TableError

    with pytest.raises(TableError, match="cannot read pcre table"):
        load_table(str(tmp_path / "nope"))  # type: ignore[operator]


def test_hostile_pattern_hits_the_match_limit_not_a_hang() -> None:
    table = parse_table("/^(a+)+$/ EVIL\n/./ FALLBACK\n", "pcre", "t", match_limit=10_000)
    errors: list[str] = []
    hit = table.lookup(b"a" * 40 + b"!", errors)
    assert hit is not None and hit.value == b"FALLBACK"
    assert errors and "line 1" in errors[0] and "limit" in errors[0]


def test_config_check_from_another_directory_reads_the_table_beside_the_config(
    tmp_path: Path,
) -> None:
    """``file = "header_checks"`` is next to the configuration file, whatever the
    working directory (it was read from the working directory)."""
    conf = tmp_path / "etc"
    conf.mkdir()
    (conf / "header_checks").write_text("/^Subject: x/ DISCARD\n")
    (conf / "mxscan.toml").write_text(
        '[scanner.rules]\nplugin = "header-rules"\nfile = "header_checks"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for command in ("check", "show"):
        done = subprocess.run(
            [sys.executable, "-m", "mxscan", "config", command, "--config", str(conf / "mxscan.toml")],
            capture_output=True, text=True, cwd=elsewhere, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert f'file = "{conf / "header_checks"}"' in done.stdout
