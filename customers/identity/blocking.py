"""Blocking: which pairs are worth scoring. Pure functions, no ORM.

Comparing every record with every other is quadratic; blocking compares only records that
share a key (the same e-mail, the same phone, the same sounding last name and birth date
…), so the work grows near-linearly. Two forms of the same rules:

* ``candidate_keys(record)`` — string keys for one record. The ingest path stores them per
  customer and looks up candidates that share any key with an incoming record.
* ``block(frame)`` — the batch form: integer keys computed column-wise, blocks turned into
  pairs with numpy. Both give the same blocks (a test checks it).

Guards: a block larger than ``max_block`` (usually a placeholder or a switchboard number)
is skipped and reported, and ``shared_key_guard`` finds e-mails and phones shared by more
than K distinct people or companies; those stop being keys and evidence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import jellyfish
import numpy as np

from . import normalize
from .model import Frame, _factorize, prepare

PERSON_RULES = (
    "email",
    "phone",
    "last_dob",
    "names_year",
    "names",
    "first_dob",
    "dob_postal",
    "last_postal",
    "national_id",
    "tax_id",
)
ORGANIZATION_RULES = ("org_name", "domain", "email", "phone", "tax_id", "name_postal")
RULES = {"person": PERSON_RULES, "organization": ORGANIZATION_RULES}
# Keys whose values are checked by the shared-key guard: they are evidence, not just blocks.
GUARDED = {"person": ("email", "phone"), "organization": ("email", "phone")}
DEFAULT_MAX_BLOCK = 200
# Tighter caps for weak rules. A name alone never auto-links (model.auto_link_allowed), so
# the name-only rule is only worth it for rare names; common ones would cost millions of
# pairs at a million records and add nothing the other rules do not find.
RULE_MAX_BLOCK = {"names": 20}
DEFAULT_MAX_KEY_ENTITIES = 5


@lru_cache(maxsize=200_000)
def sound(name: str) -> str:
    """Metaphone of a name key ("" for none): Smith, Smyth and Schmitt block together."""
    letters = "".join(c for c in name if c.isalpha() or c == " ")
    return jellyfish.metaphone(letters).replace(" ", "") if letters.strip() else ""


@lru_cache(maxsize=200_000)
def first_key(first: str) -> str:
    """One spelling per given name for blocking: the formal name when a nickname stands
    for exactly one ("bob" → "robert"), else the name itself ("al" stays "al")."""
    forms = normalize.name_forms(first) - {first}
    return next(iter(forms)) if len(forms) == 1 else first


def _org_head(org_key: str) -> str:
    return sound(org_key.split(" ", 1)[0]) if org_key else ""


# -- ingest form -------------------------------------------------------------------------


def candidate_keys(record: dict[str, Any], kind: str | None = None) -> list[str]:
    """Blocking keys of one record, as "rule:value" strings (sorted, no duplicates).

    Shared-key suppression is not applied here: the caller drops keys whose value is
    shared by more than K distinct customers (see ``shared_key_guard``). Every key fits
    ``IdentityKey.value`` (255 characters; longer ones are hashed).
    """
    from .rules import customer_kind

    kind = kind or customer_kind(record)
    frame = prepare([record], kind)
    return sorted({_fit(key) for key in _frame_keys(frame, 0)})


MAX_KEY_LENGTH = 255  # IdentityKey.value


def _fit(key: str) -> str:
    """Keys longer than the database column keep their rule and a SHA-1 of the rest."""
    if len(key) <= MAX_KEY_LENGTH:
        return key
    rule, _, value = key.partition(":")
    return f"{rule}:sha1:{hashlib.sha1(value.encode()).hexdigest()}"


def _frame_keys(frame: Frame, i: int) -> list[str]:
    cols = frame.columns
    keys: list[str] = []

    def val(name: str) -> str:
        return cols[name].value(i)

    if frame.kind == "person":
        first, last, dob = val("first_name"), val("last_name"), int(frame.dob[i])
        email, phone, postal = val("email"), val("phone"), val("postal")
        if email:
            keys.append(f"email:{email}")
        if phone:
            keys.append(f"phone:{phone}")
        if last and dob and sound(last):
            keys.append(f"last_dob:{sound(last)}|{dob}")
        if first and last and dob and sound(first_key(first)) and sound(last):
            a, b = sorted((sound(first_key(first)), sound(last)))
            keys.append(f"names_year:{a}|{b}|{dob // 10000}")
        if first and last and sound(first_key(first)) and sound(last):
            a, b = sorted((sound(first_key(first)), sound(last)))
            keys.append(f"names:{a}|{b}")
        if first and dob and sound(first_key(first)):
            keys.append(f"first_dob:{sound(first_key(first))}|{dob}")
        if dob and postal:
            keys.append(f"dob_postal:{dob}|{postal}")
        if last and postal:
            keys.append(f"last_postal:{last[:3]}|{postal}")
        if val("national_id"):
            keys.append(f"national_id:{val('national_id')}")
        if val("tax_id"):
            keys.append(f"tax_id:{val('tax_id')}")
    else:
        org, postal = val("org_name"), val("postal")
        if org:
            keys.append(f"org_name:{org}")
        if val("domain"):
            keys.append(f"domain:{val('domain')}")
        if val("email"):
            keys.append(f"email:{val('email')}")
        if val("phone"):
            keys.append(f"phone:{val('phone')}")
        if val("tax_id"):
            keys.append(f"tax_id:{val('tax_id')}")
        if org and postal and _org_head(org):
            keys.append(f"name_postal:{_org_head(org)}|{postal}")
    return keys


# -- batch form ---------------------------------------------------------------------------


def _vocab_map(vocab: np.ndarray, fn) -> np.ndarray:
    """Apply ``fn`` to each vocab value and factorize the results ("" → -1)."""
    codes, _ = _factorize([fn(v) for v in vocab])
    return np.append(codes, -1).astype(np.int64)  # index -1 (missing) → -1


def _combine(a: np.ndarray, b: np.ndarray, b_size: int) -> np.ndarray:
    out = a * (b_size + 1) + b
    out[(a < 0) | (b < 0)] = -1
    return out


def rule_keys(frame: Frame, rule: str) -> np.ndarray:
    """Integer key per record for one rule (-1 = no key); equal keys ⇔ equal string keys."""
    cols = frame.columns

    def codes(name: str) -> np.ndarray:
        return cols[name].codes.astype(np.int64)

    if rule in ("email", "phone", "national_id", "tax_id", "domain", "org_name"):
        return codes(rule)
    if rule == "last_dob":
        last_sound = _vocab_map(cols["last_name"].vocab, sound)[codes("last_name")]
        dob = frame.dob.astype(np.int64)
        return _combine(last_sound, np.where(dob > 0, dob, -1), 99_991_231)
    if rule in ("names_year", "names"):
        # First and last names share one vocabulary and are sounded into one space, so
        # the (first, last) pair can be sorted: swapped names give the same key.
        vocab = cols["first_name"].vocab
        index: dict[str, int] = {}

        def sound_id(text: str) -> int:
            return index.setdefault(text, len(index)) if text else -1

        first_form = np.array([sound_id(sound(first_key(v))) for v in vocab] + [-1])
        last_sound = np.array([sound_id(sound(v)) for v in vocab] + [-1])
        fa = first_form.astype(np.int64)[codes("first_name")]
        la = last_sound.astype(np.int64)[codes("last_name")]
        pair = _combine(np.minimum(fa, la), np.maximum(fa, la), len(index))
        if rule == "names":
            return pair
        year = np.where(frame.dob > 0, frame.dob // 10000, -1).astype(np.int64)
        return _combine(pair, year, 9999)
    if rule == "first_dob":
        vocab = cols["first_name"].vocab
        first_sound = _vocab_map(vocab, lambda v: sound(first_key(v)))[codes("first_name")]
        dob = frame.dob.astype(np.int64)
        return _combine(first_sound, np.where(dob > 0, dob, -1), 99_991_231)
    if rule == "dob_postal":
        dob = frame.dob.astype(np.int64)
        return _combine(np.where(dob > 0, dob, -1), codes("postal"), len(cols["postal"].vocab))
    if rule == "last_postal":
        prefix = _vocab_map(cols["last_name"].vocab, lambda v: v[:3])[codes("last_name")]
        postal = codes("postal")
        return _combine(prefix, postal, len(cols["postal"].vocab))
    if rule == "name_postal":
        head = _vocab_map(cols["org_name"].vocab, _org_head)[codes("org_name")]
        return _combine(head, codes("postal"), len(cols["postal"].vocab))
    raise ValueError(f"unknown blocking rule {rule!r}")


@dataclass
class OversizeBlock:
    rule: str
    size: int
    example: str  # a record index of the block, to find the shared value


def pairs_from_keys(
    keys: np.ndarray, *, max_block: int = DEFAULT_MAX_BLOCK
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    """Every pair (i < j) of records with the same key, from blocks of at most
    ``max_block`` records; returns (ia, ib, [(example record, size) of skipped blocks])."""
    idx = np.flatnonzero(keys >= 0)
    k = keys[idx]
    order = np.argsort(k, kind="stable")
    idx, k = idx[order], k[order]
    if not len(k):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, []
    starts = np.r_[0, np.flatnonzero(np.diff(k)) + 1]
    sizes = np.diff(np.r_[starts, len(k)])
    big = sizes > max_block
    skipped = [(int(idx[s]), int(z)) for s, z in zip(starts[big], sizes[big], strict=True)]
    keep = (sizes >= 2) & (sizes <= max_block)
    starts, sizes = starts[keep], sizes[keep]
    out_a, out_b = [], []
    for size in np.unique(sizes):
        block_starts = starts[sizes == size]
        members = idx[block_starts[:, None] + np.arange(size)]
        a, b = np.triu_indices(int(size), 1)
        out_a.append(members[:, a].ravel())
        out_b.append(members[:, b].ravel())
    if not out_a:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, skipped
    ia = np.concatenate(out_a).astype(np.int64)
    ib = np.concatenate(out_b).astype(np.int64)
    lo, hi = np.minimum(ia, ib), np.maximum(ia, ib)
    return lo, hi, skipped


@dataclass
class Blocking:
    ia: np.ndarray
    ib: np.ndarray
    stats: dict[str, Any] = field(default_factory=dict)
    oversize: list[OversizeBlock] = field(default_factory=list)


def block(
    frame: Frame,
    *,
    rules: Sequence[str] | None = None,
    max_block: int = DEFAULT_MAX_BLOCK,
) -> Blocking:
    """Candidate pairs of a frame: the union of every rule's blocks, each pair once."""
    rules = rules or RULES[frame.kind]
    stats: dict[str, Any] = {"rules": {}}
    oversize: list[OversizeBlock] = []
    n = max(frame.n, 1)
    found = []
    for rule in rules:
        cap = min(max_block, RULE_MAX_BLOCK.get(rule, max_block))
        ia, ib, skipped = pairs_from_keys(rule_keys(frame, rule), max_block=cap)
        found.append(ia * n + ib)
        stats["rules"][rule] = {"pairs": len(ia), "oversize_blocks": len(skipped)}
        oversize += [OversizeBlock(rule, size, str(example)) for example, size in skipped]
    everything = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
    pairs, first = np.unique(everything, return_index=True)
    # Which rule found each pair first: the rules' share of the work, for the report.
    bounds = np.cumsum([len(f) for f in found])
    first_rule = np.searchsorted(bounds, first, side="right")
    for r, rule in enumerate(rules):
        stats["rules"][rule]["new_pairs"] = int((first_rule == r).sum())
    stats["pairs"] = len(pairs)
    stats["oversize_blocks"] = len(oversize)
    return Blocking(ia=pairs // n, ib=pairs % n, stats=stats, oversize=oversize)


def _signature(frame: Frame) -> np.ndarray:
    """Who a record is, roughly, to count distinct entities behind a shared key: first
    initial + sounded last name for people, the name key for companies."""
    cols = frame.columns
    if frame.kind == "person":
        first = cols["first_name"]
        initial = _vocab_map(first.vocab, lambda v: v[:1])[first.codes.astype(np.int64)]
        last = cols["last_name"]
        last_sound = _vocab_map(last.vocab, sound)[last.codes.astype(np.int64)]
        return _combine(initial, last_sound, len(last.vocab))
    return cols["org_name"].codes.astype(np.int64)


@dataclass
class SharedKey:
    column: str
    value: str
    records: int
    entities: int


def shared_key_guard(
    frame: Frame, *, max_entities: int = DEFAULT_MAX_KEY_ENTITIES, apply: bool = True
) -> list[SharedKey]:
    """Find e-mails and phones shared by more than ``max_entities`` distinct people (or
    companies): info@ boxes, switchboards, placeholders nobody listed. With ``apply`` they
    become missing in the frame, so they neither block nor count as evidence."""
    signature = _signature(frame)
    found: list[SharedKey] = []
    for column in GUARDED[frame.kind]:
        col = frame.columns[column]
        codes = col.codes.astype(np.int64)
        ok = (codes >= 0) & (signature >= 0)
        if not ok.any():
            continue
        pairs = np.unique(codes[ok] * (int(signature.max()) + 1) + signature[ok])
        value_of_pair = pairs // (int(signature.max()) + 1)
        entities = np.bincount(value_of_pair, minlength=len(col.vocab))
        shared = np.flatnonzero(entities > max_entities)
        if not len(shared):
            continue
        records = np.bincount(codes[codes >= 0], minlength=len(col.vocab))
        found += [
            SharedKey(column, str(col.vocab[v]), int(records[v]), int(entities[v])) for v in shared
        ]
        if apply:
            hit = np.isin(col.codes, shared)
            col.codes[hit] = -1
    found.sort(key=lambda s: -s.entities)
    return found
