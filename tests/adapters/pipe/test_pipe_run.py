"""``python -m mxscan pipe`` run as Postfix's pipe(8) runs it: exit status, the
status line on stdout, and what reaches sendmail, for every action and failure."""

from __future__ import annotations

import array
import fcntl
import json
import os
import re
import signal
import termios
import time
from pathlib import Path
from typing import IO

import pytest

from tests.support.pipe import PipeRunner, fake_config

MESSAGE = (
    b"From: alice@example.org\n"
    b"To: bob@example.com\n"
    b"Subject: lunch\n"
    b"X-Folded: one\n\ttwo\n"
    b"\n"
    b"Shall we meet at noon?\n"
)


def _status_line(out: bytes) -> str:
    return out.decode().splitlines()[0] if out else ""


# -- each action -------------------------------------------------------------


def test_accept_reinjects_with_sendmail_G_i_f_and_the_same_bytes(pipe: PipeRunner) -> None:
    pipe.write_config(fake_config("accept"))
    proc = pipe.run(MESSAGE, "-f", "alice@example.org", "--", "bob@example.com", "-x@example.com")
    assert proc.returncode == 0, proc
    assert proc.stdout == b""
    (sent,) = pipe.sent()
    assert sent.argv == [
        "-G",
        "-i",
        "-f",
        "alice@example.org",
        "--",
        "bob@example.com",
        "-x@example.com",
    ]
    assert sent.data == MESSAGE
    assert b"action=accept" in proc.stderr


def test_accept_with_edits_changes_only_the_added_header(pipe: PipeRunner) -> None:
    pipe.write_config(fake_config("accept", header="tagged"))
    proc = pipe.run(MESSAGE, "-f", "a@example.org", "--", "bob@example.com")
    assert proc.returncode == 0
    (sent,) = pipe.sent()
    head, _, body = MESSAGE.partition(b"\n\n")
    assert sent.data == head + b"\nX-Pipe-Fake: tagged\n\n" + body


def test_null_sender_is_passed_as_empty_f(pipe: PipeRunner) -> None:
    pipe.write_config(fake_config("accept"))
    proc = pipe.run(MESSAGE, "-f", "", "--", "bob@example.com")
    assert proc.returncode == 0
    assert pipe.sent()[0].sender == ""


def test_discard_exits_0_and_reinjects_nothing(pipe: PipeRunner) -> None:
    pipe.write_config(fake_config("discard"))
    proc = pipe.run(MESSAGE, "--queue-id", "4AB12", "-f", "a@example.org", "--", "b@example.com")
    assert proc.returncode == 0
    assert proc.stdout == b""
    assert pipe.sent() == []
    assert b"4AB12: fake=discard action=discard" in proc.stderr


def test_reject_exits_69_with_the_enhanced_status_first_and_nothing_else(
    pipe: PipeRunner,
) -> None:
    pipe.write_config(fake_config("reject", reply="5.7.1 no spam here"))
    proc = pipe.run(MESSAGE, "-f", "a@example.org", "--", "b@example.com")
    assert proc.returncode == 69
    # pipe(8) bounces with the status found at the start of the output; our log
    # lines stay out of the sender's bounce.
    assert proc.stdout == b"5.7.1 no spam here"
    assert proc.stderr == b""
    assert pipe.sent() == []


def test_reject_without_a_scanner_reply_uses_the_default_5_7_1(pipe: PipeRunner) -> None:
    pipe.write_config(fake_config("reject"))
    proc = pipe.run(MESSAGE, "-f", "a@example.org", "--", "b@example.com")
    assert proc.returncode == 69
    assert _status_line(proc.stdout).startswith("5.7.1 ")


def test_tempfail_exits_75_with_a_4xx_status(pipe: PipeRunner) -> None:
    pipe.write_config(fake_config("tempfail"))
    proc = pipe.run(MESSAGE, "-f", "a@example.org", "--", "b@example.com")
    assert proc.returncode == 75
    assert _status_line(proc.stdout).startswith("4.7.1 ")
    assert pipe.sent() == []


