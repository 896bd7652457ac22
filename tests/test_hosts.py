"""Host parsing (request side) and normalisation (storage side), table-driven.

The request side follows DESIGN.md "Matching rules", rule 2: anything that is not
an LDH name, a dotted-quad IPv4 address or a bracketed IPv6 literal, with an
optional port 1–65535, is malformed (400), never 421. Django's own host-validation
cases are included with the verdict hostguard gives them.
"""

from __future__ import annotations

import pytest
from django.http.request import split_domain_port

from hostguard import hosts
from hostguard.hosts import (
    DEFAULT_PORTS,
    AuthoritySpec,
    HostPort,
    InvalidHost,
    MalformedHost,
    format_authority,
    is_ip,
    normalise_host,
    parse_authority,
    parse_host_header,
    parse_port,
    to_unicode,
)

LABEL_63 = "a" * 63
# Four labels and three dots: 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253.
NAME_253 = f"{LABEL_63}.{LABEL_63}.{LABEL_63}.{'b' * 61}"
NAME_254 = f"{LABEL_63}.{LABEL_63}.{LABEL_63}.{'b' * 62}"


def host_cases(rows: list[tuple[str, HostPort]]) -> list[object]:
    return [pytest.param(value, expected, id=repr(value)[:60]) for value, expected in rows]


def malformed_cases(values: list[str]) -> list[object]:
    return [pytest.param(value, id=repr(value)[:60]) for value in values]


# --- the request side: well-formed ---------------------------------------------------

VALID_HOSTS = [
    ("example.com", HostPort("example.com", None)),
    ("Example.COM", HostPort("example.com", None)),
    ("EXAMPLE.COM:8080", HostPort("example.com", 8080)),
    ("example.com.", HostPort("example.com", None)),
    ("example.com.:80", HostPort("example.com", 80)),
    ("example.com:0080", HostPort("example.com", 80)),
    ("example.com:00443", HostPort("example.com", 443)),
    ("example.com:1", HostPort("example.com", 1)),
    ("example.com:65535", HostPort("example.com", 65535)),
    ("localhost", HostPort("localhost", None)),
    ("localhost:8000", HostPort("localhost", 8000)),
    ("a", HostPort("a", None)),
    ("a-b.c-d.example", HostPort("a-b.c-d.example", None)),
    ("r1---sn-abc.example.net", HostPort("r1---sn-abc.example.net", None)),
    ("123.example", HostPort("123.example", None)),
    ("0x.example", HostPort("0x.example", None)),
    ("example.0xg", HostPort("example.0xg", None)),
    ("0.example", HostPort("0.example", None)),
    ("xn--bcher-kva.example", HostPort("xn--bcher-kva.example", None)),
    (f"{LABEL_63}.com", HostPort(f"{LABEL_63}.com", None)),
    (NAME_253, HostPort(NAME_253, None)),
    (NAME_253 + ".", HostPort(NAME_253, None)),
    (NAME_253 + ".:0000443", HostPort(NAME_253, 443)),
    ("1.2.3.4", HostPort("1.2.3.4", None)),
    ("1.2.3.4:8443", HostPort("1.2.3.4", 8443)),
    ("0.0.0.0", HostPort("0.0.0.0", None)),
    ("255.255.255.255", HostPort("255.255.255.255", None)),
    ("127.0.0.1.", HostPort("127.0.0.1", None)),
    ("[::1]", HostPort("[::1]", None)),
    ("[::1]:8080", HostPort("[::1]", 8080)),
    ("[::1]:0080", HostPort("[::1]", 80)),
    ("[0:0::1]", HostPort("[::1]", None)),
    ("[0000:0000:0000:0000:0000:0000:0000:0001]", HostPort("[::1]", None)),
    ("[::]", HostPort("[::]", None)),
    ("[2001:DB8::A]", HostPort("[2001:db8::a]", None)),
    ("[2001:db8:0:0:1:0:0:1]", HostPort("[2001:db8::1:0:0:1]", None)),
    # IPv4-mapped addresses keep their dotted tail (RFC 5952 §5) on every Python.
    ("[::FFFF:1.2.3.4]", HostPort("[::ffff:1.2.3.4]", None)),
    ("[::ffff:102:304]:443", HostPort("[::ffff:1.2.3.4]", 443)),
    ("[64:ff9b::1.2.3.4]", HostPort("[64:ff9b::102:304]", None)),
]


