"""``mxscan http``: the pipeline behind rspamd's HTTP protocol (``POST /checkv2``)
and a native JSON API (``POST /v1/scan``).

``request`` and ``rspamd``/``native`` are sans-I/O (headers in, JSON out); ``server``
moves bytes with h11 on the service layer; ``cli`` is the subcommand.
"""
