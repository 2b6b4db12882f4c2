"""Benchmarks printed by ``nox -s bench``: figures to read, not tests to pass."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPAMC_MAX = 500 * 1024  # spamc's default -s: larger messages would not be checked at all


def spamassassin_sample() -> tuple[list[bytes], Path]:
    """The SpamAssassin public corpus sample under MXSCAN_CORPUS (default
    ../shared/corpus), messages under SPAMC_MAX only; empty when it is absent."""
    corpus = Path(os.environ.get("MXSCAN_CORPUS", REPO.parent / "shared" / "corpus"))
    folder = corpus / "spamassassin-publiccorpus-sample"
    files = sorted(p for p in folder.glob("*/*") if p.is_file()) if folder.is_dir() else []
    data = [p.read_bytes() for p in files]
    return [d for d in data if 0 < len(d) < SPAMC_MAX], folder