def test_tempfail_with_a_5xx_reply_still_prints_a_4xx_status(pipe: PipeRunner) -> None:
    # pipe(8) would bounce on a leading 5.x.x even with exit 75.
    pipe.write_config(fake_config("tempfail", reply="5.7.0 odd scanner"))
    proc = pipe.run(MESSAGE, "-f", "a@example.org", "--", "b@example.com")
    assert proc.returncode == 75
    assert _status_line(proc.stdout).startswith("4.")


def test_quarantine_hold_reinjects_with_the_hold_header(pipe: PipeRunner) -> None:
    pipe.write_config(fake_config("quarantine"))
    proc = pipe.run(
        MESSAGE,
        "--quarantine",
        "hold",
        "--queue-id",
        "Q1",
        "-f",
        "a@example.org",
        "--",
        "b@example.com",
    )
    assert proc.returncode == 0, proc
    (sent,) = pipe.sent()
    assert sent.recipients == ["b@example.com"]
    head, _, body = sent.data.partition(b"\n\n")
    assert head.endswith(b"\nX-Mxscan-Hold: Q1 fake: fake says quarantine")
    assert body == MESSAGE.partition(b"\n\n")[2]


def test_quarantine_to_address_replaces_the_recipients(pipe: PipeRunner) -> None:
    pipe.write_config(fake_config("quarantine"))
    proc = pipe.run(
        MESSAGE,
        "--quarantine-to",
        "quarantine@example.net",
        "-f",
        "a@example.org",
        "--",
        "b@example.com",
        "c@example.com",
    )
    assert proc.returncode == 0
    (sent,) = pipe.sent()
    assert sent.recipients == ["quarantine@example.net"]
    assert (
        b"X-Mxscan-Quarantine: NOQUEUE fake: fake says quarantine; "
        b"recipients=b@example.com, c@example.com\n" in sent.data
    )


def test_quarantine_without_a_quarantine_option_defers(pipe: PipeRunner) -> None:
    pipe.write_config(fake_config("quarantine"))
    proc = pipe.run(MESSAGE, "-f", "a@example.org", "--", "b@example.com")
    assert proc.returncode == 75
    assert _status_line(proc.stdout).startswith("4.3.5 ")
    assert pipe.sent() == []


def test_forged_marker_headers_are_removed_before_reinjection(pipe: PipeRunner) -> None:
    forged = b"X-Mxscan-Hold: forged\nX-Mxscan-Quarantine: forged\n" + MESSAGE
    pipe.write_config(fake_config("accept"))
    proc = pipe.run(forged, "--quarantine", "hold", "-f", "a@example.org", "--", "b@example.com")
    assert proc.returncode == 0
    assert pipe.sent()[0].data == MESSAGE


def test_redirect_and_bcc_routes_change_the_reinjection_recipients(pipe: PipeRunner) -> None:
    pipe.write_config(fake_config("accept", redirect="r@example.net", bcc="archive@example.net"))
    proc = pipe.run(MESSAGE, "-f", "a@example.org", "--", "b@example.com")
    assert proc.returncode == 0
    assert pipe.sent()[0].recipients == ["r@example.net", "archive@example.net"]


def test_output_dash_writes_the_final_message_to_stdout(pipe: PipeRunner) -> None:
    pipe.write_config(fake_config("accept", header="x"))
    proc = pipe.run(MESSAGE, "--output", "-", "-f", "a@example.org", sendmail=False)
    assert proc.returncode == 0
    assert proc.stdout.startswith(b"From: alice@example.org\n")
    assert b"\nX-Pipe-Fake: x\n\nShall we" in proc.stdout
    assert pipe.sent() == []


def test_output_with_discard_writes_nothing(pipe: PipeRunner) -> None:
    pipe.write_config(fake_config("discard"))
    proc = pipe.run(MESSAGE, "--output", "-", sendmail=False)
    assert (proc.returncode, proc.stdout) == (0, b"")


# -- per-recipient policy split ---------------------------------------------

