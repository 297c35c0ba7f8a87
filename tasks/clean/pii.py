"""PII redaction: e-mail addresses and public IP addresses are replaced by reserved, non-personal ones.

Replacements look like the real thing, as in datatrove's PIIFormatter, so the model sees well-formed
addresses as in any text; unlike datatrove's IP defaults, ours are all reserved for documentation
(RFC 2606 example.com, RFC 5737 192.0.2.0/24, RFC 3849 2001:db8::/32), so they never name a person or a
host. Addresses that identify no one are kept: loopback, private, link-local, documentation and other
non-global ranges, and mail at reserved domains. A dotted quad right after a version cue
("Python 3.11.2.1", "GCC 4.2.1.5") is a version number, not an address.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter

from pydantic import BaseModel, ConfigDict, model_validator

from tasks.clean.steps import TextFix

# Local part and domain as found in running text (not the full RFC 5322 grammar: quoted locals are rare).
# Boundaries are ASCII (plus accented Latin letters in the local part, RFC 6531), not \w: Chinese and
# Japanese write an address right against the text around it ("連絡先はtaro@gmail.comまで").
_LOCAL_CHARS = r"A-Za-z0-9._%+\-\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
_EMAIL = re.compile(
    rf"(?<![{_LOCAL_CHARS}])[{_LOCAL_CHARS}]+@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?\.)+[A-Za-z]{{2,63}})"
    r"(?![A-Za-z0-9-])"
)
# Both address patterns start with a character class and check the character before it in a lookbehind
# (not a leading lookbehind), so the regex engine skips ahead to candidate characters: ~3x faster.
# four dot-separated numbers, not part of a longer dotted name or a word ("1.2.3.4.5", "a1.2.3.4", "4.3.2.1.in-addr")
_IPV4 = re.compile(
    r"[0-9](?<=(?<![A-Za-z0-9_.])[0-9])[0-9]{0,2}\.(?:[0-9]{1,3}\.){2}[0-9]{1,3}(?![A-Za-z0-9_]|\.[A-Za-z0-9_])"
)
# a run of hex digits, colons and dots (two colons at least, checked on the match); ipaddress decides the rest
_IPV6 = re.compile(r"[0-9A-Fa-f:](?<=(?<![A-Za-z0-9_:.])[0-9A-Fa-f:])[0-9A-Fa-f:.]*(?<=[0-9A-Fa-f:])(?![A-Za-z0-9_:])")
# what right before a dotted quad makes it a version: a version word or product name ("Python 3.11.2.1",
# "GCC 4.2.1.5", "v 1.2.3.4") or a product/ in a user agent ("Thunderbird/2.0.0.6")
_VERSION_CUE = re.compile(
    r"(?:\b(?:v|ver|version|release|rev|revision|build|python|gcc|clang|msc|java|node|windows|mozilla|firefox"
    r"|thunderbird|chrome|safari)[\s:]*|\w/)$",
    re.IGNORECASE,
)
PII_COUNTS = ("pii_email", "pii_ip")  # what RedactPii counts; each becomes a statistic of the corpus stage
_CUE_WINDOW = 16  # characters before an address searched for a version cue
# RFC 2606 / RFC 6761 names that never belong to anyone
_RESERVED_DOMAINS = ("example.com", "example.net", "example.org")
_IPV6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_RESERVED_SUFFIXES = (".example", ".invalid", ".test", ".localhost", ".local")


class PiiConfig(BaseModel):
    """Which personal data to redact and what to write instead (datatrove's PIIFormatter: public IPs only)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    enabled: bool = True
    """Redact personal data in every document's text and title."""
    emails: bool = True
    """Replace e-mail addresses (except at reserved domains such as example.com)."""
    ip_addresses: bool = True
    """Replace public IPv4 and IPv6 addresses (private, loopback and documentation ranges are kept)."""
    email_replacement: str = "email@example.com"  # RFC 2606 reserved domain
    """Text written in place of an e-mail address; must not itself be redacted."""
    ipv4_replacement: str = "192.0.2.1"  # RFC 5737 TEST-NET-1, reserved for documentation
    """Text written in place of a public IPv4 address; must not itself be redacted."""
    ipv6_replacement: str = "2001:db8::1"  # RFC 3849 documentation prefix
    """Text written in place of a public IPv6 address; must not itself be redacted."""

    @model_validator(mode="after")
    def _replacements_are_not_pii(self) -> PiiConfig:
        # redaction must be idempotent: a cleaned snapshot cleaned again changes nothing
        defaults = PiiConfig.model_construct()  # unvalidated defaults: a probe that redacts everything
        problems = []
        for field in ("email_replacement", "ipv4_replacement", "ipv6_replacement"):
            probe = RedactPii(defaults)
            probe.fix(getattr(self, field))
            if probe.counts.total():
                problems.append(f"{field}={getattr(self, field)!r} would itself be redacted; "
                                f"use a reserved value such as {getattr(defaults, field)!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def is_personal_email(domain: str) -> bool:
    """False for mail at domains reserved for examples and tests (RFC 2606, RFC 6761)."""
    domain = domain.lower()
    return domain not in _RESERVED_DOMAINS and not domain.endswith(_RESERVED_SUFFIXES) and not any(
        domain.endswith("." + reserved) for reserved in _RESERVED_DOMAINS)


def is_public_ip(text: str) -> bool:
    """True for a valid, globally routable IPv4 or IPv6 address (not loopback, private, documentation...)."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    # IPv6: only 2000::/3 is allocated for global unicast; "is_global" alone accepts e.g. "a::b" (C++-like text)
    return address.is_global and (address.version == 4 or address in _IPV6_GLOBAL_UNICAST)


class RedactPii(TextFix):
    """Replace e-mail and public IP addresses; counts["pii_email"], counts["pii_ip"] say how many."""

    name = "pii"

    def __init__(self, cfg: PiiConfig) -> None:
        self.cfg = cfg
        self.counts: Counter[str] = Counter(dict.fromkeys(PII_COUNTS, 0))

    def fix(self, text: str) -> str:
        if not self.cfg.enabled:
            return text
        if self.cfg.emails and "@" in text:
            text = _EMAIL.sub(self._email, text)
        if self.cfg.ip_addresses:
            if "." in text:
                text = _IPV4.sub(self._ipv4, text)
            if ":" in text:
                text = _IPV6.sub(self._ipv6, text)
        return text

    def _email(self, match: re.Match[str]) -> str:
        if not is_personal_email(match.group(1)):
            return match.group(0)
        self.counts["pii_email"] += 1
        return self.cfg.email_replacement

    def _ipv4(self, match: re.Match[str]) -> str:
        before = match.string[max(0, match.start() - _CUE_WINDOW):match.start()]
        if not is_public_ip(match.group(0)) or _VERSION_CUE.search(before):
            return match.group(0)
        self.counts["pii_ip"] += 1
        return self.cfg.ipv4_replacement

    def _ipv6(self, match: re.Match[str]) -> str:
        if match.group(0).count(":") < 2 or not is_public_ip(match.group(0)):
            return match.group(0)
        self.counts["pii_ip"] += 1
        return self.cfg.ipv6_replacement
