"""``host_matches`` (the allowlist and the token's scope) against a reference rule written here.

The URLs are *built* from parts (scheme, user-info, host, port), so the host a client would
connect to is known without parsing the URL; the reference decides on those parts, label by
label (``core.access.earthdata`` compares strings). Hosts are mutated the ways an attacker or a sloppy
link would: a missing dot before the suffix, an extra trailing label, user-info, ports, mixed
case, IDNA labels, trailing dots.
"""
from __future__ import annotations

import re

import pytest
import requests
import urllib3
from hypothesis import example, given, settings, strategies as st

from core.access.earthdata import host_matches
from core.config import EARTHDATA_HOSTS, EXTRA_ALLOWED_HOSTS

LOOPBACK = ("127.0.0.1:5000", "[::1]:5000")
PATTERNS = (*EARTHDATA_HOSTS, *EXTRA_ALLOWED_HOSTS, *LOOPBACK)
DEFAULT_PORT = {"http": 80, "https": 443}


def reference(scheme: str, host: str | None, port: int | None, patterns=PATTERNS) -> bool:
    """Whether a request to (scheme, host, port) may go out, decided on DNS labels.

    ``host`` is the ASCII host the client connects to (None: not a valid host name). A host with
    an empty label (a trailing dot included) fails closed. ``host:port`` patterns are exact (the
    loopback sandbox, http or https); a bare name is HTTPS on 443 only; ``*.suffix`` is any name
    with at least one label before the suffix's labels."""
    scheme = scheme.lower()
    if host is None or scheme not in DEFAULT_PORT:
        return False
    host = host.lower()
    port = DEFAULT_PORT[scheme] if port is None else port
    labels = host.split(".")
    if "" in labels:
        return False
    for pattern in patterns:
        pattern = pattern.lower()
        if re.fullmatch(r".+:[0-9]+", pattern):
            name, pport = pattern.rsplit(":", 1)
            if host == name and port == int(pport):
                return True
            continue
        if scheme != "https" or port != 443:
            continue
        plabels = pattern.split(".")
        if plabels[0] == "*":
            suffix = plabels[1:]
            if len(labels) > len(suffix) and labels[-len(suffix):] == suffix:
                return True
        elif labels == plabels:
            return True
    return False


def ascii_host(host: str) -> str | None:
    """The name a client puts on the wire: IDNA (Python's own codec, not the idna package)."""
    if host.isascii():
        return host.lower()
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return None


# --------------------------------------------------------------------------- strategies
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
unicode_label = st.sampled_from(["bücher", "médiathèque", "δοκιμή", "пример", "数据"])
# every allowlisted name, with the wildcards' suffixes as bases too
BASES = sorted({p.rsplit(":", 1)[0].removeprefix("*.") for p in PATTERNS})


@st.composite
def hosts(draw) -> str:
    base = draw(st.sampled_from(BASES))
    how = draw(st.sampled_from(["exact", "subdomain", "missing_dot", "extra_label", "trailing_dot",
                                "idna_subdomain", "idna_missing_dot", "dot_lookalike", "replace_label"]))
    lbl = draw(label)
    if how == "subdomain":
        host = f"{lbl}.{base}"
    elif how == "missing_dot":  # evil-s3.us-west-2.amazonaws.com, evilurs.earthdata.nasa.gov
        host = draw(st.sampled_from([lbl, lbl + "-", "evil-", "x"])) + base
    elif how == "extra_label":  # urs.earthdata.nasa.gov.evil.com
        host = f"{base}.{lbl}" + draw(st.sampled_from(["", ".com", ".amazonaws.com"]))
    elif how == "trailing_dot":
        host = draw(st.sampled_from([base, f"{lbl}.{base}"])) + "."
    elif how == "idna_subdomain":
        host = f"{draw(unicode_label)}.{base}"
    elif how == "idna_missing_dot":
        host = draw(unicode_label) + base
    elif how == "dot_lookalike":  # IDEOGRAPHIC / FULLWIDTH FULL STOP in place of the dot
        host = lbl + draw(st.sampled_from(["\u3002", "\uff0e", "\uff61"])) + base
    elif how == "replace_label":  # same shape, one label swapped: data.nsidc.earthdatacloud.nasa.evil
        parts = base.split(".")
        i = draw(st.integers(0, len(parts) - 1))
        parts[i] = lbl
        host = ".".join(parts)
    else:
        host = base
    if draw(st.booleans()):  # mixed case
        flips = draw(st.lists(st.booleans(), min_size=len(host), max_size=len(host)))
        host = "".join(c.upper() if f else c for c, f in zip(host, flips))
    return host


