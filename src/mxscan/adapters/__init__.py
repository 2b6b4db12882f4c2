"""Adapters put the one pipeline behind Postfix (milter, pipe) or a function call.

They import the core; the core never imports them.
"""
