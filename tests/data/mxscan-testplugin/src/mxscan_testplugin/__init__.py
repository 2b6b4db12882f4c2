"""A third-party scanner built only from mxscan's public API, as a plugin author would."""

from __future__ import annotations

import mxscan


class Keyword:
    """Flags messages whose body contains ``keyword``."""

    def __init__(
        self, *, name: str, keyword: str, action: str = "reject", tag: bool = True
    ) -> None:
        if not keyword:
            raise mxscan.ConfigError("keyword: must not be empty")
        self.name = name
        self.keyword = keyword.encode()
        self.action = mxscan.Action.parse(action)
        self.tag = tag

    async def scan(self, message: mxscan.Message) -> mxscan.Verdict:
        found = any(self.keyword in chunk for chunk in message.body.chunks())
        if not found:
            return mxscan.Verdict(status="clean")
        edits = (mxscan.HeaderEdit.add("X-Keyword", self.keyword.decode()),) if self.tag else ()
        return mxscan.Verdict(
            self.action,
            reason=f"body contains {self.keyword.decode()!r}",
            status=f"found({self.keyword.decode()})",
            findings=(self.keyword.decode(),),
            edits=edits,
        )

    async def aclose(self) -> None:
        return None
