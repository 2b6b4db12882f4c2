"""``mxscan smtp`` / ``mxscan lmtp``: Postfix's advanced (after-queue) content filter.

Postfix's ``content_filter`` hands each queued message to mxscan over SMTP or
LMTP; mxscan scans it and passes it on to a second smtpd (``--next``). Postfix
keeps the message queued until mxscan has answered, and mxscan answers ``250``
only once the next hop has. ``session`` is the protocol (sans-I/O), ``dots``
the DATA transparency, ``xforward`` the client attributes, ``outcome`` the
verdict -> reply mapping, ``nexthop`` the re-injection client and ``server``
the asyncio layer.
"""