SPLIT = fake_config("accept", header="default") + (
    '\n[policy."example.net"]\nfake.action = "discard"\n'
    '\n[policy."example.jp"]\nfake.action = "quarantine"\nfake.header = "jp"\n'
    '\n[policy."example.org"]\nfake.action = "reject"\n'
    '\n[policy."tempfail.test"]\nfake.action = "tempfail"\n'
)


def test_each_policy_group_is_reinjected_with_its_own_verdict(pipe: PipeRunner) -> None:
    pipe.write_config(SPLIT)
    proc = pipe.run(
        MESSAGE,
        "--quarantine",
        "hold",
        "-f",
        "a@example.org",
        "--",
        "b@example.com",
        "n@example.net",
        "j@example.jp",
        "c@example.com",
    )
    assert proc.returncode == 0, proc
    accepted, held = pipe.sent()
    assert accepted.recipients == ["b@example.com", "c@example.com"]
    assert b"X-Pipe-Fake: default\n" in accepted.data and b"X-Mxscan-Hold" not in accepted.data
    assert held.recipients == ["j@example.jp"]
    assert b"X-Pipe-Fake: jp\n" in held.data and b"\nX-Mxscan-Hold: " in held.data
    assert re.search(
        rb"policy=example.net fake=discard .* to=<n@example.net> nrcpt=1 ", proc.stderr
    )


def test_a_tempfail_group_defers_every_recipient_and_reinjects_none(pipe: PipeRunner) -> None:
    pipe.write_config(SPLIT)
    proc = pipe.run(MESSAGE, "-f", "a@example.org", "--", "b@example.com", "t@tempfail.test")
    assert proc.returncode == 75
    assert pipe.sent() == []


def test_every_group_rejected_bounces(pipe: PipeRunner) -> None:
    pipe.write_config(SPLIT.replace('action = "accept"', 'action = "reject"', 1))
    proc = pipe.run(MESSAGE, "-f", "a@example.org", "--", "b@example.com", "o@example.org")
    assert proc.returncode == 69
    assert _status_line(proc.stdout).startswith("5.7.1 ")


def test_a_rejected_group_mixed_with_accepted_is_dropped_and_logged(pipe: PipeRunner) -> None:
    pipe.write_config(SPLIT)
    proc = pipe.run(MESSAGE, "-f", "a@example.org", "--", "b@example.com", "o@example.org")
    assert proc.returncode == 0
    (sent,) = pipe.sent()
    assert sent.recipients == ["b@example.com"]
    assert b"rcpts=o@example.org rejected-as-discard" in proc.stderr


# -- failures: always 75, never a traceback ----------------------------------


def _assert_tempfail(proc: object, status: str = "4.") -> None:
    assert proc.returncode == 75, proc  # type: ignore[attr-defined]
    assert _status_line(proc.stdout).startswith(status)  # type: ignore[attr-defined]
    assert b"Traceback" not in proc.stdout + proc.stderr  # type: ignore[attr-defined]


def test_sendmail_missing_defers(pipe: PipeRunner, tmp_path: object) -> None:
    pipe.write_config(fake_config("accept"))
    proc = pipe.run(
        MESSAGE,
        "--sendmail",
        "/nonexistent/sendmail",
        "-f",
        "a@example.org",
        "--",
        "b@example.com",
        sendmail=False,
    )
    _assert_tempfail(proc, "4.3.0 ")
    assert b"cannot run /nonexistent/sendmail" in proc.stdout


def test_sendmail_failing_defers_with_its_output(pipe: PipeRunner) -> None:
    pipe.write_config(fake_config("accept"))
    pipe.sendmail_status = 75
    proc = pipe.run(MESSAGE, "-f", "a@example.org", "--", "b@example.com")
    _assert_tempfail(proc, "4.3.0 ")
    assert b"exited with status 75: fake sendmail: refusing on purpose" in proc.stdout


def test_sendmail_with_t_is_refused(pipe: PipeRunner) -> None:
    pipe.write_config(fake_config("accept"))
    proc = pipe.run(
        MESSAGE, "--sendmail", "/usr/sbin/sendmail -t", "-f", "a", "--", "b", sendmail=False
    )
    _assert_tempfail(proc, "4.3.5 ")
    assert pipe.sent() == []


