"""Shared code of mxscan's tests and benchmarks: real daemons, private MTAs, mxscan
itself run as the MTA runs it, and test doubles. Import each piece from its module
(``from tests.support.milter import MilterProcess``); nothing edits ``sys.path``.
A test module is never imported by another module or a benchmark: what two of them
share lives here. Helper scripts run as ``python -m tests.support.NAME`` (see
``child``).

The daemons and MTAs: ``daemons`` (the private clamd/spamd/rspamd of
scripts/daemons, the EICAR/GTUBE/ham messages), ``private_clamd``, ``own_spamd``,
``rspamd``, ``pg`` (the shared PostgreSQL) and ``postgres`` (a cluster of a test's
own), ``postfix`` (a private Postfix), ``sendmail``, ``haraka``, ``sink`` (the
SMTP sink), ``service_install``.

mxscan under test, one module per adapter: ``milter`` (``mxscan milter`` as a
process, config builders), ``threaded`` (a MilterServer on a thread),
``snippets`` (docs/snippets/milter-main.cf as settings), ``mta`` (the MTA side of
the milter protocol), ``pipe`` (``mxscan pipe`` run as Postfix would) and
``pipe_postfix`` (the documented pipe(8) Postfix), ``smtp``, ``smtp_rig`` and
``smtp_stack``, ``httpd`` and ``http_rig``, ``quarantine``; ``stderr`` (a child's log lines, waited for).

Faults and load: ``proxy`` (a misbehaving daemon, its own process), ``faults``
(its handle, process probes, raw SMTP, figures), ``load``, ``corpus``,
``hostile`` (malformed and oversized mail), ``messages`` (token messages).

Doubles: ``scanners`` (test-only scanners, built on the public ``mxscan.testing``
that plugin authors use), ``fake_plugin``, ``fake_sendmail``, ``fake_daemon``.

``tools`` skips (or, in CI, fails) a test whose host tool is missing.
pytest fixtures live in ``fixtures`` so a conftest can pull them in with
``from tests.support.fixtures import *``; ``no_dns`` keeps every test off the
resolver.
"""
