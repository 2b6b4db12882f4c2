"""Smoke tests for tests.support (the helpers other tests rely on)."""
