"""The Fellegi-Sunter match model: comparisons, unsupervised training (EM), scoring.

Pure functions and plain objects, no ORM. One implementation serves both paths:

* batch — ``prepare`` turns a population into a columnar ``Frame`` (one integer code per
  normalized value), ``comparison_levels`` compares millions of candidate pairs with numpy
  and rapidfuzz's batched scorers, ``IdentityModel.match_weights`` turns levels into
  weights;
* ingest — ``IdentityModel.score_candidates(record, candidates)`` builds a tiny frame of
  the incoming record and its candidates and runs the very same code, so a pair scores
  identically in both paths.

A comparison sorts each pair into a level (exact, nickname, transposed date …); every level
has m = P(level | same customer) and u = P(level | different customers), and the pair's
match weight is log2(λ / (1 - λ)) + Σ log2(m / u). u comes from random pairs, m from EM on
pairs blocked on a strong key (e-mail, phone), and exact matches on names and cities are
adjusted by the value's frequency (a shared "Smith" says less than a shared "Zabriskie").
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import phonenumbers
from rapidfuzz import process
from rapidfuzz.distance import OSA, JaroWinkler, Levenshtein
from rapidfuzz.fuzz import ratio, token_set_ratio

from . import normalize

MODEL_VERSION = 1
KINDS = ("person", "organization")
MISSING = 0  # level 0 of every comparison: a value is missing on one side, weight 0
TF_KEEP = 20_000  # term-frequency values kept per field in a stored model

# -- frame: a population as integer codes ------------------------------------------------


@dataclass
class Column:
    """One normalized field: ``codes[i]`` indexes ``vocab`` (-1 = missing)."""

    codes: np.ndarray
    vocab: np.ndarray  # object array of str

    def value(self, i: int) -> str:
        code = int(self.codes[i])
        return self.vocab[code] if code >= 0 else ""


@dataclass
class Frame:
    """A population of records of one kind, normalized once and stored column-wise."""

    kind: str
    n: int
    columns: dict[str, Column]
    dob: np.ndarray  # int32 yyyymmdd, 0 = missing
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def _factorize(values: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    index: dict[str, int] = {}
    setdefault = index.setdefault
    codes = np.fromiter(
        (setdefault(v, len(index)) if v else -1 for v in values), dtype=np.int32, count=len(values)
    )
    return codes, list(index)


def _column(raw: Sequence[str], fn=None) -> Column:
    """Factorize raw values, normalize each distinct raw value once, factorize again."""
    raw_codes, raw_vocab = _factorize(raw)
    if fn is None:
        return Column(raw_codes, np.array(raw_vocab, dtype=object))
    norm_codes, vocab = _factorize([fn(v if type(v) is str else _text(v)) for v in raw_vocab])
    if len(norm_codes):
        codes = np.where(raw_codes >= 0, norm_codes[np.maximum(raw_codes, 0)], -1)
    else:
        codes = np.full(len(raw_codes), -1, dtype=np.int32)
    return Column(codes.astype(np.int32), np.array(vocab, dtype=object))


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


@lru_cache(maxsize=200_000)
def canonical_phone(value: str, country_code: str = "") -> str:
    """E.164 for matching. Values already in E.164 only lose separators (fast path);
    national formats are parsed with the record's country, and when ``phonenumbers``
    rejects a number, the country calling code is put in front of the national digits."""
    text = value.strip()
    if not text or normalize.is_placeholder("phone", text):
        return ""
    if text.startswith("+"):
        digits = "".join(c for c in text if c.isdigit())
        return "+" + digits if len(digits) >= 7 else ""
    parsed = normalize.phone(text, country_code)
    if parsed:
        return parsed
    digits = "".join(c for c in text if c.isdigit())
    if digits.startswith("00"):
        return "+" + digits[2:]
    region = normalize.country(country_code) if country_code else ""
    calling = phonenumbers.country_code_for_region(region) if region else 0
    if not calling or len(digits) < 6:
        return ""
    if calling == 1 and len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return f"+{calling}{digits.lstrip('0')}"


_CACHE = 1 << 18  # distinct values remembered per field normalizer


@lru_cache(maxsize=_CACHE)
def _email_key(value: str, kind: str) -> str:
    if "@" not in value or normalize.is_placeholder("email", value):
        return ""
    if kind == "person" and normalize.is_role_email(value):
        return ""  # info@ names a mailbox, not a person
    return normalize.email(value)


def _email_value(kind: str):
    return lambda value: _email_key(value, kind)


@lru_cache(maxsize=_CACHE)
def _clean_value(field_name: str, fn, value: str) -> str:
    return "" if normalize.is_placeholder(field_name, value) else fn(value)


def _clean(field_name: str, fn):
    """``fn`` with placeholders as missing, remembered per distinct value."""
    return lambda value: _clean_value(field_name, fn, value)


@lru_cache(maxsize=_CACHE)
def _postal_key(value_and_country: str) -> str:
    value, _, country_code = value_and_country.partition("\x1f")
    if normalize.is_placeholder("postal_code", value):
        return ""
    return normalize.postal_code(value, country_code)


@lru_cache(maxsize=_CACHE)
def _tax_key(value_and_country: str) -> str:
    value, _, country_code = value_and_country.partition("\x1f")
    if normalize.is_placeholder("tax_id", value):
        return ""
    return normalize.tax_id(value, country_code)


def _dob_int(value: Any) -> int:
    iso = normalize.birth_date(value) if value else ""
    if not iso or iso in normalize._PLACEHOLDER_DATES:
        return 0
    return int(iso[:4]) * 10000 + int(iso[5:7]) * 100 + int(iso[8:10])


_FORMS_K = 6


@lru_cache(maxsize=_CACHE)
def _typo_target(name: str) -> str:
    from .nicknames import CANONICAL

    best = process.extractOne(
        name, list(CANONICAL), scorer=JaroWinkler.normalized_similarity, score_cutoff=0.93
    )
    return best[0] if best else ""


def _known_name_for_typos(names: Sequence[str]) -> dict[str, str]:
    """Given names the nickname table does not know, mapped to the known name they are
    most likely a typo of (Jaro-Winkler >= 0.93): "michaew" -> "michael", so that
    "Michaew" and "Mike" still compare as nickname, not as two different people."""
    from .nicknames import CANONICAL

    unknown = [name for name in names if name not in CANONICAL and len(name) >= 4]
    if not unknown:
        return {}
    if len(unknown) < 64:  # the ingest path: a handful of names, remembered
        found = {name: _typo_target(name) for name in unknown}
        return {name: target for name, target in found.items() if target}
    known = list(CANONICAL)
    scores = process.cdist(
        unknown,
        known,
        scorer=JaroWinkler.normalized_similarity,
        score_cutoff=0.93,
        dtype=np.float32,
        workers=_workers(len(unknown) * 50),
    )
    best = scores.argmax(axis=1)
    good = scores[np.arange(len(unknown)), best] >= 0.93
    return {unknown[i]: known[best[i]] for i in np.flatnonzero(good).tolist()}


def prepare(records: Sequence[dict[str, Any]], kind: str) -> Frame:
    """Normalize records of one kind into a ``Frame``.

    Records use canonical field names: first_name, last_name, name, email, phone,
    birth_date, address_line1, city, postal_code, country, tax_id, national_id, website.
    Placeholders ("n/a", "test@test.com", "0000000000" …) and, for persons, role e-mails
    (info@ …) count as missing: they are neither blocking keys nor evidence.
    """
    n = len(records)

    def raw(name: str) -> list[Any]:
        # Values are strings or None; anything else (a date) is made text when normalized.
        return [r.get(name) or "" for r in records]

    countries = _column(raw("country"), normalize.country)
    country_of = [countries.value(i) for i in range(n)] if n < 1000 else None
    if country_of is None:
        cvocab = countries.vocab
        country_of = [cvocab[c] if c >= 0 else "" for c in countries.codes.tolist()]

    def with_country(name: str) -> list[str]:
        return [f"{v}\x1f{c}" if v else "" for v, c in zip(raw(name), country_of, strict=True)]

    columns: dict[str, Column] = {"country": countries}
    columns["email"] = _column(raw("email"), _email_value(kind))
    columns["phone"] = _column(
        with_country("phone"), lambda v: canonical_phone(*v.split("\x1f", 1))
    )
    columns["address"] = _column(raw("address_line1"), _clean("address", normalize.address_line))
    columns["city"] = _column(raw("city"), _clean("city", normalize.city))
    columns["postal"] = _column(with_country("postal_code"), _postal_key)
    columns["tax_id"] = _column(with_country("tax_id"), _tax_key)
    columns["national_id"] = _column(
        raw("national_id"), _clean("national_id", normalize.national_id)
    )
    extra: dict[str, np.ndarray] = {}
    dob = np.zeros(n, dtype=np.int32)
    if kind == "person":
        given = _column(raw("first_name"), _clean("first_name", normalize.given_name))
        family = _column(raw("last_name"), _clean("last_name", normalize.family_name))
        # One vocabulary for given and family names, so that swaps can be compared.
        merged, vocab = _factorize(list(given.vocab) + list(family.vocab))
        first_map = np.append(merged[: len(given.vocab)], -1)
        last_map = np.append(merged[len(given.vocab) :], -1)
        codes = np.concatenate([first_map[given.codes], last_map[family.codes]]).astype(np.int32)
        names = np.array(vocab, dtype=object)
        columns["first_name"] = Column(codes[:n], names)
        columns["last_name"] = Column(codes[n:], names)
        # Formal names each given name may stand for (nicknames), as small integer ids.
        first_vocab = np.unique(codes[:n][codes[:n] >= 0])
        near = _known_name_for_typos([vocab[v] for v in first_vocab.tolist()])
        form_ids: dict[str, int] = {}
        forms = np.full((len(vocab), _FORMS_K), -1, dtype=np.int32)
        for v, name in enumerate(vocab):
            found = normalize.name_forms(name)
            if name in near:
                found = found | normalize.name_forms(near[name])
            for k, form in enumerate(sorted(found)[:_FORMS_K]):
                forms[v, k] = form_ids.setdefault(form, len(form_ids))
        extra["name_forms"] = forms
        dobs = raw("birth_date")
        dob_codes, dob_vocab = _factorize(dobs)
        dob_values = np.array([_dob_int(v) for v in dob_vocab] + [0], dtype=np.int32)
        dob = dob_values[dob_codes]  # code -1 picks the trailing 0
    else:
        names_raw = [_text(r.get("name")) or _text(r.get("legal_name")) for r in records]
        columns["org_name"] = _column(names_raw, _clean("name", normalize.organization_key))
        sites = [_text(r.get("website")) or _text(r.get("domain")) for r in records]
        site_domains = [normalize.domain(s) if s else "" for s in sites]
        mail_domains = [normalize.email_domain(e) for e in raw("email")]
        domains = [
            d
            if d and not normalize.is_free_mail(d)
            else (m if m and not normalize.is_free_mail(m) else "")
            for d, m in zip(site_domains, mail_domains, strict=True)
        ]
        columns["domain"] = _column(domains, _clean("website", lambda v: v))
    # Parts of each distinct e-mail, for "a typo of the same address".
    evocab = columns["email"].vocab
    local_codes, local_vocab = _factorize([e.rpartition("@")[0] for e in evocab])
    extra["email_local"] = local_codes
    extra["email_local_vocab"] = np.array(local_vocab, dtype=object)
    extra["email_domain"], _ = _factorize([e.rpartition("@")[2] for e in evocab])
    extra["email_digits"], _ = _factorize(
        ["#" + "".join(c for c in e.rpartition("@")[0] if c.isdigit()) for e in evocab]
    )
    return Frame(kind=kind, n=n, columns=columns, dob=dob, extra=extra)


# -- comparisons -------------------------------------------------------------------------


def _workers(size: int) -> int:
    return 2 if size > 20_000 else 1


def _pair_similarity(
    vocab: np.ndarray, ca: np.ndarray, cb: np.ndarray, scorer, *, distance: bool = False
) -> np.ndarray:
    """Similarity of vocab[ca[k]] and vocab[cb[k]] for every k, with rapidfuzz's batched
    scorer on two cores. Candidate pairs repeat ("jon"/"john" thousands of times), so
    distinct pairs are scored once when a sample says that saves work; random pairs
    rarely repeat and are scored directly."""
    dtype = np.int32 if distance else np.float32
    if not len(ca):
        return np.zeros(0, dtype=dtype)
    lo = np.minimum(ca, cb).astype(np.int64)
    hi = np.maximum(ca, cb).astype(np.int64)
    key = lo * (len(vocab) + 1) + hi
    sample = key[:: max(1, len(key) // 5000)]
    if len(key) > 5000 and len(np.unique(sample)) > 0.6 * len(sample):
        sims = process.cpdist(
            vocab[lo].tolist(),
            vocab[hi].tolist(),
            scorer=scorer,
            workers=_workers(len(key)),
            dtype=dtype,
        )
        return np.asarray(sims)
    uniq, inverse = np.unique(key, return_inverse=True)
    sims = process.cpdist(
        vocab[uniq // (len(vocab) + 1)].tolist(),
        vocab[uniq % (len(vocab) + 1)].tolist(),
        scorer=scorer,
        workers=_workers(len(uniq)),
        dtype=dtype,
    )
    return np.asarray(sims)[inverse]


@dataclass(frozen=True)
class Comparison:
    """One compared field. ``levels[0]`` is always "missing"; the last is "different"."""

    name: str
    levels: tuple[str, ...]
    column: str
    fields: tuple[str, ...]  # record fields shown as evidence
    tf: bool = False  # term-frequency adjustment on the "exact" level
    cannot_link: bool = False  # a "different" level forbids linking

    @property
    def exact(self) -> int:
        return 1

    @property
    def different(self) -> int:
        return len(self.levels) - 1


def _base(frame: Frame, column: str, ia: np.ndarray, ib: np.ndarray):
    col = frame.columns[column]
    ca, cb = col.codes[ia], col.codes[ib]
    out = np.full(len(ia), 0, dtype=np.uint8)
    present = (ca >= 0) & (cb >= 0)
    exact = present & (ca == cb)
    return col, ca, cb, out, present, exact


def _levels_simple(comp: Comparison, frame: Frame, ia, ib) -> np.ndarray:
    _col, _ca, _cb, out, present, exact = _base(frame, comp.column, ia, ib)
    out[present] = comp.different
    out[exact] = 1
    return out


def _levels_fuzzy(comp: Comparison, frame: Frame, ia, ib, thresholds, scorer=None) -> np.ndarray:
    """exact, then one level per similarity threshold (descending), then different."""
    col, ca, cb, out, present, exact = _base(frame, comp.column, ia, ib)
    out[present] = comp.different
    out[exact] = 1
    rest = np.flatnonzero(present & ~exact)
    if len(rest):
        sim = _pair_similarity(
            col.vocab, ca[rest], cb[rest], scorer or JaroWinkler.normalized_similarity
        )
        level = np.full(len(rest), comp.different, dtype=np.uint8)
        for k, threshold in reversed(list(enumerate(thresholds))):
            level[sim >= threshold] = 2 + k
        out[rest] = level
    return out


def _name_shape(frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """Length and first letter of every name in the (shared) name vocabulary."""
    if "name_length" not in frame.extra:
        vocab = frame.columns["first_name"].vocab
        frame.extra["name_length"] = np.fromiter(
            (len(v) for v in vocab), dtype=np.int32, count=len(vocab)
        )
        frame.extra["name_initial"] = np.fromiter(
            (ord(v[0]) if v else 0 for v in vocab), dtype=np.int32, count=len(vocab)
        )
    return frame.extra["name_length"], frame.extra["name_initial"]


def _name_levels(comp: Comparison, frame: Frame, ia, ib) -> np.ndarray:
    """first_name: exact, swapped, nickname, jw≥0.92, initial, jw≥0.80, different.
    last_name: exact, jw≥0.92, jw≥0.80, different (a swap is neutral here)."""
    first = comp.name == "first_name"
    col, ca, cb, out, present, exact = _base(frame, comp.column, ia, ib)
    other = frame.columns["last_name" if first else "first_name"]
    oa, ob = other.codes[ia], other.codes[ib]
    out[present] = comp.different
    out[exact] = 1
    swapped = present & ~exact & (ca == ob) & (oa == cb)
    rest = np.flatnonzero(present & ~exact & ~swapped)
    sim = _pair_similarity(col.vocab, ca[rest], cb[rest], JaroWinkler.normalized_similarity)
    # Swapped with a typo: both crossed pairs nearly equal ("Barliski Antonio" and
    # "Antonio Barliqski").
    lengths, initials = _name_shape(frame)
    cross = rest[(sim < 0.80) & (oa[rest] >= 0) & (ob[rest] >= 0)]
    cross = cross[
        (initials[ca[cross]] == initials[ob[cross]]) & (initials[oa[cross]] == initials[cb[cross]])
    ]
    if len(cross):
        s1 = _pair_similarity(col.vocab, ca[cross], ob[cross], JaroWinkler.normalized_similarity)
        s2 = _pair_similarity(col.vocab, oa[cross], cb[cross], JaroWinkler.normalized_similarity)
        fuzzy_swap = cross[(s1 >= 0.92) & (s2 >= 0.92)]
        swapped[fuzzy_swap] = True
        keep = ~np.isin(rest, fuzzy_swap)
        rest, sim = rest[keep], sim[keep]
    # A swap is one fact: first_name counts it, last_name stays neutral.
    out[swapped] = 2 if first else MISSING
    if not len(rest):
        return out
    ra, rb = ca[rest], cb[rest]
    level = np.full(len(rest), comp.different, dtype=np.uint8)
    if first:
        forms = frame.extra["name_forms"]
        fa, fb = forms[ra], forms[rb]
        nick = np.zeros(len(rest), dtype=bool)
        for i in range(_FORMS_K):
            left = fa[:, i]
            if not (left >= 0).any():
                break
            for j in range(_FORMS_K):
                nick |= (left >= 0) & (left == fb[:, j])
        initial = ((lengths[ra] == 1) | (lengths[rb] == 1)) & (initials[ra] == initials[rb])
        level[sim >= 0.80] = 6
        level[initial] = 5
        level[sim >= 0.92] = 4
        level[nick] = 3
    else:
        level[sim >= 0.80] = 3
        level[sim >= 0.92] = 2
    out[rest] = level
    return out


def _dob_levels(comp: Comparison, frame: Frame, ia, ib) -> np.ndarray:
    """exact, day and month transposed, typo (one digit, year off by one, the year's last
    two digits swapped), different."""
    a, b = frame.dob[ia], frame.dob[ib]
    out = np.zeros(len(ia), dtype=np.uint8)
    present = (a > 0) & (b > 0)
    out[present] = comp.different
    ya, ma, da = a // 10000, a // 100 % 100, a % 100
    yb, mb, db = b // 10000, b // 100 % 100, b % 100
    diff_digits = np.zeros(len(ia), dtype=np.int8)
    x, y = a.copy(), b.copy()
    for _ in range(8):
        diff_digits += (x % 10 != y % 10).astype(np.int8)
        x //= 10
        y //= 10
    year_swap = (
        (ma == mb)
        & (da == db)
        & (ya // 100 == yb // 100)
        & ((ya % 10) * 10 + (ya // 10 % 10) == yb % 100)
    )
    year_off_by_one = (ma == mb) & (da == db) & (np.abs(ya - yb) == 1)
    typo = present & ((diff_digits == 1) | year_swap | year_off_by_one)
    out[typo] = 3
    transposed = present & (ya == yb) & (ma == db) & (da == mb) & (ma != da)
    out[transposed] = 2
    out[present & (a == b)] = 1
    return out


def dob_compatible(a: int, b: int) -> bool:
    """Two birth dates (yyyymmdd ints, 0 = missing) that could be one person's: equal,
    day and month transposed, or a typo (the "different" level of ``_dob_levels`` is
    exactly the incompatible case)."""
    if not a or not b or a == b:
        return True
    ya, ma, da = a // 10000, a // 100 % 100, a % 100
    yb, mb, db = b // 10000, b // 100 % 100, b % 100
    if ya == yb and ma == db and da == mb:
        return True
    if sum(x != y for x, y in zip(f"{a:08d}", f"{b:08d}", strict=True)) == 1:
        return True
    if ma == mb and da == db and abs(ya - yb) == 1:
        return True
    return (
        ma == mb and da == db and ya // 100 == yb // 100
        and (ya % 10) * 10 + (ya // 10 % 10) == yb % 100
    )  # fmt: skip


def _email_levels(comp: Comparison, frame: Frame, ia, ib) -> np.ndarray:
    """exact, typo (same domain, same digits, local parts one edit or transposition
    apart), different.

    No "same mailbox name at another domain" level: mailbox names are made of the
    person's name, so namesakes share them; such a level would count the name twice.
    Digits must agree for the same reason: "james.brown62" and "james.brown81" are two
    people far more often than one typo.
    """
    _col, ca, cb, out, present, exact = _base(frame, comp.column, ia, ib)
    out[present] = comp.different
    out[exact] = 1
    rest = np.flatnonzero(present & ~exact)
    if len(rest):
        ra, rb = ca[rest], cb[rest]
        dom, digits = frame.extra["email_domain"], frame.extra["email_digits"]
        near = np.flatnonzero((dom[ra] == dom[rb]) & (digits[ra] == digits[rb]))
        if len(near):
            local = frame.extra["email_local"]
            dist = _pair_similarity(
                frame.extra["email_local_vocab"],
                local[ra[near]],
                local[rb[near]],
                OSA.distance,
                distance=True,
            )
            out[rest[near[dist <= 1]]] = 2
    return out


def _phone_levels(comp: Comparison, frame: Frame, ia, ib) -> np.ndarray:
    """exact, one edit apart (typo), different."""
    col, ca, cb, out, present, exact = _base(frame, comp.column, ia, ib)
    out[present] = comp.different
    out[exact] = 1
    rest = np.flatnonzero(present & ~exact)
    if len(rest):
        dist = _pair_similarity(col.vocab, ca[rest], cb[rest], Levenshtein.distance, distance=True)
        out[rest[dist <= 1]] = 2
    return out


def _location_levels(comp: Comparison, frame: Frame, ia, ib) -> np.ndarray:
    """One comparison for where a customer is, so that street, postcode and city do not
    count the same fact three times: same street line, similar street line, same
    postcode, same city (or a typo of it), different."""
    cols = frame.columns
    out = np.zeros(len(ia), dtype=np.uint8)
    any_present = np.zeros(len(ia), dtype=bool)
    parts = {}
    for name in ("address", "postal", "city"):
        a, b = cols[name].codes[ia], cols[name].codes[ib]
        present = (a >= 0) & (b >= 0)
        any_present |= present
        parts[name] = (a, b, present, present & (a == b))
    out[any_present] = comp.different
    city_a, city_b, city_present, city_exact = parts["city"]
    rest = np.flatnonzero(city_present & ~city_exact)
    if len(rest):
        sim = _pair_similarity(
            cols["city"].vocab, city_a[rest], city_b[rest], JaroWinkler.normalized_similarity
        )
        city_exact = city_exact.copy()
        city_exact[rest[sim >= 0.90]] = True
    out[city_exact] = 4
    out[parts["postal"][3]] = 3
    addr_a, addr_b, addr_present, addr_exact = parts["address"]
    # "Similar" keeps the numbers: Beatrixstraat 247 and 204 are two houses.
    numbers = frame.extra.get("address_numbers")
    if numbers is None:
        numbers, _ = _factorize(
            ["#" + " ".join(re.findall(r"\d+", v)) for v in cols["address"].vocab]
        )
        frame.extra["address_numbers"] = numbers
    rest = np.flatnonzero(addr_present & ~addr_exact)
    rest = rest[numbers[addr_a[rest]] == numbers[addr_b[rest]]]
    if len(rest):
        sim = _pair_similarity(cols["address"].vocab, addr_a[rest], addr_b[rest], ratio)
        out[rest[sim >= 85.0]] = 2
    out[addr_exact] = 1
    return out


def _org_name_scorer(a: str, b: str, **kwargs) -> float:
    return max(token_set_ratio(a, b, **kwargs), JaroWinkler.normalized_similarity(a, b) * 100)


_LOCATION_LEVELS = (
    "missing",
    "same_street_line",
    "similar_street_line",
    "same_postcode",
    "same_city",
    "different",
)
_LOCATION_FIELDS = ("address_line1", "postal_code", "city")

PERSON_COMPARISONS: tuple[Comparison, ...] = (
    Comparison(
        "first_name",
        ("missing", "exact", "swapped", "nickname", "jw_0.92", "initial", "jw_0.80", "different"),
        "first_name",
        ("first_name",),
        tf=True,
    ),
    Comparison(
        "last_name",
        ("missing", "exact", "jw_0.92", "jw_0.80", "different"),
        "last_name",
        ("last_name",),
        tf=True,
    ),
    Comparison(
        "birth_date",
        ("missing", "exact", "day_month_transposed", "typo", "different"),
        "birth_date",
        ("birth_date",),
        cannot_link=True,
    ),
    Comparison("email", ("missing", "exact", "typo", "different"), "email", ("email",)),
    Comparison("phone", ("missing", "exact", "one_edit", "different"), "phone", ("phone",)),
    Comparison("location", _LOCATION_LEVELS, "address", _LOCATION_FIELDS),
    Comparison(
        "national_id",
        ("missing", "exact", "different"),
        "national_id",
        ("national_id",),
        cannot_link=True,
    ),
    Comparison(
        "tax_id", ("missing", "exact", "different"), "tax_id", ("tax_id",), cannot_link=True
    ),
)

ORGANIZATION_COMPARISONS: tuple[Comparison, ...] = (
    Comparison(
        "name",
        ("missing", "exact", "similar_0.95", "similar_0.88", "different"),
        "org_name",
        ("name",),
        tf=True,
    ),
    Comparison("domain", ("missing", "exact", "different"), "domain", ("website", "email")),
    Comparison("email", ("missing", "exact", "typo", "different"), "email", ("email",)),
    Comparison("phone", ("missing", "exact", "one_edit", "different"), "phone", ("phone",)),
    Comparison(
        "tax_id", ("missing", "exact", "different"), "tax_id", ("tax_id",), cannot_link=True
    ),
    Comparison("location", _LOCATION_LEVELS, "address", _LOCATION_FIELDS),
    Comparison("country", ("missing", "exact", "different"), "country", ("country",)),
)

COMPARISONS: dict[str, tuple[Comparison, ...]] = {
    "person": PERSON_COMPARISONS,
    "organization": ORGANIZATION_COMPARISONS,
}
# EM packs a pair's levels into 3 bits per comparison.
assert all(len(c.levels) <= 8 for comps in COMPARISONS.values() for c in comps)


def _levels_for(comp: Comparison, frame: Frame, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    if comp.name in ("first_name", "last_name"):
        return _name_levels(comp, frame, ia, ib)
    if comp.name == "birth_date":
        return _dob_levels(comp, frame, ia, ib)
    if comp.name == "email":
        return _email_levels(comp, frame, ia, ib)
    if comp.name == "phone":
        return _phone_levels(comp, frame, ia, ib)
    if comp.name == "location":
        return _location_levels(comp, frame, ia, ib)
    if comp.name == "name":
        return _levels_fuzzy(comp, frame, ia, ib, (95.0, 88.0), _org_name_scorer)
    return _levels_simple(comp, frame, ia, ib)


def comparison_levels(frame: Frame, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Level of every comparison for every pair: uint8 array (pairs x comparisons)."""
    comps = COMPARISONS[frame.kind]
    ia = np.asarray(ia, dtype=np.int64)
    ib = np.asarray(ib, dtype=np.int64)
    out = np.empty((len(ia), len(comps)), dtype=np.uint8)
    for c, comp in enumerate(comps):
        out[:, c] = _levels_for(comp, frame, ia, ib)
    return out


