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


_MORE_LEGAL_SUFFIXES = re.compile(
    r"\b(ltda|s l|sl|s r l|s a s|sa de cv|de cv|e v|ev|ohg|gbr|pte|pvt|bvba|sprl|kk|k k|"
    r"pllc|p c|pc|lllp|e k|ek|cie)\b"
)

# One spelling per word, so "Acme Intl Mfg" and "ACME International Manufacturing" agree.
_ORG_WORDS = {
    "intl": "international",
    "int l": "international",
    "internat": "international",
    "mfg": "manufacturing",
    "mfrs": "manufacturers",
    "bros": "brothers",
    "assoc": "associates",
    "assocs": "associates",
    "assn": "association",
    "svc": "services",
    "svcs": "services",
    "service": "services",
    "tech": "technologies",
    "technology": "technologies",
    "natl": "national",
    "grp": "group",
    "hldg": "holdings",
    "hldgs": "holdings",
    "holding": "holdings",
    "mgmt": "management",
    "sys": "systems",
    "ind": "industries",
    "inds": "industries",
    "dept": "department",
    "univ": "university",
    "ctr": "center",
    "centre": "center",
    "labs": "laboratories",
    "lab": "laboratories",
    "und": "and",
    "et": "and",
    "y": "and",
}
_ORG_WORDS_RE = re.compile(r"\b(" + "|".join(sorted(_ORG_WORDS, key=len, reverse=True)) + r")\b")


def organization_key(value: str) -> str:
    """A stricter organization name key for matching: ``organization_name`` plus more legal
    forms (Ltda, S.L., e.V., OHG …) and one spelling of common abbreviations (Intl →
    international, Mfg → manufacturing, Bros → brothers, Svcs → services …)."""
    text = text_key(value.replace("&", " and ").replace("+", " and "))
    text = _ORG_WORDS_RE.sub(lambda m: _ORG_WORDS[m.group(1)], text)
    text = _LEGAL_SUFFIXES.sub(" ", text)
    text = _MORE_LEGAL_SUFFIXES.sub(" ", text)
    text = re.sub(r"^the\s+", "", " ".join(text.split()))
    return " ".join(text.split())


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# -- person names -------------------------------------------------------------------------

_TITLES = _words(
    "mr mrs ms miss mx dr prof sir dame lady lord rev fr herr frau hr fr m mme mlle sr sra "
    "srta don dona dott ing dipl"
)
_GENERATIONAL = _words("jr jnr junior sr snr senior ii iii iv phd md esq mba")


@lru_cache(maxsize=65536)
def given_name(value: str) -> str:
    """Given name key: ``text_key`` without titles ("Dr. Anna-Lena" → "anna lena")."""
    tokens = text_key(value).split()
    while len(tokens) > 1 and tokens[0] in _TITLES:
        tokens.pop(0)
    return " ".join(tokens)


@lru_cache(maxsize=65536)
def family_name(value: str) -> str:
    """Family name key: ``text_key`` without generational suffixes ("Smith Jr." → "smith")."""
    tokens = text_key(value).split()
    while len(tokens) > 1 and tokens[-1] in _GENERATIONAL:
        tokens.pop()
    return " ".join(tokens)


@lru_cache(maxsize=65536)
def name_forms(first: str) -> frozenset[str]:
    """The formal names a given name may stand for, itself included.

    "bob" → {"bob", "robert"}; "al" → {"al", "alan", "albert", "alexander", "alfred",
    "allen"}; an unknown name → {name}. A double name is looked up whole, then by its
    first part ("mary ann" → also "mary" and what "mary" stands for).
    """
    from .nicknames import CANONICAL

    key = given_name(first)
    if not key:
        return frozenset()
    forms = {key} | CANONICAL.get(key, frozenset())
    head = key.split(" ", 1)[0]
    if head != key:
        forms |= {head} | CANONICAL.get(head, frozenset())
    return frozenset(forms)


def is_nickname(a: str, b: str) -> bool:
    """True when two different given names may be the same person's (Bob / Robert,
    Liz / Beth: both short for Elizabeth)."""
    ka, kb = given_name(a), given_name(b)
    if not ka or not kb or ka == kb:
        return False
    return bool(name_forms(ka) & name_forms(kb))


def names_swapped(first_a: str, last_a: str, first_b: str, last_b: str) -> bool:
    """True when one record has the other's given and family names the other way round."""
    fa, la = given_name(first_a), family_name(last_a)
    fb, lb = given_name(first_b), family_name(last_b)
    return bool(fa and la and fa != la) and fa == lb and la == fb


# -- addresses ----------------------------------------------------------------------------