def test_scanner_down_with_on_error_tempfail_defers(pipe: PipeRunner) -> None:
    pipe.write_config(fake_config("accept", fail=True))
    proc = pipe.run(MESSAGE, "-f", "a@example.org", "--", "b@example.com")
    _assert_tempfail(proc)
    assert b"fake=error(failed)" in proc.stdout + proc.stderr
    assert pipe.sent() == []


def test_scanner_down_with_on_error_accept_delivers(pipe: PipeRunner) -> None:
    pipe.write_config(fake_config("accept", fail=True, on_error="accept"))
    proc = pipe.run(MESSAGE, "-f", "a@example.org", "--", "b@example.com")
    assert proc.returncode == 0
    assert len(pipe.sent()) == 1


def test_empty_stdin_defers(pipe: PipeRunner) -> None:
    pipe.write_config(fake_config("accept"))
    proc = pipe.run(b"", "-f", "a@example.org", "--", "b@example.com")
    _assert_tempfail(proc, "4.3.0 ")
    assert b"empty message" in proc.stdout
    assert pipe.sent() == []


def test_garbage_stdin_is_scanned_and_passed_on_unchanged(pipe: PipeRunner) -> None:
    garbage = bytes(range(256)) * 50 + b"\r\r\n\x00no header at all"
    pipe.write_config(fake_config("accept"))
    proc = pipe.run(garbage, "-f", "a@example.org", "--", "b@example.com")
    assert proc.returncode == 0
    assert pipe.sent()[0].data == garbage


def test_large_message_is_spooled_and_reinjected_byte_identical(pipe: PipeRunner) -> None:
    big = MESSAGE + os.urandom(3 * 1024 * 1024).hex().encode() + b"\n"
    pipe.write_config(fake_config("accept") + '\n[spool]\nthreshold = "64KiB"\n')
    proc = pipe.run(big, "-f", "a@example.org", "--", "b@example.com")
    assert proc.returncode == 0
    assert pipe.sent()[0].data == big


def test_bad_config_defers_with_4_3_5(pipe: PipeRunner) -> None:
    pipe.write_config("[scanner.x]\nplugin = 'no-such-plugin'\n")
    proc = pipe.run(MESSAGE, "-f", "a@example.org", "--", "b@example.com")
    _assert_tempfail(proc, "4.3.5 mxscan pipe: configuration error: ")


def test_missing_config_file_defers(pipe: PipeRunner) -> None:
    proc = pipe.run(MESSAGE, "-f", "a@example.org", "--", "b@example.com")
    _assert_tempfail(proc, "4.3.5 ")


def test_a_plugin_bug_defers_without_traceback(pipe: PipeRunner) -> None:
    pipe.write_config("[scanner.x]\nplugin = 'pipe-broken'\n")
    proc = pipe.run(MESSAGE, "-f", "a@example.org", "--", "b@example.com")
    _assert_tempfail(proc, "4.3.0 mxscan pipe: internal error: RuntimeError")


@pytest.mark.parametrize(
    "args",
    [["--bogus", "-f", "a", "--", "b"], ["-f", "a"], ["--sendmail-timeout", "0s", "--", "b"]],
    ids=["unknown-option", "no-recipients", "bad-value"],
)
def test_usage_errors_defer_instead_of_exiting_2(pipe: PipeRunner, args: list[str]) -> None:
    pipe.write_config(fake_config("accept"))
    proc = pipe.run(MESSAGE, *args)
    _assert_tempfail(proc, "4.3.5 ")
    assert pipe.sent() == []


def test_sigterm_mid_scan_defers_and_reinjects_nothing(pipe: PipeRunner) -> None:
    started = pipe.tmp / "started"
    pipe.write_config(fake_config("accept", delay=30.0, started_file=str(started)))
    proc = pipe.popen("-f", "a@example.org", "--", "b@example.com")
    assert proc.stdin is not None
    proc.stdin.write(MESSAGE)
    proc.stdin.close()
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline, "the scan never started"
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 75
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    assert out.startswith(b"4.3.0 mxscan pipe: terminated by a signal")
    assert b"Traceback" not in out + err
    assert pipe.sent() == []


