"""Shared helpers for mxscan's tests: real daemons, an SMTP sink, private Postfix.

Import the pieces from their modules (``tests.support.daemons``,
``tests.support.sink``, ``tests.support.postfix``); pytest fixtures live in
``tests.support.fixtures`` so a conftest can pull them in with
``from tests.support.fixtures import *``.
"""
