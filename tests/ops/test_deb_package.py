"""The Debian package (scripts/build-deb): it builds reproducibly, holds what
docs/operations.md promises, its unit verifies, and its mxscan runs as an
unprivileged service user with the three official plugins and its own
/etc/mxscan/mxscan.toml.

Nothing is installed on the host: the package is unpacked into a scratch root
under the run directory (readable by the stand-in service user ``nobody``; the
package's postinst would create ``mxscan``), and removed afterwards.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemons import run_dir
from tests.support.service_install import runs_as
from tests.support.tools import require

pytestmark = pytest.mark.package

REPO = Path(__file__).resolve().parents[2]
OFFICIAL = {"clamav", "header-rules", "spamassassin"}


@pytest.fixture(scope="module")
def debs() -> Iterator[list[Path]]:
    """The package, built twice from this checkout."""
    require("dpkg-deb")
    work = Path(tempfile.mkdtemp(prefix="mxscan-deb-"))
    try:
        built = []
        for n in (1, 2):
            done = subprocess.run(
                ["bash", str(REPO / "scripts" / "build-deb"), "--out", str(work / str(n))],
                capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            built.append(Path(done.stdout.strip().splitlines()[-1]))
        yield built
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def root(debs: list[Path]) -> Iterator[Path]:
    """The package's files unpacked in a scratch root that nobody can read."""
    base = run_dir()
    base.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="deb-root-", dir=base))
    scratch.chmod(0o755)
    try:
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(scratch)], check=True)
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def field(deb: Path, name: str) -> str:
    return subprocess.run(
        ["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_two_builds_give_the_same_bytes(debs: list[Path]) -> None:
    first, second = (hashlib.sha256(deb.read_bytes()).hexdigest() for deb in debs)
    assert first == second, debs


def test_the_package_holds_the_venv_the_command_the_unit_and_a_conffile(
    debs: list[Path], root: Path
) -> None:
    deb = debs[0]
    assert field(deb, "Package") == "mxscan"
    assert "python3.11" in field(deb, "Depends")
    conffiles = subprocess.run(
        ["dpkg-deb", "--ctrl-tarfile", str(deb)], capture_output=True, check=True
    ).stdout
    assert b"conffiles" in conffiles
    ctrl = root.parent / f"{root.name}-ctrl"
    try:
        subprocess.run(["dpkg-deb", "-e", str(deb), str(ctrl)], check=True)
        assert (ctrl / "conffiles").read_text().split() == ["/etc/mxscan/mxscan.toml"]
        assert "adduser --system" in (ctrl / "postinst").read_text()
    finally:
        shutil.rmtree(ctrl, ignore_errors=True)
    assert (root / "usr/bin/mxscan").readlink() == Path("/opt/mxscan/bin/mxscan")
    script = (root / "opt/mxscan/bin/mxscan").read_text()
    assert script.startswith("#!/opt/mxscan/bin/python\n"), script  # renamed from the build dir
    assert (root / "opt/mxscan/bin/python3").readlink() == Path("/usr/bin/python3")  # Debian's
    assert not list(root.rglob("__pycache__"))  # postinst compiles, prerm removes
    assert (root / "lib/systemd/system/mxscan-milter.service").exists()
    cfg = (root / "opt/mxscan/pyvenv.cfg").read_text()
    assert str(root) not in cfg and "/tmp/" not in cfg, cfg


def test_mxscan_lists_the_official_plugins_as_the_service_user(root: Path) -> None:
    python = str(root / "opt/mxscan/bin/python")  # /opt/mxscan/bin/mxscan, unpacked elsewhere
    done = runs_as("nobody", [python, "-m", "mxscan", "plugins"])
    assert done is not None and done.returncode == 0, done
    names = {line.split()[0] for line in done.stdout.decode().splitlines()[1:] if line.strip()}
    assert names == OFFICIAL, done.stdout
    config = str(root / "etc/mxscan/mxscan.toml")
    checked = runs_as("nobody", [python, "-m", "mxscan", "config", "check", "--config", config])
    assert checked is not None and checked.returncode == 0, checked
    assert b": OK (" in checked.stdout, checked.stdout


def test_the_packaged_unit_verifies(root: Path, tmp_path: Path) -> None:
    unit = (root / "lib/systemd/system/mxscan-milter.service").read_text()
    assert "ExecStart=/usr/bin/mxscan milter" in unit
    local = tmp_path / "mxscan-milter.service"  # ExecStart must exist to verify
    local.write_text(unit.replace("/usr/bin/mxscan", str(root / "opt/mxscan/bin/mxscan")))
    done = subprocess.run(
        [require("systemd-analyze"), "verify", "--man=no", str(local)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stderr