_STREET_WORDS = {
    "st": "street",
    "str": "strasse",
    "ave": "avenue",
    "av": "avenue",
    "avda": "avenida",
    "rd": "road",
    "blvd": "boulevard",
    "bd": "boulevard",
    "bvd": "boulevard",
    "dr": "drive",
    "ln": "lane",
    "ct": "court",
    "pl": "place",
    "sq": "square",
    "hwy": "highway",
    "pkwy": "parkway",
    "cres": "crescent",
    "ter": "terrace",
    "terr": "terrace",
    "cl": "close",
    "gdns": "gardens",
    "mt": "mount",
    "ste": "suite",
    "apt": "apartment",
    "fl": "floor",
    "n": "north",
    "s": "south",
    "e": "east",
    "w": "west",
    "ne": "northeast",
    "nw": "northwest",
    "se": "southeast",
    "sw": "southwest",
    "c": "calle",
}
_UNIT_WORDS = _words("unit apartment suite flat room rm no wohnung whg app appt piso puerta bureau")
_UNIT_RE = re.compile(r"(?:^|\s)(?:#|nr\.?\s+|no\.?\s+)\s*(\w+)", re.IGNORECASE)


def _split_unit(value: str) -> tuple[str, str]:
    text = _UNIT_RE.sub(lambda m: f" unit {m.group(1)} ", value)
    tokens = text_key(text).split()
    expanded = []
    for n, token in enumerate(tokens):
        if token.endswith("str") and len(token) > 5:
            token = token[:-3] + "strasse"
        elif token == "st" and n == 0 and len(tokens) > 1 and not tokens[1].isdigit():
            token = "saint"  # "St Albans Road", not "Street"
        elif token in ("n", "s", "e", "w") and n == len(tokens) - 1:
            pass  # a trailing letter is a house-number suffix ("12 Main Street B")
        else:
            token = _STREET_WORDS.get(token, token)
        expanded.append(token)
    street: list[str] = []
    unit = ""
    n = 0
    while n < len(expanded):
        token = expanded[n]
        if (
            token in _UNIT_WORDS
            and n + 1 < len(expanded)
            and any(c.isdigit() for c in expanded[n + 1])
        ):
            unit = expanded[n + 1]
            n += 2
            continue
        street.append(token)
        n += 1
    return " ".join(street), unit


@lru_cache(maxsize=65536)
def address_line(value: str) -> str:
    """Street line key: abbreviations spelled out (St → street, Str. → strasse, Ave →
    avenue …) and the unit moved to the end as "unit N" ("Apt 4", "#4", "Suite 4")."""
    street, unit = _split_unit(value)
    return f"{street} unit {unit}" if unit else street


def address_unit(value: str) -> str:
    """The apartment / suite / unit number of a street line, or ""."""
    return _split_unit(value)[1]


_UK_POSTCODE = re.compile(r"^([A-Z]{1,2}\d[A-Z\d]?)(\d[A-Z]{2})$")
_CA_POSTCODE = re.compile(r"^([A-Z]\d[A-Z])(\d[A-Z]\d)$")
_NL_POSTCODE = re.compile(r"^(\d{4})([A-Z]{2})$")
_FIVE_DIGIT_COUNTRIES = frozenset({"DE", "FR", "ES", "IT", "FI", "MX", "MY", "TH", "HR", "EE"})


def postal_code(value: str, country_code: str = "") -> str:
    """Postal code in its country's written form: GB "sw1a1aa" → "SW1A 1AA", NL "1234ab" →
    "1234 AB", US ZIP+4 → the 5-digit ZIP, CA "k1a0b1" → "K1A 0B1"; zeros a spreadsheet
    dropped are put back for 5-digit countries. Unknown formats: upper case, single spaces.
    """
    text = " ".join(strip_accents(str(value)).upper().split())
    if not text:
        return ""
    cc = country(country_code) if country_code else ""
    compact = re.sub(r"[^0-9A-Z]", "", text)
    if cc and compact.startswith(cc) and len(compact) > 4 and compact[len(cc)].isdigit():
        compact = compact[len(cc) :]  # "NL-1234 AB", "DE-10115"
    elif cc in ("DE", "FR", "AT", "CH", "BE") and re.match(r"^[A-Z]-", text):
        compact = compact[1:]  # "D-10115", "F-75001"
    if cc == "GB" or (not cc and _UK_POSTCODE.match(compact)):
        match = _UK_POSTCODE.match(compact)
        return f"{match.group(1)} {match.group(2)}" if match else text
    if cc == "NL":
        match = _NL_POSTCODE.match(compact)
        return f"{match.group(1)} {match.group(2)}" if match else text
    if cc == "CA":
        match = _CA_POSTCODE.match(compact)
        return f"{match.group(1)} {match.group(2)}" if match else text
    if cc == "US":
        digits = re.sub(r"\D", "", text)
        if len(digits) in (5, 9):
            return digits[:5]
        if len(digits) in (3, 4, 8):  # leading zeros lost ("2134" for Boston's 02134)
            return digits[: len(digits) - 4 if len(digits) == 8 else None].zfill(5)
        return text
    if cc in _FIVE_DIGIT_COUNTRIES and compact.isdigit() and len(compact) in (4, 5):
        return compact.zfill(5)
    if compact.isdigit():
        return compact
    return text