@pytest.mark.parametrize(("value", "expected"), host_cases(VALID_HOSTS))
def test_well_formed_host(value: str, expected: HostPort) -> None:
    assert parse_host_header(value) == expected


# --- the request side: malformed ----------------------------------------------------

MALFORMED_HOSTS = [
    # empty and structure
    "",
    ".",
    "..",
    ":80",
    "user@host",
    "user:pass@host",
    "@host",
    "a..b",
    ".example.com",
    "example.com..",
    "example..com:80",
    # label syntax
    "-a.com",
    "a-.com",
    "a.-b.com",
    "a.b-.com",
    f"{'a' * 64}.com",
    NAME_254,
    NAME_254 + ".",
    "under_score.example",
    "*.example.com",
    "*",
    "a%2eb",
    "a%2Eb.com",
    "example.com/",
    "example.com\\",
    "example.com?",
    "example.com#",
    # not ASCII: raw UTF-8 arrives as latin-1 text in WSGI; either way it is refused
    "bücher.example",
    "b\xc3\xbccher.example",
    "ｅｘａｍｐｌｅ.com",
    "example\u3002com",
    "ex\u200bample.com",
    "\u0130.com",
    # control characters, spaces, lists
    "a\x00b.com",
    "example.com\x00",
    "a\tb.com",
    "example.com\r\n",
    "example.com\r\nX-Injected: 1",
    "example.com\n",
    "a\x7fb.com",
    "a b.com",
    " example.com",
    "example.com ",
    "example.com :80",
    "example.com: 80",
    "example.com:80 ",
    "a.com,b.com",
    "a.com, b.com",
    # ports
    "host:",
    "host.example:",
    "[::1]:",
    "host:abc",
    "host:0",
    "host:00",
    "host:65536",
    "host:99999",
    "host:4294967377",  # 2**32 + 81: no wrap-around to 81
    "host:-1",
    "host:+80",
    "host:8_0",
    "host:0x50",
    "host:80.0",
    "host:٣",
    "host:８０",
    "host:80:80",
    "example.com:80:80",
    "host:00000000080",  # more leading zeros than any real client sends
    # IPv6
    "[::1",
    "::1",
    "::1:80",
    "2001:db8::1",
    "[::1]x",
    "[::1]:80x",
    "[::1]]",
    "[[::1]]",
    "[]",
    "[:]",
    "[::1::2]",
    "[12345::]",
    "[::g]",
    "[ ::1]",
    "[1.2.3.4]",
    "[example.com]",
    "[fe80::1%eth0]",
    "[fe80::1%25eth0]",
    "[v1.fe]",
    "[vF.addr]",
    "[::1].",
    "[::1]:+80",
    # numeric top label: must be a valid dotted quad
    "1",
    "123",
    "1.2",
    "1.2.3",
    "1.2.3.4.5",
    "010.0.0.1",
    "1.2.3.04",
    "1.2.3.256",
    "256.1.1.1",
    "0x7f.0.0.1",
    "0x7f000001",
    "0x7F000001",
    "example.0x1f",
    "example.0x",
    "2130706433",
    "example.123",
    "a.b.1",
    # very long strings
    "a" * 1000,
    "a." * 500 + "com",
    "x" * 100_000,
    "[" + "1:" * 200 + "]",
    "example.com:" + "8" * 1000,
]


@pytest.mark.parametrize("value", malformed_cases(MALFORMED_HOSTS))
def test_malformed_host(value: str) -> None:
    with pytest.raises(MalformedHost):
        parse_host_header(value)


def test_malformed_host_is_a_value_error() -> None:
    # Callers that only know ValueError (form fields, int-style parsing) still catch it.
    with pytest.raises(ValueError, match="user@host"):
        parse_host_header("user@host")


