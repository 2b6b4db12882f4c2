"""The PostgreSQL quarantine through real Postfix and `mxscan milter`.

* Two MX hosts: two private Postfix instances, each with its own `mxscan milter`,
  one PostgreSQL; 200 messages at concurrency 16 through both; a third process
  lists every one of them exactly once.
* PostgreSQL stopped mid-load (a cluster of the test's own, stopped as if it
  crashed): the clients hear tempfail, every accepted message is in the store,
  and once the server is back the same milter stores again by itself.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.support.daemons import require_daemon
from tests.support.milter import MilterProcess, plain_config, remove_dir, socket_dir
from tests.support.pg import drop_schema, fresh_schema, require_postgres
from tests.support.postfix import PostfixInstance, SendResult
from tests.support.postgres import own_postgres
from tests.support.quarantine import DROP_RULE, dropped, listed
from tests.support.sink import SMTPSink
from tests.support.snippets import milter_main_cf

pytestmark = [pytest.mark.postfix, pytest.mark.e2e]

RULES = DROP_RULE


@contextlib.contextmanager
def mx_hosts(store: str, count: int) -> Iterator[list[tuple[PostfixInstance, MilterProcess]]]:
    require_daemon("postfix")
    directory = socket_dir()
    sink = SMTPSink().start()
    hosts: list[tuple[PostfixInstance, MilterProcess]] = []
    try:
        for n in range(count):
            config = plain_config({"rules": {"plugin": "header-rules", "rules": RULES}})
            config["quarantine"] = {"store": store}
            milter = MilterProcess(config, directory, name=f"mx{n}").start()
            postfix = PostfixInstance(
                relay_port=sink.port,
                main_overrides={**milter_main_cf(milter.address), "myhostname": f"mx{n}.test"},
            )
            hosts.append((postfix, milter))
            postfix.start()
        yield hosts
    finally:
        for postfix, milter in hosts:
            postfix.remove()
            milter.stop()
        sink.stop()
        remove_dir(directory)


def test_two_mx_hosts_share_one_store() -> None:
    url = require_postgres()
    schema = fresh_schema()
    store = f"{url}&schema={schema}"
    try:
        with mx_hosts(store, 2) as hosts:
            rows, sent = _two_mx_load(hosts)
    finally:
        asyncio.run(drop_schema(url, schema))
    expected = collections.Counter((host, r.queue_id) for host, r in sent)
    got = collections.Counter((row["host"], row["queue_id"]) for row in rows)
    assert got == expected
    assert len(rows) == 200 and len({row["id"] for row in rows}) == 200


def _two_mx_load(
    hosts: list[tuple[PostfixInstance, MilterProcess]],
) -> tuple[list[dict[str, Any]], list[tuple[str, SendResult]]]:
    """200 messages at concurrency 16 through both hosts, then the CLI's list."""

    def send(i: int) -> tuple[str, SendResult]:
        postfix = hosts[i % 2][0]
        return f"mx{i % 2}.test", postfix.send(dropped(f"two-mx-{i}"))

    with ThreadPoolExecutor(16) as pool:
        sent = list(pool.map(send, range(200)))
    assert all(r.code == 250 and r.queue_id for _, r in sent), [
        r for _, r in sent if r.code != 250
    ][:3]
    return listed(hosts[0][1].config_path), sent  # a third process: the CLI


def test_postgres_stopped_mid_load_tempfails_then_recovers() -> None:
    try:
        cluster_context = own_postgres()
        cluster = cluster_context.__enter__()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        with mx_hosts(cluster.url, 1) as hosts:
            postfix, milter = hosts[0]
            results: list[tuple[str, SendResult]] = []
            lock = threading.Lock()

            def send(i: int) -> None:
                token = f"pg-down-{i}"
                result = postfix.send(dropped(token))
                with lock:
                    results.append((token, result))

            def count(code: int) -> int:
                with lock:
                    return sum(1 for _, r in results if r.code == code)

            with ThreadPoolExecutor(8) as pool:
                for i in range(20):
                    pool.submit(send, i)
                deadline = time.monotonic() + 120
                while count(250) < 10:
                    assert time.monotonic() < deadline, results
                    time.sleep(0.01)
                cluster.stop("immediate")
                for i in range(20, 40):
                    pool.submit(send, i)
                while count(451) < 5:
                    assert time.monotonic() < deadline, results
                    time.sleep(0.01)
                cluster.start()
            # Back: the same milter, not restarted, stores again.
            after = [postfix.send(dropped(f"pg-back-{i}")) for i in range(5)]
            assert [r.code for r in after] == [250] * 5, after
            codes = collections.Counter(r.code for _, r in results)
            assert set(codes) <= {250, 451} and codes[451] >= 5, codes
            for _, r in results:
                if r.code == 451:
                    assert "4.3.0 Quarantine unavailable" in r.text, r.text
            # The clients retry what was tempfailed: nothing is lost.
            retried = [postfix.send(dropped(t)) for t, r in results if r.code == 451]
            assert all(r.code == 250 for r in retried), retried
            accepted = [r.queue_id for _, r in results if r.code == 250] + [
                r.queue_id for r in after + retried
            ]
            rows = listed(milter.config_path)
            assert collections.Counter(row["queue_id"] for row in rows) == collections.Counter(
                accepted
            )
            assert "cannot store in the quarantine" in milter.log()
    finally:
        cluster_context.__exit__(None, None, None)
