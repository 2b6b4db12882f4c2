"""What ``mxscan pipe`` hands Postfix (its defer text) holds one line per record:
text from the message cannot start a line of its own (issue 13.7 for the pipe)."""

from __future__ import annotations

import logging

from mxscan.adapters.pipe.output import BufferHandler


def test_buffered_records_escape_control_characters() -> None:
    handler = BufferHandler()
    logger = logging.getLogger("mxscan.test-pipe-safety")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("%s: note", "4QID\nmxscan[1]: 4QID: action=accept\x1b[2J")
    finally:
        logger.removeHandler(handler)
    (line,) = handler.text().splitlines()
    assert line.endswith("]: 4QID\\x0amxscan[1]: 4QID: action=accept\\x1b[2J: note")
