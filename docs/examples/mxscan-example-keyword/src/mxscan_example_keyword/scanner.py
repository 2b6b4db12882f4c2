"""The scanner: every option is checked in the factory, the body is streamed.

Three habits worth copying: options are validated when the configuration is
loaded (``mxscan config check`` then catches a typo, not the first message);
the body is read in chunks so memory stays flat on a 50 MB message; and the
verdict's ``status`` is short, because it is what the log line shows.
"""

from __future__ import annotations

from collections.abc import Sequence

import mxscan

WHERE = ("subject", "body", "both")


class Keyword:
    """Acts on messages that contain any of ``keywords`` (case-insensitive; in
    the body only for ASCII letters, since the body is bytes in whatever charset
    and transfer encoding the sender chose).

    Options (TOML keys of ``[scanner.NAME]``): ``keywords`` (a list of strings,
    required), ``where`` (``subject``, ``body`` or ``both``), ``action`` (what a
    match turns into), ``reply`` (the SMTP reply text for ``reject``).
    """

    def __init__(
        self,
        *,
        name: str = "example-keyword",
        keywords: Sequence[str],
        where: str = "both",
        action: str = "reject",
        reply: str = "Message refused by content policy",
    ) -> None:
        if isinstance(keywords, str) or not keywords:
            raise mxscan.ConfigError("keywords: expected a non-empty list of strings")
        if not all(isinstance(k, str) and k.strip() for k in keywords):
            raise mxscan.ConfigError("keywords: every keyword must be a non-empty string")
        if where not in WHERE:
            raise mxscan.ConfigError(f"where: expected one of {', '.join(WHERE)}, got {where!r}")
        try:
            self.action = mxscan.Action.parse(action)
        except ValueError as exc:
            raise mxscan.ConfigError(f"action: {exc}") from None
        # One printable line: it goes into the SMTP reply (mxscan.options says so).
        reply = mxscan.options.line("reply", reply)
        self.reply = (
            mxscan.SmtpReply(550, "5.7.1", reply) if self.action is mxscan.Action.REJECT else None
        )
        self.name = name
        self.keywords = tuple(k.lower() for k in keywords)
        self.where = where
        self._needles = tuple(k.encode("utf-8") for k in self.keywords)
        self._overlap = max(len(n) for n in self._needles) - 1

    async def scan(self, message: mxscan.Message) -> mxscan.Verdict:
        found = self._in_subject(message) if self.where != "body" else None
        if found is None and self.where != "subject":
            found = self._in_body(message)
        if found is None:
            return mxscan.Verdict(status="clean")
        return mxscan.Verdict(
            self.action,
            reason=f"keyword {found!r} found",
            status=f"found({found})",
            findings=(found,),
            reply=self.reply,
        )

    def _in_subject(self, message: mxscan.Message) -> str | None:
        subjects = " ".join(message.get_all("Subject")).lower()
        return next((k for k in self.keywords if k in subjects), None)

    def _in_body(self, message: mxscan.Message) -> str | None:
        # Keep the last bytes of each chunk: a keyword may straddle two chunks.
        tail = b""
        for chunk in message.body.chunks():
            window = tail + chunk.lower()
            for keyword, needle in zip(self.keywords, self._needles, strict=True):
                if needle in window:
                    return keyword
            tail = window[-self._overlap :] if self._overlap else b""
        return None

    async def aclose(self) -> None:
        """Nothing to release: a scanner holding connections closes them here."""