# --- Django's own host-validation cases -----------------------------------------------
# From django/django tests/requests_tests/tests.py (HostValidationTests: legit_hosts,
# poisoned_hosts, test_host_validation_in_debug_mode, test_get_host_suggestion_of_allowed_host,
# test_split_domain_port_removes_trailing_dot), each with hostguard's verdict.

DJANGO_LEGIT_HOSTS = [
    ("example.com", HostPort("example.com", None)),
    ("example.com:80", HostPort("example.com", 80)),
    ("12.34.56.78", HostPort("12.34.56.78", None)),
    ("12.34.56.78:443", HostPort("12.34.56.78", 443)),
    ("[2001:19f0:feee::dead:beef:cafe]", HostPort("[2001:19f0:feee::dead:beef:cafe]", None)),
    ("[2001:19f0:feee::dead:beef:cafe]:8080", HostPort("[2001:19f0:feee::dead:beef:cafe]", 8080)),
    ("xn--4ca9at.com", HostPort("xn--4ca9at.com", None)),
    ("anything.multitenant.com", HostPort("anything.multitenant.com", None)),
    ("multitenant.com", HostPort("multitenant.com", None)),
    ("insensitive.com", HostPort("insensitive.com", None)),
    ("INSENSITIVE.com", HostPort("insensitive.com", None)),
    ("example.com.", HostPort("example.com", None)),
    ("example.com.:80", HostPort("example.com", 80)),
    ("example.com.:8080", HostPort("example.com", 8080)),
    ("[::ffff:169.254.169.254]", HostPort("[::ffff:169.254.169.254]", None)),
    ("forward.com", HostPort("forward.com", None)),
    ("internal.com:8042", HostPort("internal.com", 8042)),
    ("localhost", HostPort("localhost", None)),
    ("subdomain.localhost", HostPort("subdomain.localhost", None)),
    ("127.0.0.1", HostPort("127.0.0.1", None)),
    ("[::1]", HostPort("[::1]", None)),
    # Django refuses this one only because it is not in ALLOWED_HOSTS: for hostguard
    # it is well-formed, so an unserved "other.com" is a 421, not a 400.
    ("other.com", HostPort("other.com", None)),
]

DJANGO_POISONED_HOSTS = [
    "example.com@evil.tld",
    "example.com:dr.frankenstein@evil.tld",
    "example.com:dr.frankenstein@evil.tld:80",
    "example.com:80/badpath",
    "example.com: recovermypassword.com",
    "example.com..",
    "invalid_hostname.com",
]


@pytest.mark.parametrize(("value", "expected"), host_cases(DJANGO_LEGIT_HOSTS))
def test_django_legit_host(value: str, expected: HostPort) -> None:
    assert parse_host_header(value) == expected


@pytest.mark.parametrize("value", malformed_cases(DJANGO_POISONED_HOSTS))
def test_django_poisoned_host(value: str) -> None:
    with pytest.raises(MalformedHost):
        parse_host_header(value)


# Hosts Django's host_validation_re lets through that rule 2 refuses. The first
# assertion pins that Django really accepts them, so the list cannot rot into one
# that proves nothing about being stricter.
STRICTER_THAN_DJANGO = [
    "a..b",
    "-a.com",
    "a-.com",
    "...",
    f"{'a' * 64}.com",
    NAME_254,
    "1.2.3",
    "010.0.0.1",
    "1.2.3.256",
    "123",
    "example.com:0",
    "example.com:65536",
    "example.com:00000000080",
    "[1:2]",
    "[::1:2:3:4:5:6:7:8]",
    "[0::ffff:1.2.3.4.5]",
]


@pytest.mark.parametrize("value", malformed_cases(STRICTER_THAN_DJANGO))
def test_stricter_than_django(value: str) -> None:
    domain, _port = split_domain_port(value)
    assert domain, "Django accepts this host"
    with pytest.raises(MalformedHost):
        parse_host_header(value)


# --- RFC 3986 / RFC 9110 / RFC 9112 authority grammar ------------------------------------
# authority = [ userinfo "@" ] host [ ":" port ]; reg-name = *( unreserved / pct-encoded /
# sub-delims ). A URI may name hosts no DNS host name can have; rule 2 refuses them.

