"""Milter adapter: mxscan's pipeline behind Postfix's ``smtpd_milters``.

``packets`` / ``replies`` / ``negotiate`` are the sans-I/O protocol, ``session`` the
per-connection state machine, ``server`` the thin asyncio layer, ``cli`` the
``mxscan milter`` subcommand.
"""
