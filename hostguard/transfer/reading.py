"""Reading an import file: its bytes, its text, its JSON, with errors that name the line."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import ngettext

# Enough to fix a file in one go without burying the terminal.
MAX_REPORTED_PROBLEMS = 50


class TransferError(Exception):
    """The file cannot be imported; ``problems`` lists every reason found, ``hint`` what to do about them."""

    def __init__(self, problems: list[str], hint: str = "") -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.hint = hint

    def describe(self, limit: int = MAX_REPORTED_PROBLEMS) -> str:
        """The problems as one message, headed by what happened to the database."""
        count = len(self.problems)
        head = ngettext(
            "Nothing was imported: %(count)d problem.",
            "Nothing was imported: %(count)d problems.",
            count,
        ) % {"count": count}
        lines = [head, *("  - " + problem for problem in self.problems[:limit])]
        if count > limit:
            lines.append("  " + _("… and %(count)d more.") % {"count": count - limit})
        if self.hint:
            lines.append(self.hint)
        return "\n".join(lines)


def read_document(path: str) -> Any:
    """The parsed JSON of ``path`` (``-`` for standard input); raises :class:`TransferError`."""
    source = _("standard input") if path == "-" else path
    try:
        if path == "-":
            buffer = getattr(sys.stdin, "buffer", None)
            raw: bytes | str = buffer.read() if buffer is not None else sys.stdin.read()
        else:
            with open(path, "rb") as handle:
                raw = handle.read()
    except OSError as exc:
        raise TransferError(
            [_("Cannot read %(source)s: %(error)s.") % {"source": source, "error": exc.strerror or exc}]
        ) from None
    if isinstance(raw, str):
        return parse_json(raw, source)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TransferError(
            [_("The text of %(source)s is not UTF-8 (line %(line)d).") % {"source": source, "line": line}]
        ) from None
    return parse_json(text, source)


def parse_json(text: str, source: str = "") -> Any:
    """Parse JSON text, naming the line and column of a syntax error."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise TransferError(
            [
                _("Invalid JSON in %(source)s at line %(line)d, column %(column)d: %(error)s.")
                % {"source": source or _("the file"), "error": exc.msg, "line": exc.lineno, "column": exc.colno}
            ]
        ) from None
    except _DuplicateKey as exc:
        raise TransferError(
            [
                _("The key “%(key)s” appears twice in one object in %(source)s.")
                % {"source": source or _("the file"), "key": exc.key}
            ]
        ) from None


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads silently keeps the last of two equal keys: a second "tenants" list
    # would hide the first.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result