userinfo = st.sampled_from(["", "user@", "user:pw@", "urs.earthdata.nasa.gov@", "x.s3.us-west-2.amazonaws.com@",
                            "127.0.0.1:5000@"])
ports = st.sampled_from([None, 443, 80, 5000, 5001, 8443])
schemes = st.sampled_from(["https", "http", "HTTPS", "Http", "ftp", "file"])


def build(scheme, user, host, port) -> str:
    return f"{scheme}://{user}{host}{'' if port is None else f':{port}'}/path?x=1"


@settings(max_examples=1500, deadline=None)
@given(scheme=schemes, user=userinfo, host=hosts(), port=ports,
       patterns=st.permutations(PATTERNS + ("", " ")))  # blanks, as a comma-separated setting leaves
@example(scheme="https", user="", host="bucket.s3.us-west-2.amazonaws.com", port=None,  # the positive case
         patterns=PATTERNS)
def test_host_matches_agrees_with_the_reference_rule(scheme, user, host, port, patterns):
    """Neither the order of the patterns nor blank ones matter."""
    url = build(scheme, user, host, port)
    expected = reference(scheme, ascii_host(host), port)
    got = host_matches(url, patterns)
    if host.isascii():
        assert got == expected, url
    else:
        # a non-ASCII name may be refused where the reference would allow its IDNA form (the
        # client may refuse it too), but never allowed where the reference refuses it
        assert not got or expected, url


def test_reference_rule_examples():
    """The reference itself, on the cases the property test is about."""
    assert reference("https", "bucket.s3.us-west-2.amazonaws.com", None)
    assert not reference("https", "evil-s3.us-west-2.amazonaws.com", None)
    assert not reference("https", "s3.us-west-2.amazonaws.com.evil.com", None)
    assert reference("https", "s3.us-west-2.amazonaws.com", 443)
    assert not reference("https", "urs.earthdata.nasa.gov.", None)
    assert not reference("http", "urs.earthdata.nasa.gov", None)
    assert reference("http", "127.0.0.1", 5000) and not reference("http", "127.0.0.1", 5001)
    assert reference("http", "[::1]", 5000) and not reference("https", "[::1]", 443)
    assert reference("https", ascii_host("bücher.s3.us-west-2.amazonaws.com"), None)


def test_idna_subdomain_under_a_wildcard_is_allowed():
    assert host_matches("https://bücher.s3.us-west-2.amazonaws.com/k", PATTERNS)
    assert host_matches("https://xn--bcher-kva.s3.us-west-2.amazonaws.com/k", PATTERNS)


def _connects_to(url: str) -> tuple[str, str | None, int | None] | None:
    """(scheme, host, port) that requests + urllib3 would open for ``url``; None if refused."""
    try:
        parts = urllib3.util.parse_url(requests.Request("GET", url).prepare().url)
    except (requests.exceptions.RequestException, ValueError, urllib3.exceptions.LocationParseError):
        return None
    return parts.scheme or "", parts.host, parts.port


@pytest.mark.parametrize("url", [
    "https://evil.com\\@urs.earthdata.nasa.gov/x",  # WHATWG/urllib3: backslash ends the authority
    "https://evil.com#@urs.earthdata.nasa.gov/",
    "https://evil.com?@urs.earthdata.nasa.gov/",
    "https://evil.com%2f@urs.earthdata.nasa.gov/",
    "https://urs.earthdata.nasa.gov@evil.com/",
    "https://urs.earthdata.nasa.gov\t.evil.com/",
    "https://urs.earthdata.nasa.gov%00.evil.com/",
    "https://urs.earthdata.nasa.gov:+443/",
    "https://urs.earthdata.nasa.gov:0443/",
    "https://evil\uff0es3.us-west-2.amazonaws.com/",
    "https://[::1]:5000/",
    "http://[::1]:5000/",
    "http://[0:0::1]:5000/",
    "HTTPS://URS.EARTHDATA.NASA.GOV/",
])
def test_host_matches_judges_the_host_the_client_connects_to(url):
    """Parser differentials: the allowlist must judge the host requests/urllib3 would open."""
    target = _connects_to(url)
    expected = target is not None and reference(target[0], target[1], target[2])
    assert host_matches(url, PATTERNS) == expected, (url, target)
