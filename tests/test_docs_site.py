"""The built documentation site, as a reader sees it: the API page names and
signs ``scan``, ``ascan`` and ``Result``, no docstring shows a raw Sphinx role,
the configuration reference shows no escaped ``\\|``, and the pages an admin
looks for first exist.

It needs MkDocs. ``nox -s docs`` builds the site with ``--strict`` and then runs
this file on it with MXSCAN_DOCS_SITE set and MXSCAN_REQUIRE_MKDOCS=1, so in CI it
cannot skip; elsewhere it builds the site itself when MkDocs is installed, and
skips, saying so, when it is not.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPHINX_ROLE = re.compile(r":(?:func|class|meth|attr|mod|data|exc|obj|ref):(?=[`~\w])")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("MXSCAN_DOCS_SITE")
    if given:
        path = Path(given)
        assert (path / "index.html").is_file(), f"MXSCAN_DOCS_SITE={given} has no built site"
        return path
    if importlib.util.find_spec("mkdocs") is None:
        reason = "MkDocs is not installed (nox -s docs installs it and runs this file)"
        if os.environ.get("MXSCAN_REQUIRE_MKDOCS") == "1":
            pytest.fail(f"MXSCAN_REQUIRE_MKDOCS=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=REPO, check=True, timeout=600, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    return out


def text_of(page: Path) -> str:
    """The page's visible text (tags dropped, entities decoded)."""
    body = page.read_text()
    body = re.sub(r"<(script|style)\b.*?</\1>", "", body, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", "", body))


@pytest.mark.parametrize(
    ("name", "signature"),
    [
        ("scan", r"scan\(\s*data: MessageSource,\s*\*,\s*envelope: Envelope \| None = None"),
        ("ascan", r"ascan\(\s*data: MessageSource,"),
        ("Result", r"Result\(\s*verdict: Verdict"),
    ],
)
def test_api_page_names_and_signs_the_entry_points(site: Path, name: str, signature: str) -> None:
    page = (site / "api" / "index.html").read_text()
    heading = re.search(rf'<h3 id="mxscan\.{name}"[^>]*>(.*?)</h3>', page, re.S)
    assert heading, f"the API page has no heading for mxscan.{name}"
    assert re.sub(r"<[^>]+>|\s|&para;|¶", "", html.unescape(heading[1])).startswith(name)
    assert re.search(signature, text_of(site / "api" / "index.html")), name


def test_no_unrendered_sphinx_roles(site: Path) -> None:
    shown = {
        str(p.relative_to(site)): SPHINX_ROLE.findall(text_of(p)) for p in site.rglob("*.html")
    }
    assert not {page: roles for page, roles in shown.items() if roles}


def test_configuration_reference_shows_no_escaped_pipe(site: Path) -> None:
    text = text_of(site / "reference" / "configuration" / "index.html")
    assert "\\|" not in text
    assert "string or array" in text  # the clamav address type, as words


def test_admin_pages_exist_and_code_blocks_wrap(site: Path) -> None:
    for page in ("installation", "faq", "changelog"):
        assert (site / page / "index.html").is_file(), page
    index = (site / "index.html").read_text()
    assert 'href="stylesheets/extra.css"' in index
    assert "white-space: pre-wrap" in (site / "stylesheets" / "extra.css").read_text()


def test_attrs_classes_show_the_signature_attrs_generates(site: Path) -> None:
    """The model classes are attrs classes: their rendered signature (from
    scripts/griffe_attrs.py, griffe reads only the source) must be the real one."""
    import inspect

    import attrs

    import mxscan

    text = " ".join(text_of(site / "api" / "index.html").split())
    checked = []
    for name in mxscan.__all__:
        obj = getattr(mxscan, name)
        if not (inspect.isclass(obj) and attrs.has(obj)):
            continue
        shown = re.search(rf"\b{name} ¶ {name}\((.*?)\) ", text)
        assert shown, f"no signature shown for {name}"
        rendered = re.findall(r"(?:^|, )(\w+)(?=:| =|=)", shown[1].strip(" ,"))
        assert rendered == list(inspect.signature(obj).parameters), name
        checked.append(name)
    assert {"Result", "Message", "Verdict", "Envelope", "HeaderEdit"} <= set(checked)