REG_NAME_ONLY = "!$&'()*+;=~_"


@pytest.mark.parametrize("char", [pytest.param(c, id=f"reg-name {c!r}") for c in REG_NAME_ONLY])
def test_reg_name_characters_are_not_host_name_characters(char: str) -> None:
    with pytest.raises(MalformedHost):
        parse_host_header(f"a{char}b.example")


RFC_AUTHORITY_CASES = [
    "user@example.com",  # RFC 9110 §4.2.4: userinfo is deprecated in http(s) URIs
    ":@example.com",
    "example.com:",  # RFC 3986 allows an empty port; DESIGN.md does not
    "[::1]:",
    "[v7.future]",  # IPvFuture
    "[V1.x:y]",
    "%65xample.com",  # pct-encoded reg-name
    "example.com%3a80",
    "example.com/path",  # a target, not an authority
    "http://example.com",
    "//example.com",
]


@pytest.mark.parametrize("value", malformed_cases(RFC_AUTHORITY_CASES))
def test_uri_authority_forms_that_are_not_hosts(value: str) -> None:
    with pytest.raises(MalformedHost):
        parse_host_header(value)


# --- the memo ------------------------------------------------------------------------------


def test_memo_is_bounded() -> None:
    bound = hosts._PARSED_CACHE_SIZE
    assert bound == 4096
    for i in range(bound + 1500):
        assert parse_host_header(f"h{i}.example") == HostPort(f"h{i}.example", None)
        assert len(hosts._PARSED_CACHE) <= bound
    # After the churn, a fresh host still parses to the right answer.
    assert parse_host_header("Shop.Example:443") == HostPort("shop.example", 443)


def test_memo_returns_the_stored_result() -> None:
    first = parse_host_header("memo.example:8080")
    assert parse_host_header("memo.example:8080") is first


def test_malformed_value_raises_again_when_memoised() -> None:
    for _ in range(3):
        with pytest.raises(MalformedHost):
            parse_host_header("memo..example")
    assert "memo..example" in hosts._PARSED_CACHE


def test_huge_values_are_not_memoised() -> None:
    hosts._PARSED_CACHE.clear()
    for i in range(50):
        with pytest.raises(MalformedHost):
            parse_host_header(f"{i}" + "x" * 10_000)
    assert len(hosts._PARSED_CACHE) == 0


# --- the storage side: normalise_host ----------------------------------------------------

NORMALISED = [
    ("example.com", "example.com"),
    ("  Example.COM.  ", "example.com"),
    ("Bücher.TEST.", "xn--bcher-kva.test"),
    ("bücher.test", "xn--bcher-kva.test"),
    ("BÜCHER.test", "xn--bcher-kva.test"),
    ("xn--bcher-kva.test", "xn--bcher-kva.test"),
    ("XN--BCHER-KVA.TEST", "xn--bcher-kva.test"),
    ("ÖBB.at", "xn--bb-eka.at"),
    ("faß.de", "xn--fa-hia.de"),  # IDNA 2008 non-transitional: ß is kept, not "fass"
    ("ｅｘａｍｐｌｅ．ｃｏｍ", "example.com"),  # fullwidth letters and dot, mapped by UTS 46
    ("example。com", "example.com"),  # ideographic full stop
    ("ＢÜＣＨＥＲ.test", "xn--bcher-kva.test"),
    ("ex\u00adample.com", "example.com"),  # soft hyphen: ignored by UTS 46
    ("日本語.jp", "xn--wgv71a119e.jp"),
    ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
    ("r1---sn-abc.example.net", "r1---sn-abc.example.net"),
    ("ab--cd.bücher.test", "ab--cd.xn--bcher-kva.test"),
    ("localhost", "localhost"),
    ("*.example.com", "*.example.com"),
    ("*.Bücher.TEST.", "*.xn--bcher-kva.test"),
    ("*.a.b.example.com", "*.a.b.example.com"),
    ("1.2.3.4", "1.2.3.4"),
    ("1.2.3.4.", "1.2.3.4"),
    ("::1", "[::1]"),
    ("[::1]", "[::1]"),
    ("[0:0::1]", "[::1]"),
    ("2001:DB8::1", "[2001:db8::1]"),
    ("[2001:db8:0:0:1:0:0:1]", "[2001:db8::1:0:0:1]"),
    ("::FFFF:1.2.3.4", "[::ffff:1.2.3.4]"),
    ("[::ffff:102:304]", "[::ffff:1.2.3.4]"),
    (f"{LABEL_63}.com", f"{LABEL_63}.com"),
    (NAME_253, NAME_253),
]


