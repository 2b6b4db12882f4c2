"""Fixtures for the smtp/lmtp adapter's end-to-end tests (see smtp_stack)."""

from tests.support.smtp_stack import stack

__all__ = ["stack"]