def _unread(pipe: IO[bytes]) -> int:
    """Bytes written to ``pipe`` that the reader has not taken yet (FIONREAD)."""
    count = array.array("i", [0])
    fcntl.ioctl(pipe.fileno(), termios.FIONREAD, count)
    return count[0]


def test_sigterm_while_reading_stdin_defers(pipe: PipeRunner) -> None:
    pipe.write_config(fake_config("accept"))
    proc = pipe.popen("-f", "a@example.org", "--", "b@example.com")
    assert proc.stdin is not None
    proc.stdin.write(MESSAGE[:20])
    proc.stdin.flush()
    # Once mxscan has taken those bytes out of the pipe it is reading stdin (its
    # SIGTERM handler is installed before it reads). A fixed sleep was a guess: on a
    # loaded machine the interpreter could still be starting, and die of the signal.
    deadline = time.monotonic() + 60
    while _unread(proc.stdin) > 0:
        assert time.monotonic() < deadline, "mxscan pipe never read its stdin"
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 75
    assert out.startswith(b"4.3.0 ")
    assert pipe.sent() == []


def test_client_chosen_values_starting_with_a_dash_are_values_not_options(
    pipe: PipeRunner,
) -> None:
    # ${sender} and ${client_helo} come from the SMTP client: "-f -x" must not
    # become a usage error, or the message would be deferred until it expires.
    pipe.write_config(fake_config("accept"))
    proc = pipe.run(
        MESSAGE,
        "--helo",
        "-h",
        "--client-address",
        "",
        "-f",
        "-evil@example.org",
        "--",
        "-r@example.com",
        "--",
        "-h",
    )
    assert proc.returncode == 0, proc
    (sent,) = pipe.sent()
    assert sent.sender == "-evil@example.org"
    assert sent.recipients == ["-r@example.com", "--", "-h"]


# -- this hop's facts -----------------------------------------------------------

QUEUED = (
    b"Received: from mail.example.org (mail.example.org [192.0.2.7])\n"
    b"\tby mx.example.com (Postfix) with ESMTPS id 4Fq2x1Zz3p\n"
    b"\tfor <bob@example.com>; Wed,  2 Dec 2026 20:31:57 +0000 (UTC)\n" + MESSAGE
)


def test_client_facts_come_from_postfixs_received_line_and_the_command_line(
    pipe: PipeRunner, tmp_path: Path
) -> None:
    """pipe(8) mail is queued: Postfix's own Received: line is on top, so the
    scanners are told so (no second line is made up for spamd) and the client
    facts the command line does not give are read from it."""
    facts = tmp_path / "envelope.json"
    pipe.write_config(fake_config("accept", envelope_file=str(facts)))
    proc = pipe.run(QUEUED, "--helo", "given.example", "--sasl-method", "PLAIN",
                    "-f", "a@example.org", "--", "bob@example.com")  # fmt: skip
    assert proc.returncode == 0, proc
    envelope = json.loads(facts.read_text())
    assert envelope["received_in_message"] is True
    assert envelope["client_address"] == "192.0.2.7"
    assert envelope["client_name"] == "mail.example.org"
    assert envelope["helo"] == "given.example"  # the command line wins
    assert envelope["receiver"] == "mx.example.com"
    assert envelope["protocol"] == "ESMTPS"
    assert envelope["queue_id"] == "4Fq2x1Zz3p"
    assert envelope["auth_type"] == "PLAIN"
    (sent,) = pipe.sent()
    assert sent.data == QUEUED


def test_local_submission_has_no_client_facts(pipe: PipeRunner, tmp_path: Path) -> None:
    facts = tmp_path / "envelope.json"
    pipe.write_config(fake_config("accept", envelope_file=str(facts)))
    local = b"Received: by mx.example.com (Postfix, from userid 0)\n\tid 4Fq2; date\n" + MESSAGE
    assert pipe.run(local, "-f", "a@example.org", "--", "bob@example.com").returncode == 0
    envelope = json.loads(facts.read_text())
    assert envelope["client_address"] is None and envelope["received_in_message"] is True