@pytest.mark.parametrize(("value", "expected"), [pytest.param(v, e, id=repr(v)[:60]) for v, e in NORMALISED])
def test_normalise_host(value: str, expected: str) -> None:
    assert normalise_host(value) == expected
    # Normalising is idempotent: a stored host saved again stays the same.
    assert normalise_host(expected) == expected


INVALID_HOSTS = [
    ("", "enter a host"),
    ("   ", "enter a host"),
    (".", "not a host name"),
    ("a..b", "empty label"),
    ("example.com..", "empty label"),
    (".example.com", "empty label"),
    ("under_score.example", "label"),
    ("-a.com", "hyphen"),
    ("a-.com", "hyphen"),
    ("a b.com", "label"),
    ("a.com,b.com", "label"),
    ("a%2eb.com", "label"),
    (f"{'a' * 64}.com", "63"),
    (NAME_254, "253"),
    ("x" * 5000, "too long"),
    ("1.2.3", "ipv4"),
    ("010.0.0.1", "ipv4"),
    ("1.2.3.256", "ipv4"),
    ("0x7f.0.0.1", "ipv4"),
    ("0x7f000001", "ipv4"),
    ("example.com:80", "port"),
    ("https://example.com", "url"),
    ("xn--zz", "punycode"),
    ("xn--zz.example", "punycode"),
    ("xn--.example", "punycode"),
    ("xn---bbk.example", "punycode"),  # not the canonical encoding of its U-label
    ("💩.la", "U+1F4A9"),
    ("i❤.ws", "U+2764"),
    ("☃.net", "U+2603"),
    ("bü_cher.de", "U+005F"),
    ("bü cher.de", "U+0020"),
    ("a\u200db.bücher.de", "U+200D"),  # a joiner outside the context IDNA allows
    ("\u0627b.example", "right-to-left"),
    ("bü--x.de", "hyphens in 3rd and 4th"),
    ("-bü.de", "hyphen"),
    ("\u0301a.de", "combining"),
    ("ü" * 70 + ".de", "63"),
    ("*", "wildcard"),
    ("*.", "wildcard"),
    ("*.*.b", "wildcard"),
    ("a.*.b", "wildcard"),
    ("*foo.b", "wildcard"),
    ("foo*.b", "wildcard"),
    ("**.b", "wildcard"),
    ("*.1.2.3.4", "wildcard"),
    ("*.[::1]", "wildcard"),
    ("*.::1", "wildcard"),
    ("*." + NAME_253, "253"),
    ("[::1", "unclosed"),
    ("[::1]:80", "port"),
    ("[::1]x", "ipv6"),
    ("[v1.fe]", "ipv6"),
    ("[1.2.3.4]", "ipv6"),
    ("[fe80::1%eth0]", "zone"),
    ("fe80::1%eth0", "zone"),
    ("example.com:80:80", "colon"),
    ("1:2:3", "ipv6"),
]


@pytest.mark.parametrize(("value", "mentions"), [pytest.param(v, m, id=repr(v)[:60]) for v, m in INVALID_HOSTS])
def test_invalid_host_names_the_problem(value: str, mentions: str) -> None:
    with pytest.raises(InvalidHost) as caught:
        normalise_host(value)
    message = caught.value.message
    assert message
    assert str(caught.value) == message
    assert mentions.lower() in message.lower()
    # A message quotes at most a short excerpt of what was pasted.
    assert len(message) < 400


