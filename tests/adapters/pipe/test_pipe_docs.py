"""docs/pipe.md shows the very snippet files the end-to-end test builds Postfix from."""

from __future__ import annotations

from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[3] / "docs"


@pytest.mark.parametrize("name", ["pipe-main.cf", "pipe-master.cf", "mxscan-hold.regexp"])
def test_docs_hold_each_snippet_verbatim_in_a_code_block(name: str) -> None:
    snippet = (DOCS / "snippets" / name).read_text()
    assert snippet.endswith("\n")
    assert f"```\n{snippet}```\n" in (DOCS / "pipe.md").read_text()
