"""The core's MIME structure limits: what crosses them, what does not, and
that a hostile structure costs only the part of it read up to the limit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mxscan import Action, Message, MimeLimits, Pipeline, PolicyRouter, ascan, format_result
from mxscan.mimelimits import Exceeded
from tests.support import hostile
from tests.support.scanners import FakeScanner

LIMITS = MimeLimits()


def check(data: bytes, limits: MimeLimits = LIMITS) -> str | None:
    exceeded = limits.check(Message.from_bytes(data))
    return None if exceeded is None else exceeded.limit


def nested_messages(levels: int, *, encoding: bytes = b"7bit") -> bytes:
    """A message/rfc822 inside a multipart, ``levels`` times over."""
    inner = b"Subject: innermost\r\n\r\nhello\r\n"
    for level in range(levels):
        boundary = b"nest-%d" % level
        inner = (
            b"Subject: level %d\r\n" % level
            + b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n"
            + b"--" + boundary + b"\r\n"
            + b"Content-Type: message/rfc822\r\n"
            + b"Content-Transfer-Encoding: " + encoding + b"\r\n\r\n"
            + inner
            + b"\r\n--" + boundary + b"--\r\n"
        )  # fmt: skip
    return inner


@pytest.mark.parametrize("virus", [True, False])
@pytest.mark.parametrize(
    ("build", "limit"),
    [
        (lambda v: hostile.deep_multipart(v, 30), "max_depth"),
        (lambda v: hostile.deep_multipart(v, 1000), "max_depth"),
        (lambda v: hostile.many_parts(v, 12_000), "max_parts"),
    ],
)
def test_the_hostile_structures_cross_a_default_limit(build, limit, virus) -> None:  # type: ignore[no-untyped-def]
    assert check(build(virus)) == limit


@pytest.mark.parametrize("virus", [True, False])
def test_archives_are_not_mime_structure(virus: bool) -> None:
    # 20 nested zips and a zip bomb are one attachment each: clamd's limits
    # (the clamav plugin's on_limits), not the core's.
    assert check(hostile.nested_zips(virus)) is None


@pytest.mark.parametrize(
    ("limits", "data", "limit"),
    [
        (LIMITS, hostile.deep_multipart(False, 20), None),
        (LIMITS, hostile.deep_multipart(False, 21), "max_depth"),
        (MimeLimits(max_depth=3), hostile.deep_multipart(False, 3), None),
        (MimeLimits(max_depth=3), hostile.deep_multipart(False, 4), "max_depth"),
        (LIMITS, hostile.many_parts(False, 5000), None),
        (LIMITS, hostile.many_parts(False, 5001), "max_parts"),
        (MimeLimits(max_parts=7), hostile.many_parts(False, 7), None),
        (MimeLimits(max_parts=7), hostile.many_parts(False, 8), "max_parts"),
        (LIMITS, nested_messages(10), None),
        (LIMITS, nested_messages(11), "max_nesting"),
        (MimeLimits(max_nesting=2), nested_messages(3), "max_nesting"),
        # a base64 message/rfc822 is not parsed as a message (RFC 2046 forbids
        # it; scanners decode it as an opaque file)
        (MimeLimits(max_nesting=2), nested_messages(3, encoding=b"base64"), None),
    ],
)
def test_each_limit_is_exact(limits: MimeLimits, data: bytes, limit: str | None) -> None:
    assert check(data, limits) == limit


def test_digest_parts_default_to_message_rfc822() -> None:
    body = (
        b"".join(b"--d\r\n\r\nSubject: digest entry %d\r\n\r\ntext\r\n" % n for n in range(3))
        + b"--d--\r\n"
    )
    ctype = b"multipart/digest; boundary=d"
    assert MimeLimits().check_body([body], content_type=ctype) is None
    # each entry opens (and its delimiter closes) one nested message: never 2 deep
    assert MimeLimits(max_nesting=1).check_body([body], content_type=ctype) is None
    mixed = b"multipart/mixed; boundary=d"
    assert MimeLimits(max_nesting=1).check_body([body], content_type=mixed) is None


BOUNDARY_FORMS = [
    # (Content-Type value, delimiter line as written)
    (b'multipart/mixed; boundary="a b"', b"--a b"),
    (b"multipart/mixed; BOUNDARY=tok", b"--tok"),
    (b'multipart/mixed;\r\n\tboundary="q\\"x"', b'--q"x'),
    (b"Multipart/Mixed ; charset=x; boundary = spaced", b"--spaced  \t"),
]


@pytest.mark.parametrize(("ctype", "delimiter"), BOUNDARY_FORMS)
@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_boundary_forms_and_line_endings(ctype: bytes, delimiter: bytes, eol: bytes) -> None:
    part = delimiter + eol + b"Content-Type: text/plain" + eol + eol + b"x" + eol
    body = part * 4 + delimiter.rstrip() + b"--" + eol
    assert MimeLimits(max_parts=4).check_body([body], content_type=ctype) is None
    exceeded = MimeLimits(max_parts=3).check_body([body], content_type=ctype)
    assert exceeded == Exceeded("max_parts", 3)


def test_an_outer_delimiter_closes_the_inner_multiparts() -> None:
    # Depth goes 1 -> 2 -> back to 1 at the outer delimiter, twice: never 3.
    inner = (
        b"--outer\r\nContent-Type: multipart/mixed; boundary=inner\r\n\r\n"
        b"--inner\r\n\r\nunclosed inner part\r\n"
    )
    body = inner * 2 + b"--outer--\r\n"
    ctype = b"multipart/mixed; boundary=outer"
    assert MimeLimits(max_depth=2).check_body([body], content_type=ctype) is None
    assert MimeLimits(max_depth=1).check_body([body], content_type=ctype) == Exceeded(
        "max_depth", 1
    )


def test_a_reused_boundary_builds_no_depth() -> None:
    # Postfix's mime_nest.in shape: clamd and Python's email read one multipart.
    body = b"--foobar\r\ncontent-type: multipart/mixed; boundary=foobar\r\n\r\n" * 30
    ctype = b"multipart/mixed; boundary=foobar"
    assert MimeLimits(max_depth=2).check_body([body], content_type=ctype) is None
    assert MimeLimits(max_parts=29).check_body([body], content_type=ctype) == Exceeded(
        "max_parts", 29
    )


def test_a_part_header_without_an_empty_line_still_ends() -> None:
    # "--b", a header, then a boundary line at once: the part is empty, the
    # next multipart header is read (depth 2).
    body = (
        b"--b\r\nContent-Type: text/plain\r\n--b\r\n"
        b"Content-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\nx\r\n--c--\r\n--b--\r\n"
    )
    ctype = b"multipart/mixed; boundary=b"
    assert MimeLimits(max_depth=1).check_body([body], content_type=ctype) == Exceeded(
        "max_depth", 1
    )


def test_multipart_without_a_boundary_is_one_body() -> None:
    body = b"--x\r\n\r\n" * 10
    assert MimeLimits(max_parts=1).check_body([body], content_type=b"multipart/mixed") is None


def _split(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("size", [1, 2, 3, 5, 64, 1000])
@pytest.mark.parametrize(
    ("data", "limits", "limit"),
    [
        (hostile.deep_multipart(False, 5), MimeLimits(max_depth=4), "max_depth"),
        (hostile.deep_multipart(False, 5), MimeLimits(max_depth=5), None),
        (hostile.many_parts(False, 50), MimeLimits(max_parts=49), "max_parts"),
        (hostile.many_parts(False, 50), MimeLimits(max_parts=50), None),
        (nested_messages(3), MimeLimits(max_nesting=2), "max_nesting"),
        (nested_messages(3).replace(b"\r\n", b"\n"), MimeLimits(max_nesting=2), "max_nesting"),
    ],
)
def test_the_result_does_not_depend_on_how_the_body_is_chunked(
    size: int, data: bytes, limits: MimeLimits, limit: str | None
) -> None:
    message = Message.from_bytes(data)
    ctype = (message.get("Content-Type") or "").encode()
    exceeded = limits.check_body(_split(message.body.as_bytes(), size), content_type=ctype)
    assert (exceeded.limit if exceeded else None) == limit


def test_a_line_longer_than_any_boundary_is_skipped_not_kept() -> None:
    # 1 MB lines, one starting with "--": no boundary, no crash, no part.
    long_dashes = b"--" + b"x" * 1_000_000 + b"\r\n"
    long_plain = b"y" * 1_000_000 + b"\r\n"
    body = b"--b\r\n\r\n" + long_dashes + long_plain + b"--b\r\n\r\nz\r\n--b--\r\n"
    ctype = b"multipart/mixed; boundary=b"
    assert MimeLimits(max_parts=2).check_body(_split(body, 4096), content_type=ctype) is None
    assert MimeLimits(max_parts=1).check_body(_split(body, 4096), content_type=ctype)


def test_the_walk_stops_in_the_chunk_where_a_limit_is_crossed() -> None:
    """A 1,000-deep nesting followed by 50 MB costs the first chunk only."""
    data = hostile.deep_multipart(False, 1000)
    message = Message.from_bytes(data)
    read: list[int] = []

    def chunks() -> Iterator[bytes]:
        yield message.body.as_bytes()[:65536]
        for _ in range(800):
            read.append(1)
            yield b"a" * 65536

    ctype = (message.get("Content-Type") or "").encode()
    assert LIMITS.check_body(chunks(), content_type=ctype) == Exceeded("max_depth", 20)
    assert read == []


def test_bad_limits_are_refused() -> None:
    for bad in ({"max_depth": 0}, {"max_parts": -1}, {"max_nesting": True}):
        with pytest.raises(ValueError, match="at least 1"):
            MimeLimits(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="on_unchecked"):
        MimeLimits(on_unchecked=Action.DISCARD)


# -- in the pipeline -----------------------------------------------------------


async def test_past_a_limit_the_message_is_rejected_before_any_scanner() -> None:
    scanner = FakeScanner("clamav", status="clean")
    result = await ascan(hostile.many_parts(True), config=Pipeline([[scanner]]))
    assert result.action is Action.REJECT
    assert scanner.seen == []
    (verdict,) = result.verdicts
    assert verdict.token == "unchecked(max_parts)"
    assert str(result.verdict.smtp_reply) == (
        "554 5.7.0 Message structure too complex to scan: number of MIME parts over 5000"
    )
    line = format_result(result)
    assert line.startswith("NOQUEUE: mime=unchecked(max_parts) action=reject reason=")
    assert "mime.max_parts" in line


@pytest.mark.parametrize(
    ("on_unchecked", "scanned"),
    [(Action.ACCEPT, True), (Action.QUARANTINE, False), (Action.TEMPFAIL, False)],
)
async def test_on_unchecked_decides_and_only_accept_still_scans(
    on_unchecked: Action, scanned: bool
) -> None:
    scanner = FakeScanner("clamav", status="clean")
    pipeline = Pipeline([[scanner]], limits=MimeLimits(on_unchecked=on_unchecked))
    result = await ascan(hostile.deep_multipart(False, 30), config=pipeline)
    assert result.action is on_unchecked
    assert bool(scanner.seen) is scanned
    tokens = [f"{v.scanner}={v.token}" for v in result.verdicts]
    assert tokens == ["mime=unchecked(max_depth)"] + (["clamav=clean"] if scanned else [])
    if on_unchecked is Action.TEMPFAIL:
        assert str(result.verdict.smtp_reply).startswith("451 4.7.0 ")


async def test_limits_none_checks_nothing_and_plain_mail_gets_no_mime_verdict() -> None:
    scanner = FakeScanner("clamav", status="clean")
    result = await ascan(
        hostile.deep_multipart(False, 30), config=Pipeline([[scanner]], limits=None)
    )
    assert [v.scanner for v in result.verdicts] == ["clamav"]
    result = await ascan(hostile.deep_multipart(False, 3), config=Pipeline([[scanner]]))
    assert [v.token for v in result.verdicts] == ["clean"]


async def test_unchecked_verdicts_are_counted_by_limit() -> None:
    pytest.importorskip("prometheus_client")
    from mxscan.service.metrics import Metrics

    metrics = Metrics()
    engine = metrics.instrument(PolicyRouter(Pipeline([[FakeScanner("clamav", status="clean")]])))
    for limit in ("max_depth", "max_parts", "max_nesting"):  # there at 0 before any mail
        sample = metrics.registry.get_sample_value(
            "mxscan_unchecked_total", {"scanner": "mime", "limit": limit}
        )
        assert sample == 0
    for data in (hostile.many_parts(False), hostile.deep_multipart(True), b"Subject: x\r\n\r\n"):
        await engine.scan(Message.from_bytes(data))

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    assert value("mxscan_unchecked_total", scanner="mime", limit="max_parts") == 1
    assert value("mxscan_unchecked_total", scanner="mime", limit="max_depth") == 1
    assert value("mxscan_messages_total", action="reject") == 2
    assert value("mxscan_verdicts_total", scanner="mime", action="reject", mode="enforce") == 2


# -- against generated MIME trees ------------------------------------------------

Tree = tuple  # ("leaf",) | ("multipart", [children]) | ("message", child)

trees = st.recursive(
    st.just(("leaf",)),
    lambda inner: st.one_of(
        st.tuples(st.just("multipart"), st.lists(inner, min_size=1, max_size=4)),
        st.tuples(st.just("message"), inner),
    ),
    max_leaves=25,
)


def figures(tree: Tree, depth: int = 0, nesting: int = 0) -> tuple[int, int, int]:
    """(deepest multipart nesting, parts, deepest message/rfc822 nesting)."""
    if tree[0] == "leaf":
        return depth, 0, nesting
    if tree[0] == "message":
        return figures(tree[1], depth, nesting + 1)
    found = [figures(child, depth + 1, nesting) for child in tree[1]]
    return (
        max(f[0] for f in found),
        len(tree[1]) + sum(f[1] for f in found),
        max(f[2] for f in found),
    )


def render(tree: Tree, eol: bytes, counter: list[int]) -> tuple[bytes, bytes]:
    """(Content-Type header lines, body) of ``tree``."""
    if tree[0] == "leaf":
        return b"Content-Type: text/plain" + eol, b"some text" + eol + b"-- not a boundary" + eol
    if tree[0] == "message":
        head, body = render(tree[1], eol, counter)
        inner = b"Subject: inner" + eol + head + eol + body
        return b"Content-Type: message/rfc822" + eol, inner
    counter[0] += 1
    boundary = b"b%d=_x" % counter[0]
    out = [b"preamble" + eol]
    for child in tree[1]:
        head, body = render(child, eol, counter)
        out.append(b"--" + boundary + eol + head + eol + body)
    out.append(b"--" + boundary + b"--" + eol + b"epilogue" + eol)
    ctype = b"Content-Type: multipart/mixed;" + eol + b'\tboundary="' + boundary + b'"' + eol
    return ctype, b"".join(out)


@settings(deadline=None, max_examples=150)
@given(trees, st.sampled_from([b"\r\n", b"\n"]), st.integers(min_value=1, max_value=97))
def test_generated_trees_cross_each_limit_exactly_at_their_figure(
    tree: Tree, eol: bytes, chunk: int
) -> None:
    head, body = render(tree, eol, [0])
    message = Message.from_bytes(b"Subject: t" + eol + head + eol + body)
    ctype = (message.get("Content-Type") or "").encode()
    big = 10**6
    for key, value in zip(("max_depth", "max_parts", "max_nesting"), figures(tree), strict=True):
        others = {k: big for k in ("max_depth", "max_parts", "max_nesting") if k != key}
        at = MimeLimits(**{key: max(value, 1)}, **others)
        assert at.check_body(_split(message.body.as_bytes(), chunk), content_type=ctype) is None
        if value >= 2:
            below = MimeLimits(**{key: value - 1}, **others)
            got = below.check_body(_split(message.body.as_bytes(), chunk), content_type=ctype)
            assert got == Exceeded(key, value - 1)
