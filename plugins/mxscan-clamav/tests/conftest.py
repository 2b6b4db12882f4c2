"""Fixtures live in clamav_support.py (a uniquely named module, so tests of several
plugins can import their helpers in one pytest session)."""

from clamav_support import *  # noqa: F403
