"""A scanner plugin for the pipe tests, loaded by ``python -m mxscan pipe`` through a
real entry point (see ``tests.support.pipe.install_fake_plugin``): the subprocess runs
exactly the code path Postfix would, with verdicts the test chooses."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import attrs

from mxscan import Action, HeaderEdit, Message, Route, ScannerError, SmtpReply, Verdict


class Fake:
    def __init__(
        self,
        *,
        name: str,
        action: str = "accept",
        delay: float = 0.0,
        fail: bool = False,
        header: str = "",
        reply: str = "",
        redirect: str = "",
        bcc: str = "",
        started_file: str = "",
        envelope_file: str = "",
    ) -> None:
        self.name = name
        self.action = Action.parse(action)
        self.delay = delay
        self.fail = fail
        self.header = header
        self.reply = reply
        self.redirect = redirect
        self.bcc = bcc
        self.started_file = started_file
        self.envelope_file = envelope_file

    async def scan(self, message: Message) -> Verdict:
        if self.started_file:
            Path(self.started_file).write_text("scanning\n")  # noqa: ASYNC240 (tiny, test only)
        if self.envelope_file:  # what the adapter told the scanners
            facts = {k: v for k, v in attrs.asdict(message.envelope).items() if k != "macros"}
            Path(self.envelope_file).write_text(json.dumps(facts))  # noqa: ASYNC240
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise ScannerError("connect to inet:127.0.0.1:9 failed: Connection refused")
        reply = None
        if self.reply:
            status, _, text = self.reply.partition(" ")
            reply = SmtpReply(550 if status[0] == "5" else 450, status, text)
        routes = []
        if self.redirect:
            routes.append(Route("redirect", self.redirect))
        if self.bcc:
            routes.append(Route("bcc", self.bcc))
        edits = [HeaderEdit.add("X-Pipe-Fake", self.header)] if self.header else []
        return Verdict(
            self.action,
            reason=f"fake says {self.action}",
            status=str(self.action),
            edits=edits,
            reply=reply,
            routes=routes,
        )

    async def aclose(self) -> None:
        return None


def broken(*, name: str) -> Fake:
    """A factory with a bug (not a config error): the guard must still answer 75."""
    raise RuntimeError("plugin bug")
