"""The scanner: every option is checked in the factory, the body is streamed.

Three habits worth copying: options are declared once and validated when the
configuration is loaded (``mxscan config check`` then catches a typo, not the
first message);
the body is read in chunks so memory stays flat on a 50 MB message; and the
verdict's ``status`` is short, because it is what the log line shows.
"""

from __future__ import annotations

import mxscan


@mxscan.options.check("a list of words", "array")
def _keywords(option: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise mxscan.ConfigError(f"{option}: expected a non-empty list of strings")
    if not all(isinstance(k, str) and k.strip() for k in value):
        raise mxscan.ConfigError(f"{option}: every keyword must be a non-empty string")
    return tuple(k.lower() for k in value)


@mxscan.options.check("an mxscan action: accept, discard, quarantine, tempfail, reject")
def _action(option: str, value: object) -> mxscan.Action:
    if not isinstance(value, str):
        raise mxscan.ConfigError(f"{option}: expected an action name, got {value!r}")
    try:
        return mxscan.Action.parse(value)
    except ValueError as exc:
        raise mxscan.ConfigError(f"{option}: {exc}") from None


class KeywordOptions(mxscan.options.Options):
    """The options of ``[scanner.NAME]`` with ``plugin = "example-keyword"``.

    Each option is declared once: its check, its default as an admin writes it
    in TOML, and one line of meaning. mxscan reads this class to refuse a key
    that is not here, show the defaults in ``mxscan config show`` and document
    the options; the scanner reads checked, typed values from it.
    """

    keywords = mxscan.options.Option(
        _keywords,
        mxscan.options.REQUIRED,
        "the words to look for (case-insensitive; in the body for ASCII letters only)",
    )
    where = mxscan.options.Option(
        mxscan.options.choices("subject", "body", "both"), "both", "where to look for them"
    )
    action = mxscan.options.Option(_action, "reject", "what a message with one of them gets")
    # One printable line: it goes into the SMTP reply (mxscan.options.line says so).
    reply = mxscan.options.Option(
        mxscan.options.line,
        "Message refused by content policy",
        "the text of the 550 reply when `action` is `reject`",
    )


class Keyword:
    """Acts on messages that contain any of ``keywords`` (case-insensitive; in
    the body only for ASCII letters, since the body is bytes in whatever charset
    and transfer encoding the sender chose).

    Options (TOML keys of ``[scanner.NAME]``), declared in ``KeywordOptions``:
    ``keywords`` (a list of strings, required), ``where`` (``subject``,
    ``body`` or ``both``), ``action`` (what a match turns into), ``reply`` (the
    SMTP reply text for ``reject``).
    """

    #: What mxscan reads to check, default and document the options.
    options_class = KeywordOptions

    def __init__(self, *, name: str = "example-keyword", **values: object) -> None:
        options = KeywordOptions.parse(values)
        self.name = name
        self.action = options.action
        self.reply = (
            mxscan.SmtpReply(550, "5.7.1", options.reply)
            if self.action is mxscan.Action.REJECT
            else None
        )
        self.keywords = options.keywords
        self.where = options.where
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
