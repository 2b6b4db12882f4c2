"""Python child processes that import ``tests.support``: helper scripts run as
``python -m tests.support.NAME`` with the repository on the child's PYTHONPATH,
so nothing edits ``sys.path`` and a helper's name cannot shadow a stdlib module
(as a script's own directory on ``sys.path[0]`` would)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from tests.support.daemons import REPO_ROOT


def module_argv(module: str, *args: str) -> list[str]:
    """``python -m tests.support.MODULE ARGS``: run it with ``env=child_env()``."""
    return [sys.executable, "-m", f"tests.support.{module}", *args]


def child_env(*paths: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (os.environ by default) with ``paths``, then the repository, then
    the inherited PYTHONPATH on the child's PYTHONPATH."""
    env = dict(os.environ if base is None else base)
    parts = [*paths, str(REPO_ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in parts if p))
    return env