# Evidence a pair needs before it may be linked without a steward.
# * Personal: something that tells people apart (given name, e-mail, birth date, id).
#   Street, postcode, landline and family name are shared by a household; alone they
#   never link two people, however many bits they add up to; nor does an initial (the
#   "J." at a family's address may be any of them).
# * Corroborating: something besides the name agrees. A name is not an identity: two
#   records that share only a (even rare) name go to review.
_PERSONAL = {
    "first_name": ("exact", "swapped", "nickname", "jw_0.92"),
    "email": ("exact", "typo"),
    "birth_date": ("exact", "day_month_transposed", "typo"),
    "national_id": ("exact",),
}
_CORROBORATING = {
    "email": ("exact", "typo"),
    "phone": ("exact", "one_edit"),
    "birth_date": ("exact", "day_month_transposed", "typo"),
    "location": ("same_street_line", "similar_street_line"),
    "national_id": ("exact",),
}
_ORG_CORROBORATING = {
    "domain": ("exact",),
    "email": ("exact", "typo"),
    "phone": ("exact", "one_edit"),
    "tax_id": ("exact",),
    "location": ("same_street_line", "similar_street_line", "same_postcode"),
}


def _any_level(kind: str, levels: np.ndarray, wanted: dict[str, tuple[str, ...]]) -> np.ndarray:
    comps = COMPARISONS[kind]
    col = {c.name: k for k, c in enumerate(comps)}
    hit = np.zeros(len(levels), dtype=bool)
    for name, labels in wanted.items():
        comp = comps[col[name]]
        hit |= np.isin(levels[:, col[name]], [comp.levels.index(label) for label in labels])
    return hit


