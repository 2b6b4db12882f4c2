"""Shared fixtures: real-daemon helpers live in tests/support."""

from tests.support.fixtures import *  # noqa: F403