def test_emoji_message_shows_the_character() -> None:
    with pytest.raises(InvalidHost) as caught:
        normalise_host("I❤️.example")
    assert "❤" in caught.value.message
    assert "emoji" in caught.value.message


# --- the storage side: parse_authority ----------------------------------------------------

AUTHORITIES = [
    ("https://Shop.Example:8443/path?q", AuthoritySpec("https", "shop.example", 8443)),
    ("https://shop.example/", AuthoritySpec("https", "shop.example", None)),
    ("https://shop.example#top", AuthoritySpec("https", "shop.example", None)),
    ("https://shop.example?next=a@b", AuthoritySpec("https", "shop.example", None)),
    ("HTTP://X", AuthoritySpec("http", "x", None)),
    ("http://x:80", AuthoritySpec("http", "x", 80)),
    ("//host", AuthoritySpec("", "host", None)),
    ("//host:81/x", AuthoritySpec("", "host", 81)),
    ("host", AuthoritySpec("", "host", None)),
    ("host:8080", AuthoritySpec("", "host", 8080)),
    ("host:008080", AuthoritySpec("", "host", 8080)),
    ("  Host.Example.:443  ", AuthoritySpec("", "host.example", 443)),
    ("[::1]:8080", AuthoritySpec("", "[::1]", 8080)),
    ("[::1]", AuthoritySpec("", "[::1]", None)),
    ("::1", AuthoritySpec("", "[::1]", None)),
    ("https://[0:0::1]:8443/", AuthoritySpec("https", "[::1]", 8443)),
    ("https://Bücher.test/x", AuthoritySpec("https", "xn--bcher-kva.test", None)),
    ("*.example.com:8080", AuthoritySpec("", "*.example.com", 8080)),
    ("https://*.example.com", AuthoritySpec("https", "*.example.com", None)),
    ("1.2.3.4:80", AuthoritySpec("", "1.2.3.4", 80)),
]


@pytest.mark.parametrize(("value", "expected"), [pytest.param(v, e, id=repr(v)[:60]) for v, e in AUTHORITIES])
def test_parse_authority(value: str, expected: AuthoritySpec) -> None:
    assert parse_authority(value) == expected


INVALID_AUTHORITIES = [
    ("", "enter a host"),
    ("ftp://x", "scheme"),
    ("ws://x", "scheme"),
    ("https://", "no host"),
    ("https:///path", "no host"),
    ("https:example.com", "slashes"),
    ("https://user@x", "user"),
    ("https://user:pass@x:8443/", "user"),
    ("user@x", "user"),
    ("x:0", "port"),
    ("x:99999", "port"),
    ("x:65536", "port"),
    ("x:abc", "port"),
    ("x:", "port"),
    ("https://x:", "port"),
    ("x:+80", "port"),
    ("x:٣", "port"),
    ("x:80:80", "colon"),
    ("[::1]:0", "port"),
    ("[::1", "unclosed"),
    ("http://[::1]x", "ipv6"),
    ("https://under_score.example", "label"),
    ("https://💩.la", "U+1F4A9"),
    ("https://*.*.example.com", "wildcard"),
]


@pytest.mark.parametrize(("value", "mentions"), [pytest.param(v, m, id=repr(v)[:60]) for v, m in INVALID_AUTHORITIES])
def test_invalid_authority_names_the_problem(value: str, mentions: str) -> None:
    with pytest.raises(InvalidHost) as caught:
        parse_authority(value)
    assert caught.value.message
    assert mentions.lower() in caught.value.message.lower()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (80, 80), ("80", 80), (" 443 ", 443), ("0080", 80), (1, 1), (65535, 65535)],
)
def test_parse_port(value: str | int | None, expected: int | None) -> None:
    assert parse_port(value) == expected


@pytest.mark.parametrize("value", ["", " ", "0", 0, "65536", 65536, "-1", "+1", "1.0", "abc", "٣", "８０"])
def test_parse_port_refuses(value: str | int) -> None:
    with pytest.raises(InvalidHost) as caught:
        parse_port(value)
    assert "port" in caught.value.message