def cannot_link(kind: str, levels: np.ndarray) -> np.ndarray:
    """Per pair: a cannot-link comparison (birth date, national id, tax id) says
    "different" — not a typo, not a transposition: two customers."""
    hit = np.zeros(len(levels), dtype=bool)
    for c, comp in enumerate(COMPARISONS[kind]):
        if comp.cannot_link:
            hit |= levels[:, c] == comp.different
    return hit


def must_stay_apart(kind: str, levels: np.ndarray) -> np.ndarray:
    """Per pair: evidence that these are two customers, so no chain of other links may
    put them in one cluster. People: one family name, clearly different given names (not
    a nickname, initial, typo or swap): two members of a household, unless the national
    ids or the e-mail addresses agree. Companies: none beyond the cannot-link ids."""
    comps = COMPARISONS[kind]
    col = {c.name: k for k, c in enumerate(comps)}
    if kind != "person":
        return np.zeros(len(levels), dtype=bool)
    different_first = levels[:, col["first_name"]] == comps[col["first_name"]].different
    same_family = np.isin(levels[:, col["last_name"]], [1, 2, 3])  # exact or similar
    # Siblings do not share a national id or a personal mailbox; a mistyped given name
    # ("Jmhannes", "Mrk") with the same mailbox is one person.
    same_person_key = (levels[:, col["national_id"]] == 1) | np.isin(
        levels[:, col["email"]], [1, 2]
    )
    return different_first & same_family & ~same_person_key


