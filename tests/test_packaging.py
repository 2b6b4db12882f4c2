"""The wheels as a package index would show them: built from this checkout with
the local build backend (no network), then their METADATA read back.

Checks what an admin or a packager relies on: a license file and authors in every
wheel, Project-URLs and a Development Status, plugins that say which mxscan they
need, a long description whose links work away from the repository, and one
version per distribution, written in one place."""

from __future__ import annotations

import email
import email.message
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {
    "mxscan": (REPO, REPO / "src" / "mxscan" / "__init__.py"),
    "mxscan-clamav": (
        REPO / "plugins" / "mxscan-clamav",
        REPO / "plugins" / "mxscan-clamav" / "src" / "mxscan_clamav" / "_version.py",
    ),
    "mxscan-spamassassin": (
        REPO / "plugins" / "mxscan-spamassassin",
        REPO / "plugins" / "mxscan-spamassassin" / "src" / "mxscan_spamassassin" / "_version.py",
    ),
    "mxscan-header-rules": (
        REPO / "plugins" / "mxscan-header-rules",
        REPO / "plugins" / "mxscan-header-rules" / "src" / "mxscan_header_rules" / "_version.py",
    ),
}
VERSION_LINE = re.compile(r'^__version__ = "([^"]+)"$', re.M)
#: A Markdown link or image target: ](target)
LINK = re.compile(r"\]\(([^)\s]+)")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--wheel-dir", str(out),
         *(str(source) for source, _ in SHIPPED.values())],
        check=True, timeout=600,
    )  # fmt: skip
    built = {}
    for wheel in out.glob("*.whl"):
        name = wheel.name.split("-")[0].replace("_", "-")
        built[name] = wheel
    assert set(built) == set(SHIPPED)
    return built


def metadata(wheel: Path) -> tuple[email.message.Message, list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        return email.message_from_bytes(archive.read(meta)), names


@pytest.mark.parametrize("dist", sorted(SHIPPED))
def test_license_file_and_authors(wheels: dict[str, Path], dist: str) -> None:
    meta, names = metadata(wheels[dist])
    assert meta["License-Expression"] == "MIT"
    assert meta.get_all("License-File") == ["LICENSE"]
    (license_file,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    with zipfile.ZipFile(wheels[dist]) as archive:
        assert archive.read(license_file) == (REPO / "LICENSE").read_bytes()
    assert meta["Author"] == "The mxscan authors"


@pytest.mark.parametrize("dist", sorted(SHIPPED))
def test_project_urls_and_development_status(wheels: dict[str, Path], dist: str) -> None:
    meta, _ = metadata(wheels[dist])
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Repository", "Issues", "Changelog"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values()), urls
    core, _ = metadata(wheels["mxscan"])
    core_urls = dict(u.split(", ", 1) for u in core.get_all("Project-URL") or [])
    assert urls["Repository"] == core_urls["Repository"]  # one project, one repository
    assert (
        urls["Changelog"].endswith("docs/changelog.md")
        and (REPO / "docs" / "changelog.md").exists()
    )
    status = [c for c in meta.get_all("Classifier") or [] if c.startswith("Development Status ::")]
    assert len(status) == 1, status


@pytest.mark.parametrize("dist", sorted(set(SHIPPED) - {"mxscan"}))
def test_plugins_require_mxscan_with_a_lower_bound(wheels: dict[str, Path], dist: str) -> None:
    meta, _ = metadata(wheels[dist])
    requires = [r for r in meta.get_all("Requires-Dist") or [] if re.match(r"mxscan\b(?!-)", r)]
    assert len(requires) == 1, requires
    bound = re.fullmatch(r"mxscan>=(\d+(?:\.\d+)*)", requires[0].replace(" ", ""))
    assert bound, f"{dist} requires {requires[0]!r}: want mxscan>=VERSION"
    core, _ = metadata(wheels["mxscan"])
    as_tuple = lambda v: tuple(int(p) for p in v.split("."))  # noqa: E731
    assert as_tuple(bound[1]) <= as_tuple(core["Version"])  # installable with this core


@pytest.mark.parametrize("dist", sorted(SHIPPED))
def test_long_description_links_are_absolute(wheels: dict[str, Path], dist: str) -> None:
    meta, _ = metadata(wheels[dist])
    assert meta["Description-Content-Type"] == "text/markdown"
    description = meta.get_payload()
    assert isinstance(description, str) and description.strip()
    relative = [t for t in LINK.findall(description) if not t.startswith(("https://", "#"))]
    assert not relative, f"{dist}'s README links {relative}: they break on a package index"


@pytest.mark.parametrize("dist", sorted(SHIPPED))
def test_version_is_written_in_one_place(wheels: dict[str, Path], dist: str) -> None:
    source, version_file = SHIPPED[dist]
    project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    found = VERSION_LINE.findall(version_file.read_text())
    assert len(found) == 1
    meta, _ = metadata(wheels[dist])
    assert meta["Version"] == found[0]
    # and nowhere else in the distribution's sources
    sources = [p for p in (source / "src").rglob("*.py") if p != version_file]
    copies = [str(p) for p in sources if VERSION_LINE.search(p.read_text())]
    assert not copies