# --- display helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("xn--bcher-kva.test", "bücher.test"),
        ("*.xn--bcher-kva.test", "*.bücher.test"),
        ("xn--e1afmkfd.xn--p1ai", "пример.рф"),
        ("xn--fa-hia.de", "faß.de"),
        ("example.com", "example.com"),
        ("[::1]", "[::1]"),
        ("1.2.3.4", "1.2.3.4"),
        # An undecodable label (never stored, but possible in a request) is shown as is.
        ("xn--zz.example", "xn--zz.example"),
    ],
)
def test_to_unicode(stored: str, shown: str) -> None:
    assert to_unicode(stored) == shown


@pytest.mark.parametrize("name", ["Bücher.test", "ÖBB.at", "faß.de", "*.пример.рф", "日本語.jp"])
def test_to_unicode_round_trips(name: str) -> None:
    stored = normalise_host(name)
    assert normalise_host(to_unicode(stored)) == stored


@pytest.mark.parametrize(
    ("scheme", "host", "port", "text"),
    [
        ("", "example.com", None, "example.com"),
        ("https", "example.com", None, "https://example.com"),
        ("", "example.com", 8080, "example.com:8080"),
        ("http", "[::1]", 80, "http://[::1]:80"),
        ("", "*.example.com", None, "*.example.com"),
    ],
)
def test_format_authority(scheme: str, host: str, port: int | None, text: str) -> None:
    assert format_authority(scheme, host, port) == text
    assert str(AuthoritySpec(scheme, host, port)) == text
    # What is shown can be pasted back in.
    assert parse_authority(text) == AuthoritySpec(scheme, host, port)


@pytest.mark.parametrize(
    ("host", "expected"),
    [("1.2.3.4", True), ("[::1]", True), ("example.com", False), ("123.example", False), ("localhost", False)],
)
def test_is_ip(host: str, expected: bool) -> None:
    assert is_ip(host) is expected


def test_default_ports() -> None:
    assert DEFAULT_PORTS == {"http": 80, "https": 443}


# --- the two sides agree ------------------------------------------------------------------------

STORABLE = [value for value, expected in NORMALISED if not expected.startswith("*.")] + [
    "a",
    "xn--4ca9at.com",
    "12.34.56.78",
    "2001:19f0:feee::dead:beef:cafe",
    "::ffff:169.254.169.254",
    "::",
]


@pytest.mark.parametrize("value", [pytest.param(v, id=repr(v)[:60]) for v in STORABLE])
def test_request_side_agrees_with_storage_side(value: str) -> None:
    stored = normalise_host(value)
    assert parse_host_header(stored) == HostPort(stored, None)
    assert parse_host_header(f"{stored}:8443") == HostPort(stored, 8443)


# "host:port" is a request authority, not a stored host; and the request side checks
# label syntax only, not punycode, so a bogus A-label is well-formed there (421, not
# 400). These are the only ASCII values staff cannot store that a request may name.
HOST_AND_PORT = {"example.com:80", "[::1]:80"}
BAD_PUNYCODE = {"xn--zz", "xn--zz.example", "xn---bbk.example"}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(v, id=repr(v)[:60])
        for v, _m in INVALID_HOSTS
        if v.isascii() and v not in HOST_AND_PORT | BAD_PUNYCODE
    ],
)
def test_what_cannot_be_stored_cannot_be_requested(value: str) -> None:
    with pytest.raises(MalformedHost):
        parse_host_header(value.strip())


@pytest.mark.parametrize("value", sorted(HOST_AND_PORT))
def test_host_and_port_is_refused_as_a_stored_host_but_read_by_parse_authority(value: str) -> None:
    with pytest.raises(InvalidHost, match="port"):
        normalise_host(value)
    host, port = parse_host_header(value)
    assert parse_authority(value) == AuthoritySpec("", host, port)


@pytest.mark.parametrize("value", sorted(BAD_PUNYCODE))
def test_bad_punycode_is_well_formed_on_the_request_side(value: str) -> None:
    with pytest.raises(InvalidHost, match="punycode"):
        normalise_host(value)
    assert parse_host_header(value) == HostPort(value, None)