def auto_link_allowed(kind: str, levels: np.ndarray) -> np.ndarray:
    """Per pair: may it be linked automatically, or only suggested for review?

    People need personal and corroborating evidence (see above) and must not be
    ``must_stay_apart``. Companies need a corroborating field, and clearly different
    names need an agreeing tax id or domain.
    """
    if kind == "person":
        return (
            _any_level(kind, levels, _PERSONAL)
            & _any_level(kind, levels, _CORROBORATING)
            & ~must_stay_apart(kind, levels)
        )
    comps = COMPARISONS[kind]
    col = {c.name: k for k, c in enumerate(comps)}
    different_name = levels[:, col["name"]] == comps[col["name"]].different
    strong = (levels[:, col["tax_id"]] == 1) | (levels[:, col["domain"]] == 1)
    return _any_level(kind, levels, _ORG_CORROBORATING) & (~different_name | strong)


# -- the model ---------------------------------------------------------------------------


@dataclass
class Score:
    """A scored pair: posterior probability, match weight (bits) and per-field evidence."""

    probability: float
    match_weight: float
    evidence: list[dict[str, Any]]
    auto_link: bool = True  # False: whatever the probability, a steward decides
    cannot_link: bool = False  # True: the evidence says two customers; do not even suggest


@dataclass
class KindModel:
    """Trained parameters for one customer kind."""

    kind: str
    lam: float  # prior probability that two random records are one customer
    m: list[list[float]]  # per comparison, per level (level 0 unused)
    u: list[list[float]]
    tf: dict[str, dict[str, float]] = field(default_factory=dict)  # comparison → value → freq
    tf_floor: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def comparisons(self) -> tuple[Comparison, ...]:
        return COMPARISONS[self.kind]

    def weight_table(self) -> np.ndarray:
        """log2(m/u) per comparison and level, level 0 = 0 (padded to the widest)."""
        comps = self.comparisons
        width = max(len(c.levels) for c in comps)
        table = np.zeros((len(comps), width), dtype=np.float64)
        for c, comp in enumerate(comps):
            for level in range(1, len(comp.levels)):
                table[c, level] = math.log2(self.m[c][level] / self.u[c][level])
        return table

    def prior_weight(self) -> float:
        return math.log2(self.lam / (1.0 - self.lam))

    def tf_arrays(self, frame: Frame) -> dict[int, np.ndarray]:
        """Per tf comparison: the frequency of each of the frame's vocab values."""
        out: dict[int, np.ndarray] = {}
        for c, comp in enumerate(self.comparisons):
            if not comp.tf or comp.name not in self.tf:
                continue
            table = self.tf[comp.name]
            floor = self.tf_floor.get(comp.name, 0.0)
            vocab = frame.columns[comp.column].vocab
            out[c] = np.fromiter(
                (table.get(v, floor) for v in vocab), dtype=np.float64, count=len(vocab)
            )
        return out

    def match_weights(
        self,
        frame: Frame,
        ia: np.ndarray,
        ib: np.ndarray,
        levels: np.ndarray,
        tf_arrays: dict[int, np.ndarray] | None = None,
        *,
        per_field: bool = False,
    ) -> np.ndarray:
        """Total match weight per pair (prior included), or the per-field weights."""
        table = self.weight_table()
        comps = self.comparisons
        weights = np.empty(levels.shape, dtype=np.float64)
        for c in range(len(comps)):
            weights[:, c] = table[c][levels[:, c]]
        if tf_arrays is None:
            tf_arrays = self.tf_arrays(frame)
        for c, freq in tf_arrays.items():
            hit = np.flatnonzero(levels[:, c] == 1)
            if not len(hit):
                continue
            codes = frame.columns[comps[c].column].codes[np.asarray(ia)[hit]]
            u_exact = self.u[c][1]
            # Adjust by how common the shared value is, within 5 bits either way.
            u_value = np.clip(freq[codes], u_exact / 32.0, u_exact * 32.0)
            weights[hit, c] = np.log2(self.m[c][1] / u_value)
        if per_field:
            return weights
        return weights.sum(axis=1) + self.prior_weight()

    def to_dict(self, *, tf_keep: int | None = TF_KEEP) -> dict[str, Any]:
        """Plain JSON-able parameters. Term frequencies keep the ``tf_keep`` most common
        values per field; rarer values then count as rare as the rarest kept one."""
        tf, floors = self.tf, self.tf_floor
        if tf_keep is not None and any(len(t) > tf_keep for t in tf.values()):
            tf, floors = {}, dict(floors)
            for name, table in self.tf.items():
                top = sorted(table.items(), key=lambda kv: (-kv[1], kv[0]))[:tf_keep]
                tf[name] = dict(top)
                if len(table) > tf_keep:
                    floors[name] = max(floors.get(name, 0.0), top[-1][1])
        return {
            "kind": self.kind,
            "lambda": self.lam,
            "comparisons": [
                {
                    "name": comp.name,
                    "levels": [
                        {"label": label, "m": self.m[c][k], "u": self.u[c][k]}
                        for k, label in enumerate(comp.levels)
                        if k > 0
                    ],
                    "tf": comp.tf,
                }
                for c, comp in enumerate(self.comparisons)
            ],
            "tf": tf,
            "tf_floor": floors,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KindModel:
        kind = data["kind"]
        comps = COMPARISONS[kind]
        by_name = {c["name"]: c for c in data["comparisons"]}
        m: list[list[float]] = []
        u: list[list[float]] = []
        for comp in comps:
            stored = by_name.get(comp.name)
            labels = [lv["label"] for lv in stored["levels"]] if stored else []
            if labels != list(comp.levels[1:]):
                raise ValueError(
                    f"stored model's {comp.name!r} levels {labels} do not match the code's "
                    f"{list(comp.levels[1:])}; retrain the model"
                )
            m.append([1.0] + [float(lv["m"]) for lv in stored["levels"]])
            u.append([1.0] + [float(lv["u"]) for lv in stored["levels"]])
        return cls(
            kind=kind,
            lam=float(data["lambda"]),
            m=m,
            u=u,
            tf={k: dict(v) for k, v in data.get("tf", {}).items()},
            tf_floor=dict(data.get("tf_floor", {})),
            meta=dict(data.get("meta", {})),
        )


def _display(record: dict[str, Any], fields: tuple[str, ...]) -> str:
    if len(fields) == 1:
        value = record.get(fields[0])
        return "" if value is None else str(value)
    return ", ".join(str(record[f]) for f in fields if record.get(f) not in (None, ""))


def _probability(weight: float) -> float:
    if weight > 60:
        return 1.0
    if weight < -60:
        return 0.0
    odds = 2.0**weight
    return odds / (1.0 + odds)


def probabilities(weights: np.ndarray) -> np.ndarray:
    """Posterior probability of a match for each total match weight."""
    return 1.0 / (1.0 + np.exp2(-np.clip(weights, -60, 60)))


@dataclass
class IdentityModel:
    """The trained model for every kind: a plain object that round-trips through JSON."""

    kinds: dict[str, KindModel]
    version: int = MODEL_VERSION

    def for_kind(self, kind: str) -> KindModel:
        if kind not in self.kinds:
            raise KeyError(f"the model has no parameters for {kind!r} records; train it first")
        return self.kinds[kind]

    def to_dict(self, *, tf_keep: int | None = TF_KEEP) -> dict[str, Any]:
        return {
            "version": self.version,
            "kinds": {kind: km.to_dict(tf_keep=tf_keep) for kind, km in self.kinds.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IdentityModel:
        if data.get("version") != MODEL_VERSION:
            raise ValueError(f"unsupported model version {data.get('version')!r}")
        return cls(kinds={k: KindModel.from_dict(v) for k, v in data["kinds"].items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> IdentityModel:
        return cls.from_dict(json.loads(text))

    def score_candidates(
        self, record: dict[str, Any], candidates: Sequence[dict[str, Any]]
    ) -> list[Score]:
        """Score one incoming record against its candidates (ingest path), in order.

        A candidate of another kind scores probability 0. Every compared field appears in
        the evidence, with level "missing" and weight 0 when a side has no value.
        """
        from .rules import customer_kind

        kind = customer_kind(record)
        scores: list[Score | None] = [None] * len(candidates)
        same = [n for n, c in enumerate(candidates) if customer_kind(c) == kind]
        same_set = set(same)
        for n, cand in enumerate(candidates):
            if n not in same_set:
                scores[n] = Score(
                    0.0,
                    -math.inf,
                    [
                        {
                            "field": "kind",
                            "level": "different",
                            "weight": -math.inf,
                            "left": kind,
                            "right": customer_kind(cand),
                        }
                    ],
                    auto_link=False,
                    cannot_link=True,
                )
        if same:
            km = self.for_kind(kind)
            frame = prepare([record, *(candidates[n] for n in same)], kind)
            ib = np.arange(1, len(same) + 1)
            ia = np.zeros(len(same), dtype=np.int64)
            levels = comparison_levels(frame, ia, ib)
            per_field = km.match_weights(frame, ia, ib, levels, per_field=True)
            allowed = auto_link_allowed(kind, levels)
            apart = cannot_link(kind, levels) | must_stay_apart(kind, levels)
            prior = km.prior_weight()
            comps = km.comparisons
            left = [_display(record, comp.fields) for comp in comps]
            level_rows = levels.tolist()
            weight_rows = np.round(per_field, 3).tolist()
            totals = (per_field.sum(axis=1) + prior).tolist()
            for k, n in enumerate(same):
                cand = candidates[n]
                evidence = [
                    {
                        "field": comp.name,
                        "level": comp.levels[level_rows[k][c]],
                        "weight": weight_rows[k][c],
                        "left": left[c],
                        "right": _display(cand, comp.fields),
                    }
                    for c, comp in enumerate(comps)
                ]
                total = totals[k]
                scores[n] = Score(
                    _probability(total), total, evidence, bool(allowed[k]), bool(apart[k])
                )
        return [s for s in scores if s is not None]

    def score_pair(self, a: dict[str, Any], b: dict[str, Any]) -> Score:
        """Score two records (canonical field names plus "kind")."""
        return self.score_candidates(a, [b])[0]


def score_pair(a: dict[str, Any], b: dict[str, Any], model: IdentityModel) -> Score:
    """Module-level shortcut for ``model.score_pair(a, b)``."""
    return model.score_pair(a, b)


# -- training ----------------------------------------------------------------------------

_SMOOTH = 1.0  # pseudo-count per level, so no probability is ever 0


def _sample_level_counts(
    frame: Frame, *, n_pairs: int, seed: int, exclude: np.ndarray | None
) -> tuple[list[np.ndarray], int]:
    """Level counts (missing included) over random pairs outside ``exclude``."""
    comps = COMPARISONS[frame.kind]
    rng = np.random.default_rng(seed)
    n = frame.n
    n_pairs = min(n_pairs, n * (n - 1) // 2)
    ia = rng.integers(0, n, size=n_pairs)
    ib = rng.integers(0, n - 1, size=n_pairs)
    ib = ib + (ib >= ia)  # never a record with itself
    ia, ib = np.minimum(ia, ib), np.maximum(ia, ib)
    if exclude is not None and len(exclude):
        keep = ~np.isin(ia * n + ib, exclude)
        ia, ib = ia[keep], ib[keep]
    levels = comparison_levels(frame, ia, ib)
    counts = [
        np.bincount(levels[:, c], minlength=len(comp.levels)).astype(np.float64)
        for c, comp in enumerate(comps)
    ]
    return counts, len(ia)


# Comparisons whose exact level is itself a blocking key: two records agreeing exactly
# are always candidates, so a random sample outside the candidates never sees the level
# (and needs no smoothing for it); their non-matches come from the candidates.
_EXACT_IS_A_BLOCKING_KEY = frozenset({"email", "phone", "national_id", "tax_id", "name", "domain"})


def _unseen_smoothing(comp: Comparison) -> np.ndarray:
    """Half a pseudo-pair per level for the sample, except where the sample cannot see."""
    smooth = np.full(len(comp.levels), 0.5)
    smooth[0] = 0.0
    if comp.name in _EXACT_IS_A_BLOCKING_KEY:
        smooth[1] = 0.0
    return smooth


def _u_from_mass(masses: list[np.ndarray], smooth: float) -> list[list[float]]:
    u = []
    for mass in masses:
        rest = mass[1:] + smooth
        u.append([1.0] + [float(x) for x in rest / rest.sum()])
    return u


def estimate_u(
    frame: Frame,
    *,
    n_pairs: int = 1_000_000,
    seed: int = 0,
    exclude: np.ndarray | None = None,
) -> list[list[float]]:
    """u probabilities from random pairs (+1 smoothing per level).

    ``exclude``: sorted pair keys (i * n + j, i < j) left out of the sample, normally the
    candidate pairs. Random pairs include the true matches, about one in 1/λ; for strong
    keys that is as often as two different people share the key, so u(e-mail exact)
    would come out several times too large. ``train_kind`` then adds the candidates'
    expected non-matches back (``refine_u``).
    """
    counts, _ = _sample_level_counts(frame, n_pairs=n_pairs, seed=seed, exclude=exclude)
    return _u_from_mass(counts, _SMOOTH)


def posteriors(
    levels: np.ndarray,
    comps: Sequence[Comparison],
    m: list[list[float]],
    u: list[list[float]],
    lam: float,
) -> np.ndarray:
    """P(match | levels) per pair, without term frequencies (as in EM)."""
    if not len(levels):
        return np.zeros(0)
    shifts = np.arange(levels.shape[1], dtype=np.int64) * 3
    codes, inverse = np.unique((levels.astype(np.int64) << shifts).sum(axis=1), return_inverse=True)
    patterns = (codes[:, None] >> shifts) & 7
    logit = np.full(len(codes), math.log(lam) - math.log1p(-lam))
    for c in range(len(comps)):
        ratio_c = np.log(np.asarray(m[c])) - np.log(np.asarray(u[c]))
        ratio_c[0] = 0.0
        logit += ratio_c[patterns[:, c]]
    post = 1.0 / (1.0 + np.exp(-np.clip(logit, -700, 700)))
    return post[inverse.reshape(-1)]


def _default_m(comps: Sequence[Comparison]) -> list[list[float]]:
    """Starting m: most matches agree exactly, few differ."""
    m = []
    for comp in comps:
        k = len(comp.levels) - 1
        if k == 2:
            start = [0.9, 0.1]
        else:
            middle = [0.1 / (k - 2)] * (k - 2)
            start = [0.85, *middle, 0.05]
        m.append([1.0, *start])
    return m


def expectation_maximisation(
    levels: np.ndarray,
    comps: Sequence[Comparison],
    m: list[list[float]],
    u: list[list[float]],
    *,
    lam: float = 0.5,
    fixed: Iterable[str] = (),
    estimate_m: bool = True,
    max_iterations: int = 40,
    tolerance: float = 1e-5,
) -> tuple[list[list[float]], float]:
    """EM over blocked pairs with u fixed: returns (m, λ within the pairs).

    Comparisons named in ``fixed`` (the blocking rule's own fields, which agree on every
    pair by construction) keep their m. Pairs are grouped by level pattern first, so each
    iteration costs the number of distinct patterns, not of pairs.
    """
    fixed = set(fixed)
    # One int64 per level pattern (3 bits per comparison) sorts far faster than rows.
    shifts = np.arange(levels.shape[1], dtype=np.int64) * 3
    codes, counts = np.unique((levels.astype(np.int64) << shifts).sum(axis=1), return_counts=True)
    patterns = ((codes[:, None] >> shifts) & 7).astype(np.uint8)
    counts = counts.astype(np.float64)
    m = [list(row) for row in m]
    for _ in range(max_iterations):
        log_m = np.zeros(len(patterns))
        log_u = np.zeros(len(patterns))
        for c in range(len(comps)):
            mc = np.log(np.asarray(m[c]))
            uc = np.log(np.asarray(u[c]))
            mc[0] = uc[0] = 0.0
            log_m += mc[patterns[:, c]]
            log_u += uc[patterns[:, c]]
        logit = np.log(lam) - np.log1p(-lam) + log_m - log_u
        post = 1.0 / (1.0 + np.exp(-np.clip(logit, -700, 700)))
        weighted = post * counts
        new_lam = float(weighted.sum() / counts.sum())
        new_lam = min(max(new_lam, 1e-9), 1 - 1e-9)
        delta = abs(new_lam - lam)
        lam = new_lam
        if estimate_m:
            for c, comp in enumerate(comps):
                if comp.name in fixed:
                    continue
                sums = np.bincount(patterns[:, c], weights=weighted, minlength=len(comp.levels))[
                    : len(comp.levels)
                ]
                sums[1:] += 1e-3 * max(weighted.sum(), 1.0) / len(comp.levels)
                total = sums[1:].sum()
                if total <= 0:
                    continue
                new = [1.0] + [float(x) for x in sums[1:] / total]
                delta = max(delta, max(abs(a - b) for a, b in zip(new, m[c], strict=True)))
                m[c] = new
        if delta < tolerance:
            break
    return m, lam


def term_frequencies(frame: Frame, *, keep: int | None = None) -> tuple[dict, dict]:
    """Per tf comparison: value → share of the records that have a value, and the floor
    used for values not kept (the rarest kept share)."""
    tf: dict[str, dict[str, float]] = {}
    floors: dict[str, float] = {}
    for comp in COMPARISONS[frame.kind]:
        if not comp.tf:
            continue
        col = frame.columns[comp.column]
        codes = col.codes[col.codes >= 0]
        if not len(codes):
            continue
        counts = np.bincount(codes, minlength=len(col.vocab))
        order = np.argsort(-counts, kind="stable")
        order = order[counts[order] > 0]
        if keep is not None:
            order = order[:keep]
        total = float(len(codes))
        tf[comp.name] = {str(col.vocab[v]): float(counts[v] / total) for v in order}
        floors[comp.name] = float(counts[order[-1]] / total) if len(order) else 0.0
        if keep is None:
            floors[comp.name] = 1.0 / total
    return tf, floors


# Training sessions: block EM on strong keys. Blocking it on names lets EM lock onto
# "same family" instead of "same person" (SPLINK-NOTES: nonsense birth-date weights).
TRAINING_SESSIONS: dict[str, tuple[tuple[str, ...], ...]] = {
    "person": (("email",), ("first_name", "last_name", "birth_date")),
    "organization": (("domain",), ("tax_id",), ("name", "phone")),
}


def _session_pairs(
    frame: Frame, session: tuple[str, ...], *, max_block: int, max_pairs: int, seed: int
):
    """Pairs that agree exactly on every comparison of the session."""
    from .blocking import pairs_from_keys

    by_name = {c.name: c for c in COMPARISONS[frame.kind]}
    parts = [
        frame.dob.astype(np.int64) if name == "birth_date"
        else frame.columns[by_name[name].column].codes.astype(np.int64)
        for name in session
    ]  # fmt: skip
    missing = np.zeros(frame.n, dtype=bool)
    for name, part in zip(session, parts, strict=True):
        missing |= part <= 0 if name == "birth_date" else part < 0
    _, keys = np.unique(np.stack(parts, axis=1), axis=0, return_inverse=True)
    keys = keys.reshape(-1).astype(np.int64)
    keys[missing] = -1
    ia, ib, _ = pairs_from_keys(keys, max_block=max_block)
    if len(ia) > max_pairs:
        pick = np.random.default_rng(seed).choice(len(ia), size=max_pairs, replace=False)
        ia, ib = ia[pick], ib[pick]
    return ia, ib


def train_kind(
    frame: Frame,
    *,
    candidate_pairs: tuple[np.ndarray, np.ndarray] | None = None,
    candidate_levels: np.ndarray | None = None,
    u_pairs: int | None = None,
    session_pairs: int = 2_000_000,
    seed: int = 0,
    tf_keep: int | None = None,
) -> KindModel:
    """Train one kind's parameters unsupervised.

    1. u from random pairs outside the candidate pairs; 2. m by EM in sessions blocked on
    strong keys, each comparison's m averaged over the sessions where it was free; 3. λ
    by EM with m and u fixed over the candidate pairs, scaled to all pairs of the
    population; 4. u refined: the sampled non-candidate pairs plus the candidates'
    expected non-matches (posterior), then λ again (three rounds).
    """
    comps = COMPARISONS[frame.kind]
    if candidate_pairs is None:
        from .blocking import block

        blocked = block(frame)
        candidate_pairs = (blocked.ia, blocked.ib)
    ia, ib = candidate_pairs
    if u_pairs is None:
        u_pairs = min(1_000_000, max(200_000, 20 * frame.n))
    sample_counts, sampled = _sample_level_counts(
        frame, n_pairs=u_pairs, seed=seed, exclude=np.sort(ia * frame.n + ib)
    )
    u = _u_from_mass(sample_counts, _SMOOTH)
    m_sum = [[0.0] * len(c.levels) for c in comps]
    m_n = [0] * len(comps)
    sessions_meta = []
    for session in TRAINING_SESSIONS[frame.kind]:
        ia, ib = _session_pairs(frame, session, max_block=50, max_pairs=session_pairs, seed=seed)
        if len(ia) < 50:
            sessions_meta.append({"blocked_on": list(session), "pairs": len(ia)})
            continue
        levels = comparison_levels(frame, ia, ib)
        m, lam = expectation_maximisation(
            levels, comps, _default_m(comps), u, lam=0.5, fixed=session
        )
        sessions_meta.append(
            {"blocked_on": list(session), "pairs": len(ia), "lambda": round(lam, 4)}
        )
        for c, comp in enumerate(comps):
            if comp.name in session:
                continue
            m_n[c] += 1
            for k in range(len(comp.levels)):
                m_sum[c][k] += m[c][k]
    default = _default_m(comps)
    m_final = [[x / m_n[c] for x in m_sum[c]] if m_n[c] else default[c] for c in range(len(comps))]
    for c in range(len(comps)):
        m_final[c][0] = 1.0
    ia, ib = candidate_pairs
    if candidate_levels is None:
        candidate_levels = comparison_levels(frame, ia, ib)
    if len(ia):
        _, lam_candidates = expectation_maximisation(
            candidate_levels, comps, m_final, u, lam=0.1, estimate_m=False
        )
    else:
        lam_candidates = 0.0
    all_pairs = max(frame.n * (frame.n - 1) / 2, 1.0)
    if len(ia) and sampled:
        # All pairs = candidates + the rest. The sample speaks for the rest; candidates
        # add their expected non-matches. Without them u(e-mail exact) is just the
        # sample's smoothing floor (two records sharing an e-mail are always candidates),
        # about 1 / sample size, and an exact e-mail alone stops linking at a million.
        scale = (all_pairs - len(ia)) / sampled
        for _ in range(3):
            nonmatch = 1.0 - posteriors(candidate_levels, comps, m_final, u, lam_candidates)
            masses = [
                (sample_counts[c] + _unseen_smoothing(comp)) * scale
                + np.bincount(candidate_levels[:, c], weights=nonmatch, minlength=len(comp.levels))
                for c, comp in enumerate(comps)
            ]
            u = _u_from_mass(masses, 1.0)
            _, lam_candidates = expectation_maximisation(
                candidate_levels, comps, m_final, u, lam=lam_candidates, estimate_m=False
            )
    lam = min(max(lam_candidates * len(ia) / all_pairs, 1e-12), 0.5)
    for c, comp in enumerate(comps):
        seen = sample_counts[c][1:].sum() + (candidate_levels[:, c] > 0).sum()
        if not seen:  # never both present: no evidence either way
            m_final[c] = u[c] = [1.0] + [1.0 / (len(comp.levels) - 1)] * (len(comp.levels) - 1)
    tf, floors = term_frequencies(frame, keep=tf_keep)
    return KindModel(
        kind=frame.kind,
        lam=lam,
        m=m_final,
        u=u,
        tf=tf,
        tf_floor=floors,
        meta={
            "records": frame.n,
            "sessions": sessions_meta,
            "candidate_pairs": len(ia),
            "lambda_candidates": round(lam_candidates, 6),
        },
    )


def train(
    records: Sequence[dict[str, Any]], *, seed: int = 0, tf_keep: int | None = TF_KEEP
) -> IdentityModel:
    """Train a model for every kind present in ``records`` (unsupervised)."""
    from .rules import customer_kind

    by_kind: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_kind.setdefault(customer_kind(record), []).append(record)
    kinds = {}
    for kind, group in by_kind.items():
        if len(group) < 2:
            continue
        kinds[kind] = train_kind(prepare(group, kind), seed=seed, tf_keep=tf_keep)
    return IdentityModel(kinds=kinds)
