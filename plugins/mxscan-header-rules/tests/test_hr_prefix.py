"""The literal-prefix shortcut never changes a lookup: every pattern gives the
same answer with it as PCRE2 alone (PCRE2 is the library Postfix uses)."""

from __future__ import annotations

import pytest

from mxscan_header_rules import _pcre2
from mxscan_header_rules.table import _Matcher, literal_prefix

PATTERNS = [
    rb"^X\-Spam\-Flag:\s+YES", rb"^Subject:.*\b(a|b)\b", rb"^Subject:|^From:", rb"^(?i)Subject",
    rb"^Subjec?t:", rb"^Sub+ject:", rb"^ foo", rb"^From:\s*<>", rb"^Received:.*\[192", rb"^[a]bc",
    rb"^abc[|]|x", rb"^Content-(Type|Disposition):", rb"^Subject{1,2}", rb"^\QSub\E", rb"^S\.b",
    rb"^To:", rb"^x-", rb"^X-Virus-Status:\s+Clean", rb"^\x41bc", rb"^(?#c|x)Sub", rb"^Su(*ACCEPT)",
]  # fmt: skip
KEYS = [
    b"Subject: hello", b"subject: b", b"SUBJECT: a b", b"From: <>", b"from:<>", b"To: x",
    b"X-Spam-Flag: YES", b"x-spam-flag:  yes", b"Received: from a\n\tby b [192.0.2.1]",
    b"Subject: x\n\tFrom: <>", b"Subject: x\nFrom: <>", b"Subjeet: no", b"Subjet: z", b"Sbject:",
    b"Subbbject: y", b"abc", b"xabc", b"Content-Type: a", b"content-disposition: b", b"S.b",
    b"Sxb", b"Abc", b"X-Virus-Status: Clean", b"", b"\xe9Subject: x", b"Subjectt", b"Sub",
]  # fmt: skip
FLAGS = [
    _pcre2.CASELESS | _pcre2.DOTALL,
    _pcre2.DOTALL,
    _pcre2.CASELESS | _pcre2.MULTILINE,
    _pcre2.MULTILINE,
    _pcre2.CASELESS | _pcre2.EXTENDED,
]


@pytest.mark.parametrize("options", FLAGS)
def test_prefix_shortcut_agrees_with_pcre2(options: int) -> None:
    checked = 0
    for pattern in PATTERNS:
        try:
            compiled = _pcre2.Pcre2Pattern(pattern, options)
        except _pcre2.CompileError:
            continue
        plain = _Matcher(compiled, None, 0)
        prefix = literal_prefix(pattern, options)
        fast = _Matcher(
            compiled, None, 0, prefix,
            bool(options & _pcre2.CASELESS), bool(options & _pcre2.MULTILINE),
        )  # fmt: skip
        for key in KEYS:
            assert (fast.run(key, False) is not False) == (plain.run(key, False) is not False), (
                pattern, key, options, prefix,
            )  # fmt: skip
            checked += 1
    assert checked > 400


def test_prefixes_found() -> None:
    caseless = _pcre2.CASELESS
    assert literal_prefix(rb"^X\-Spam\-Flag:\s+YES", caseless) == b"x-spam-flag:"
    assert literal_prefix(rb"^X\-Spam\-Flag:", 0) == b"X-Spam-Flag:"
    assert literal_prefix(rb"^Subjec?t", caseless) == b"subje"
    assert literal_prefix(rb"^Sub+ject", caseless) == b"sub"
    for none in (rb"^Subject:|^From:", rb"^(?i)Subject", rb"^ foo", rb"Subject:", rb"^[a]bc"):
        assert literal_prefix(none, caseless) is None
    assert literal_prefix(rb"^Subject:", caseless | _pcre2.EXTENDED) is None