@lru_cache(maxsize=65536)
def city(value: str) -> str:
    """City key: ``text_key`` with "St." spelled "saint" ("St. Louis" = "Saint Louis")."""
    tokens = text_key(value).split()
    if len(tokens) > 1 and tokens[0] in ("st", "ste"):
        tokens[0] = "saint"
    return " ".join(tokens)


def birth_date(value: object) -> str:
    """ISO date (YYYY-MM-DD) from a date, an ISO string or a German/European "DD.MM.YYYY";
    "" when it is not a real calendar date."""
    import datetime as dt

    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value or "").strip()
    match = re.match(r"^(\d{4})-(\d{1,2})-(\d{1,2})", text) or None
    if match:
        y, m, d = (int(g) for g in match.groups())
    else:
        match = re.match(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$", text)
        if not match:
            return ""
        d, m, y = (int(g) for g in match.groups())
    try:
        return dt.date(y, m, d).isoformat()
    except ValueError:
        return ""


# -- role addresses and placeholders ----------------------------------------------------

ROLE_LOCAL_PARTS = _words(
    """info sales noreply no-reply no.reply donotreply do-not-reply support admin
    administrator office contact contacts hello billing accounts accounting invoices invoice
    finance enquiries enquiry inquiries inquiry help helpdesk service customerservice
    service-desk team hr jobs careers marketing orders order mail postmaster webmaster
    hostmaster abuse press media reception frontdesk kontakt buchhaltung rechnung vertrieb
    bureau compta contabilidad ventas facturacion"""
)


def is_role_email(value: str) -> bool:
    """True for a shared role or catch-all mailbox (info@, sales@, noreply@ …): it names a
    function, not a person, so it is never evidence that two records are one customer."""
    text = value.strip().lower()
    if "@" not in text:
        return False
    local = text.rpartition("@")[0].split("+", 1)[0]
    return local in ROLE_LOCAL_PARTS


PLACEHOLDER_TEXT = _words(
    "n/a na n.a. none null nil test testing unknown unbekannt inconnu desconocido - -- --- . "
    ".. ? ?? x xx xxx xxxx tbd tba asdf qwerty dummy sample fake noname nobody notavailable "
    "missing default customer client anonymous anon 0 00"
) | frozenset({"not available", "not provided", "not given", "no email", "no phone", "n a"})

_PLACEHOLDER_EMAIL_DOMAINS = frozenset(
    {
        "test.com",
        "test.de",
        "example.com",
        "example.org",
        "example.net",
        "email.com",
        "none.com",
        "no.com",
        "noemail.com",
        "nomail.com",
        "invalid",
        "invalid.com",
        "x.com",
        "xx.com",
        "xxx.com",
        "asdf.com",
        "fake.com",
        "domain.com",
        "mailinator.com",
    }
)
_PLACEHOLDER_DATES = frozenset(
    {
        "1900-01-01",
        "1901-01-01",
        "1899-12-31",
        "1970-01-01",
        "0001-01-01",
        "9999-12-31",
        "1111-11-11",
        "1800-01-01",
    }
)


def is_placeholder(field: str, value: object) -> bool:
    """True when a value only fills a required field ("n/a", "test@test.com", "0000000000",
    "123456789", 1900-01-01 …). Placeholders are neither keys nor evidence.

    ``field`` is a canonical field name; e-mail, phone, ids and dates have their own
    patterns on top of the shared list. An empty value is not a placeholder, just missing.
    """
    text = str(value or "").strip().lower()
    if not text:
        return False
    if text in PLACEHOLDER_TEXT:
        return True
    if field == "email":
        if "@" not in text:
            return True
        local, _, dom = text.rpartition("@")
        if dom in _PLACEHOLDER_EMAIL_DOMAINS and local in {
            "test", "a", "x", "xx", "xxx", "none", "no", "noemail", "nomail", "email", "mail",
            "asdf", "dummy", "fake", "user", "name", "info", "n/a", "na", "unknown",
        }:  # fmt: skip
            return True
        return local in PLACEHOLDER_TEXT or local in {"noemail", "nomail", "no.email"}
    digits = re.sub(r"\D", "", text)
    if field in ("phone", "mobile", "fax", "tax_id", "national_id", "postal_code"):
        core = re.sub(r"[^0-9a-z]", "", text)
        if not core:
            return True
        if field != "postal_code" and not digits and field == "phone":
            return True
        tail = digits[-7:] if field == "phone" else core
        if len(tail) >= 4 and len(set(tail)) == 1:
            return True  # 0000000000, 99999, +1 111 111 1111
        for run in ("123456789", "987654321", "1234567", "0123456"):
            if run in digits and len(digits) - len(run) <= 3:
                return True
        return False
    if field == "birth_date":
        return birth_date(value) in _PLACEHOLDER_DATES
    if field in ("website", "domain"):
        return domain(text) in _PLACEHOLDER_EMAIL_DOMAINS
    return False
