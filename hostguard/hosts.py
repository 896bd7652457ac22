"""Parsing and normalisation of hosts and authorities. Pure: no database, no settings.

Two directions meet here:

* the request side (:func:`parse_host_header`) is strict and fast — anything that is
  not an LDH host name, a dotted-quad IPv4 address or a bracketed IPv6 literal, with
  an optional port, is malformed;
* the storage side (:func:`normalise_host`, :func:`parse_authority`) is forgiving about
  what staff paste (Unicode, upper case, URLs) and precise about what is wrong.

Both end in the same canonical form, so a stored host and a request host compare
as plain strings.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from typing import NamedTuple

import idna
from django.utils.translation import gettext as _

MAX_HOST_LENGTH = 253
MAX_LABEL_LENGTH = 63
DEFAULT_PORTS = {"http": 80, "https": 443}
SCHEMES = ("http", "https")

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME_RE = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}")
_LABEL_RE = re.compile(_LABEL)
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_PORT_RE = re.compile(r"[0-9]{1,10}")
_HEX_NUMBER_RE = re.compile(r"0x[0-9a-f]*")


class MalformedHost(ValueError):
    """A request's authority that no server could be configured to answer for."""


class InvalidHost(ValueError):
    """A host or authority that staff entered and that cannot be stored.

    ``message`` is translatable and names the problem precisely enough to fix it.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HostPort(NamedTuple):
    host: str
    port: int | None


class AuthoritySpec(NamedTuple):
    """``[scheme://]host[:port]`` as stored: ``scheme`` is ``''`` for any scheme."""

    scheme: str
    host: str
    port: int | None

    def __str__(self) -> str:
        return format_authority(self.scheme, self.host, self.port)


def format_authority(scheme: str, host: str, port: int | None) -> str:
    text = f"{scheme}://{host}" if scheme else host
    return f"{text}:{port}" if port is not None else text


def default_port(scheme: str) -> int:
    return DEFAULT_PORTS[scheme]


# --- the request side -------------------------------------------------------------

_MALFORMED = object()
_PARSED_CACHE: dict[str, object] = {}
_PARSED_CACHE_SIZE = 4096
# 253 for the name, a trailing dot, a colon and a port with a few leading zeros.
_MAX_HEADER_LENGTH = 270


def parse_host_header(value: str) -> HostPort:
    """Parse a Host header (or authority of an absolute-form target).

    Returns the canonical host and the port (``None`` when absent); raises
    :class:`MalformedHost`. Results are memoised in a bounded map: real traffic
    repeats a handful of hosts, and a flood of distinct ones only churns the map.
    """
    cached = _PARSED_CACHE.get(value)
    if cached is None:
        if len(value) > _MAX_HEADER_LENGTH:
            # Refused without being memoised, so a flood of huge headers cannot make
            # the map hold megabytes of junk.
            raise MalformedHost(value[:_MAX_HEADER_LENGTH])
        try:
            cached = _parse_host_header(value)
        except MalformedHost:
            cached = _MALFORMED
        if len(_PARSED_CACHE) >= _PARSED_CACHE_SIZE:
            _PARSED_CACHE.clear()
        _PARSED_CACHE[value] = cached
    if cached is _MALFORMED:
        raise MalformedHost(value)
    return cached  # type: ignore[return-value]


def _parse_host_header(value: str) -> HostPort:
    if not value or not value.isascii():
        raise MalformedHost(value)
    if value[0] == "[":
        end = value.find("]")
        if end < 0:
            raise MalformedHost(value)
        host = _ipv6_literal(value[1:end])
        if host is None:
            raise MalformedHost(value)
        rest = value[end + 1 :]
        if not rest:
            return HostPort(host, None)
        if rest[0] != ":":
            raise MalformedHost(value)
        return HostPort(host, request_port(rest[1:], value))
    name, colon, port_text = value.partition(":")
    name = name.lower()
    if name.endswith("."):
        name = name[:-1]
    if not _is_hostname_or_ipv4(name):
        raise MalformedHost(value)
    return HostPort(name, request_port(port_text, value) if colon else None)


def request_port(text: str, value: str) -> int:
    """A port from a request (Host, X-Forwarded-Port): 1–65535, leading zeros allowed.

    Raises :class:`MalformedHost` naming ``value`` otherwise.
    """
    if not _PORT_RE.fullmatch(text):
        raise MalformedHost(value)
    port = int(text)
    if not 1 <= port <= 65535:
        raise MalformedHost(value)
    return port


def _is_hostname_or_ipv4(name: str) -> bool:
    if len(name) > MAX_HOST_LENGTH or not _HOSTNAME_RE.fullmatch(name):
        return False
    last = name.rpartition(".")[2]
    if last.isdigit() or _HEX_NUMBER_RE.fullmatch(last):
        # An all-numeric top label is never a domain name (RFC 3696 §2): it must be
        # an IPv4 address, and a dotted quad at that (no "1.2.3", no "010.0.0.1").
        # "0x7f000001" counts as numeric too: browsers (the WHATWG URL standard) and
        # inet_aton read it as 127.0.0.1.
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            return False
    return True


def _ipv6_literal(text: str) -> str | None:
    """``[canonical]`` for an IPv6 address, ``None`` otherwise (zone ids refused)."""
    if "%" in text or ":" not in text:
        return None
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return None
    # Spelled out rather than left to ipaddress, whose text for IPv4-mapped
    # addresses changed in Python 3.13 (::ffff:102:304 became ::ffff:1.2.3.4): rows
    # written by one Python must match requests parsed by another. RFC 5952 §5.
    mapped = address.ipv4_mapped
    if mapped is not None:
        return f"[::ffff:{mapped}]"
    return f"[{address.compressed}]"


def is_ip(host: str) -> bool:
    if host.startswith("["):
        return True
    last = host.rpartition(".")[2]
    return last.isdigit()


# --- the storage side ---------------------------------------------------------------


def normalise_host(value: str) -> str:
    """The canonical form of a host pattern staff entered; raises :class:`InvalidHost`.

    Accepts Unicode names (IDNA 2008 with UTS 46 mapping), any case, one trailing
    dot, ``*.`` wildcards, IPv4 addresses and IPv6 literals with or without brackets.
    """
    text = value.strip()
    if not text:
        raise InvalidHost(_("Enter a host name."))
    if len(text) > _MAX_INPUT_LENGTH:
        raise _too_long(value)
    if "://" in text:
        raise InvalidHost(
            _("“%(host)s” is a URL: enter only the host name, as in example.com.") % {"host": _shorten(value)}
        )
    wildcard = text.startswith("*.")
    name = text[2:] if wildcard else text
    if wildcard and (name.startswith("[") or name.count(":") > 1):
        raise InvalidHost(_("A wildcard cannot be combined with an IP address."))
    if name.startswith("[") or name.count(":") > 1:
        return _normalise_ipv6(name, value)
    if ":" in name:
        raise InvalidHost(
            _("“%(host)s” contains a colon: give the port in its own field or as host:port.")
            % {"host": _shorten(value)}
        )
    if "*" in name:
        raise InvalidHost(_("A wildcard is allowed only as the whole leftmost label, as in *.example.com."))
    if name.endswith("."):
        name = name[:-1]
    if not name:
        if wildcard:
            raise InvalidHost(_("“%(host)s” has no domain name after the wildcard.") % {"host": _shorten(value)})
        raise InvalidHost(
            _("“%(host)s” is not a host name: enter one such as example.com.") % {"host": _shorten(value)}
        )
    name = _to_ascii(name, value)
    _check_labels(name, value, wildcard)
    if wildcard:
        if is_ip(name):
            raise InvalidHost(_("A wildcard cannot be combined with an IP address."))
        return "*." + name
    return name


# Unicode input can shrink under UTS 46 (ignored characters), so allow some slack
# over 253, but not enough to make IDNA processing of a pasted essay expensive.
_MAX_INPUT_LENGTH = 1024


def _too_long(original: str) -> InvalidHost:
    return InvalidHost(
        _("“%(host)s” is too long: a host name has at most %(limit)d characters.")
        % {"host": _shorten(original), "limit": MAX_HOST_LENGTH}
    )


def _shorten(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "…"


def _normalise_ipv6(text: str, original: str) -> str:
    bracketed = text.startswith("[")
    if bracketed and not text.endswith("]"):
        if "]" not in text:
            raise InvalidHost(_("“%(host)s” has an unclosed “[”.") % {"host": _shorten(original)})
        raise InvalidHost(
            _("“%(host)s” has text after the IPv6 address: give the port in its own field or as [address]:port.")
            % {"host": _shorten(original)}
        )
    literal = text[1:-1] if bracketed else text
    if "%" in literal:
        raise InvalidHost(
            _("“%(host)s” has an IPv6 zone index (%%…): zone indexes are local to one machine, not part of a host.")
            % {"host": _shorten(original)}
        )
    host = _ipv6_literal(literal)
    if host is not None:
        return host
    if bracketed:
        raise InvalidHost(_("“%(host)s” is not a valid IPv6 address.") % {"host": _shorten(original)})
    raise InvalidHost(
        _(
            "“%(host)s” has more than one colon but is not a valid IPv6 address; "
            "a host name takes at most one, before the port."
        )
        % {"host": _shorten(original)}
    )


def _to_ascii(name: str, original: str) -> str:
    """Each label in A-label form; ASCII labels are only lower-cased here."""
    if name.isascii():
        name = name.lower()
    else:
        try:
            name = idna.uts46_remap(name, std3_rules=False)
        except idna.IDNAError as exc:
            raise _idna_error(exc, original, original) from None
    labels = []
    for label in name.split("."):
        if label.isascii():
            if label.startswith("xn--"):
                try:
                    idna.ulabel(label)
                except (idna.IDNAError, UnicodeError):
                    raise InvalidHost(
                        _("“%(label)s” is not a valid internationalised label (punycode).") % {"label": _shorten(label)}
                    ) from None
        else:
            # Plain LDH labels skip IDNA on purpose: real host names such as
            # r1---sn-x.example have "--" in 3rd and 4th position, which IDNA 2008
            # reserves, and the request side accepts them.
            try:
                label = idna.alabel(label).decode("ascii")
            except (idna.IDNAError, UnicodeError) as exc:
                raise _idna_error(exc, label, original) from None
        labels.append(label)
    return ".".join(labels)


def _idna_error(exc: Exception, label: str, original: str) -> InvalidHost:
    """A precise, translatable message for an IDNA failure in ``label``."""
    codepoint = getattr(exc, "codepoint", None)
    code = getattr(exc, "code", None)
    if isinstance(exc, idna.IDNABidiError):
        return InvalidHost(
            _("The label “%(label)s” mixes right-to-left and left-to-right text in a way domain names do not allow.")
            % {"label": _shorten(label)}
        )
    if code == "label_too_long":
        return InvalidHost(
            _("The label “%(label)s” is too long: a label has at most 63 characters once encoded in punycode.")
            % {"label": _shorten(label)}
        )
    if code == "hyphen_3_4":
        return InvalidHost(
            _("The label “%(label)s” has hyphens in 3rd and 4th position, which internationalised labels may not have.")
            % {"label": _shorten(label)}
        )
    if code == "hyphen_start_end":
        return InvalidHost(_("The label “%(label)s” may not start or end with a hyphen.") % {"label": _shorten(label)})
    if code == "leading_combiner":
        return InvalidHost(_("The label “%(label)s” starts with a combining mark.") % {"label": _shorten(label)})
    if isinstance(exc, idna.InvalidCodepoint | idna.InvalidCodepointContext) and isinstance(codepoint, int):
        params = {"host": _shorten(original), "char": chr(codepoint), "codepoint": "U+%04X" % codepoint}
        if isinstance(exc, idna.InvalidCodepointContext):
            return InvalidHost(
                _("“%(host)s” contains “%(char)s” (%(codepoint)s) where domain names do not allow it.") % params
            )
        return InvalidHost(
            _(
                "“%(host)s” contains “%(char)s” (%(codepoint)s), which domain names cannot contain: "
                "no emoji, symbols, spaces or punctuation other than hyphens."
            )
            % params
        )
    return InvalidHost(_("“%(host)s” is not a valid internationalised domain name.") % {"host": _shorten(original)})


def _check_labels(name: str, original: str, wildcard: bool) -> None:
    limit = MAX_HOST_LENGTH - 2 if wildcard else MAX_HOST_LENGTH
    if len(name) > limit:
        raise _too_long(original)
    for label in name.split("."):
        if not label:
            raise InvalidHost(_("“%(host)s” has an empty label (two dots in a row).") % {"host": _shorten(original)})
        if len(label) > MAX_LABEL_LENGTH:
            raise InvalidHost(
                _("The label “%(label)s” is too long: a label has at most 63 characters.") % {"label": _shorten(label)}
            )
        if not _LABEL_RE.fullmatch(label):
            raise InvalidHost(
                _(
                    "The label “%(label)s” may contain only letters, digits and hyphens, "
                    "and may not start or end with a hyphen."
                )
                % {"label": _shorten(label)}
            )
    if not _is_hostname_or_ipv4(name):
        raise InvalidHost(
            _("“%(host)s” is neither a host name nor an IPv4 address (a.b.c.d).") % {"host": _shorten(original)}
        )


def parse_authority(value: str) -> AuthoritySpec:
    """Parse ``[scheme://]host[:port]`` — or a pasted URL — into what an authority stores.

    A path, query or fragment after the authority is ignored; userinfo and schemes
    other than http and https are refused. Raises :class:`InvalidHost`.
    """
    text = value.strip()
    if not text:
        raise InvalidHost(_("Enter a host name."))
    scheme = ""
    match = _SCHEME_RE.match(text)
    if match and text[match.end() : match.end() + 2] == "//":
        scheme = match.group(1).lower()
        if scheme not in SCHEMES:
            raise InvalidHost(_("The scheme “%(scheme)s” is not served: use http or https.") % {"scheme": scheme})
        text = text[match.end() + 2 :]
        if not text or text[0] in "/?#":
            raise InvalidHost(_("“%(value)s” has a scheme but no host.") % {"value": _shorten(value)})
    elif text.startswith("//"):
        text = text[2:]
    elif match and match.group(1).lower() in SCHEMES and not text[match.end() :].strip().isdigit():
        # "https:example.com" is a mistyped URL, not the host "https" on a port.
        raise InvalidHost(
            _("“%(value)s” lacks the two slashes after the scheme: write it as %(scheme)s://host.")
            % {"value": _shorten(value), "scheme": match.group(1).lower()}
        )
    authority = re.split(r"[/?#]", text, maxsplit=1)[0]
    if "@" in authority:
        raise InvalidHost(_("User names and passwords (user@host) are not part of a host."))
    host_text, port = _split_port(authority, value)
    return AuthoritySpec(scheme, normalise_host(host_text), port)


def _split_port(authority: str, original: str) -> tuple[str, int | None]:
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise InvalidHost(_("“%(value)s” has an unclosed “[”.") % {"value": _shorten(original)})
        host_text, rest = authority[: end + 1], authority[end + 1 :]
        if not rest:
            return host_text, None
        if rest[0] != ":":
            raise InvalidHost(
                _("Unexpected text after the IPv6 address in “%(value)s”.") % {"value": _shorten(original)}
            )
        return host_text, parse_port(rest[1:])
    if authority.count(":") > 1:
        return authority, None  # an IPv6 address without brackets cannot carry a port
    host_text, colon, port_text = authority.partition(":")
    return host_text, parse_port(port_text) if colon else None


def parse_port(text: str | int | None) -> int | None:
    """A port from a form or file: ``None`` means any port; otherwise 1–65535."""
    if text is None:
        return None
    raw = str(text).strip()
    if not raw:
        raise InvalidHost(_("The port is empty: remove the colon or give a port from 1 to 65535."))
    if not _PORT_RE.fullmatch(raw) or not 1 <= int(raw) <= 65535:
        raise InvalidHost(_("“%(port)s” is not a port: use a number from 1 to 65535.") % {"port": _shorten(raw)})
    return int(raw)


def to_unicode(host: str) -> str:
    """The human form of a stored host (``xn--bcher-kva.example`` → ``bücher.example``)."""
    if "xn--" not in host:
        return host
    labels = []
    for label in host.split("."):
        if label.startswith("xn--"):
            with contextlib.suppress(idna.IDNAError, UnicodeError):
                label = idna.decode(label)
        labels.append(label)
    return ".".join(labels)
