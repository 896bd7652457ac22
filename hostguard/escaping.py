"""Text a client sent, made safe to show: escaped and bounded. Pure.

What hostguard logs, stores and signals of a request (a malformed Host, a path, a
user agent, a TLS server name) goes through :func:`clean` first, so nothing a client
sends reaches a log file, a terminal or a spreadsheet as-is.
"""

from __future__ import annotations

#: The longest host (or malformed Host value) kept, in characters.
MAX_HOST = 255


def _escape_char(char: str) -> str:
    if char == "\\":
        return "\\\\"
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x100:
        return "\\x%02x" % code
    if code < 0x10000:
        return "\\u%04x" % code
    return "\\U%08x" % code


def clean(value: object, limit: int) -> str:
    """``value`` as text safe for a log line, a database column and a spreadsheet cell.

    Control and format characters (and lone surrogates, which no database stores)
    become ``\\xNN`` / ``\\uNNNN`` escapes, a backslash becomes two; the result has at
    most ``limit`` characters, ending in ``…`` when cut.
    """
    text = value if isinstance(value, str) else str(value)
    text = text[: limit * 4]  # bound the work on hostile input
    if not (text.isascii() and text.isprintable() and "\\" not in text):
        text = "".join(_escape_char(char) for char in text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def raw_host(exc: BaseException) -> str:
    """The offending value of a :class:`~hostguard.hosts.MalformedHost`, escaped and bounded."""
    return clean(exc.args[0] if exc.args else "", MAX_HOST)
