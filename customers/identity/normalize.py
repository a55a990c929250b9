"""Normalization of identifying values. Pure functions, no ORM.

Deterministic keys compare normalized values only, so every path (ingest, batch, search)
must normalize through this module.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from functools import lru_cache

import phonenumbers
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.util import get_cc_module

# Free-mail and ISP domains: shared by unrelated people, so never an organization key.
FREE_MAIL_DOMAINS = frozenset(
    [
        "gmail.com",
        "googlemail.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.fr",
        "yahoo.de",
        "ymail.com",
        "hotmail.com",
        "hotmail.co.uk",
        "hotmail.fr",
        "hotmail.de",
        "outlook.com",
        "live.com",
        "msn.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "gmx.de",
        "gmx.net",
        "gmx.com",
        "web.de",
        "t-online.de",
        "freenet.de",
        "mail.com",
        "mail.ru",
        "yandex.ru",
        "yandex.com",
        "protonmail.com",
        "proton.me",
        "zoho.com",
        "qq.com",
        "163.com",
        "126.com",
        "orange.fr",
        "free.fr",
        "laposte.net",
        "sfr.fr",
        "wanadoo.fr",
        "libero.it",
        "virgilio.it",
        "btinternet.com",
        "sky.com",
        "comcast.net",
        "verizon.net",
        "att.net",
        "sbcglobal.net",
        "bigpond.com",
        "shaw.ca",
        "rogers.com",
        "fastmail.com",
        "hey.com",
        "example.com",
        "example.org",
        "example.net",
    ]
)

# Providers that ignore dots and "+tags" in the local part.
_GMAIL_LIKE = frozenset({"gmail.com", "googlemail.com"})
_PLUS_TAG_PROVIDERS = _GMAIL_LIKE | frozenset(
    {
        "outlook.com",
        "hotmail.com",
        "live.com",
        "icloud.com",
        "me.com",
        "fastmail.com",
        "protonmail.com",
        "proton.me",
        "yahoo.com",
    }
)

_COUNTRY_ALIASES = {
    "uk": "GB",
    "united kingdom": "GB",
    "great britain": "GB",
    "england": "GB",
    "usa": "US",
    "united states": "US",
    "united states of america": "US",
    "us": "US",
    "deutschland": "DE",
    "germany": "DE",
    "france": "FR",
    "spain": "ES",
    "españa": "ES",
    "italy": "IT",
    "italia": "IT",
    "netherlands": "NL",
    "the netherlands": "NL",
    "nederland": "NL",
    "canada": "CA",
    "australia": "AU",
    "ireland": "IE",
    "austria": "AT",
    "österreich": "AT",
    "switzerland": "CH",
    "schweiz": "CH",
    "belgium": "BE",
    "sweden": "SE",
    "denmark": "DK",
    "norway": "NO",
    "poland": "PL",
    "portugal": "PT",
    "brazil": "BR",
    "mexico": "MX",
    "japan": "JP",
    "india": "IN",
}


def strip_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def text_key(text: str) -> str:
    """Lower case, no accents, punctuation as spaces, single spaces."""
    text = strip_accents(text).casefold()
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def email(value: str) -> str:
    """Lower-case e-mail; for providers that ignore them, drop +tags (and Gmail's dots)."""
    value = value.strip().lower()
    if "@" not in value:
        return value
    local, _, domain = value.rpartition("@")
    domain = domain.rstrip(".")
    if domain in _PLUS_TAG_PROVIDERS:
        local = local.split("+", 1)[0]
    if domain in _GMAIL_LIKE:
        local = local.replace(".", "")
        domain = "gmail.com"
    return f"{local}@{domain}"


def email_domain(value: str) -> str:
    return value.rpartition("@")[2].strip().lower() if "@" in value else ""


def is_free_mail(domain: str) -> bool:
    return domain.lower() in FREE_MAIL_DOMAINS


def domain(website: str) -> str:
    """The registrable host of a website or URL: "https://www.Acme.com/x" → "acme.com"."""
    host = website.strip().lower()
    host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", host)
    host = host.split("/", 1)[0].split("?", 1)[0].split(":", 1)[0].split("@")[-1]
    host = host.removeprefix("www.").strip(".")
    return host if "." in host else ""


@lru_cache(maxsize=512)
def country(value: str) -> str:
    """ISO 3166-1 alpha-2 code for a code or a common English/local name; "" if unknown."""
    text = value.strip()
    if not text:
        return ""
    if len(text) == 2 and text.isalpha():
        code = text.upper()
        code = "GB" if code == "UK" else code
        return code if code in _KNOWN_REGIONS else ""
    return _COUNTRY_ALIASES.get(text.casefold(), "")


_KNOWN_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)


def phone(value: str, country_code: str = "") -> str:
    """E.164 form, or "" when the number cannot be valid for the country given."""
    text = value.strip()
    if not text:
        return ""
    region = (country_code or "").upper() or None
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region if not text.startswith("+") else None)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def national_id(value: str) -> str:
    """National ids compare as uppercase alphanumerics (separators vary by source)."""
    return re.sub(r"[^0-9A-Za-z]", "", value).upper()


def tax_id(value: str, country_code: str = "") -> str:
    """Compact form of a tax or national id (python-stdnum's ``compact`` where it knows one).

    Compaction never rejects: an id stdnum cannot validate is still a key, just an
    uppercase alphanumeric one. Validation errors are left to the steward's view.
    """
    text = value.strip()
    if not text:
        return ""
    compacted = re.sub(r"[^0-9A-Za-z]", "", text).upper()
    if country_code:
        try:
            module = get_cc_module(country_code.lower(), "vat")
        except (ImportError, AttributeError, StdnumError):
            module = None
        if module is not None:
            with contextlib.suppress(StdnumError, ValueError):
                compacted = module.compact(text).upper()
        prefix = country_code.upper()
        if prefix == "GR":
            prefix = "EL"
        if compacted and not compacted.startswith(prefix) and module is not None:
            compacted = f"{prefix}{compacted}"
    return compacted


_LEGAL_SUFFIXES = re.compile(
    r"\b(incorporated|inc|corporation|corp|company|co|llc|l l c|ltd|limited|plc|gmbh|ag|"
    r"s a|sa|sas|sarl|bv|b v|nv|n v|oy|ab|as|spa|s p a|srl|pty|kg|kgaa|ug|se|lp|llp)\b"
)


def organization_name(value: str) -> str:
    """Name key for organizations: no legal suffixes, "&" as "and", no leading "The"."""
    text = text_key(value.replace("&", " and "))
    text = _LEGAL_SUFFIXES.sub(" ", text)
    text = re.sub(r"^the\s+", "", " ".join(text.split()))
    return " ".join(text.split())


def person_name(first: str, last: str) -> str:
    return text_key(f"{first} {last}")
