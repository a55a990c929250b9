"""Thresholds and clustering with guards against chaining. Pure functions, no ORM.

A scored pair is linked above the kind's upper threshold, sent to review between the
thresholds, and left apart below. Linked pairs form clusters (connected components), but
transitive closure chains records: A-B and B-C link A and C even when A and C are clearly
different people (SPLINK-NOTES: clusters of 573 at 1M records). So:

* cannot-link rules: records with different tax ids, national ids or clearly different
  birth dates (not a typo, not day/month transposed) never end in one cluster, and neither
  do pairs a steward marked "not the same" (NotDuplicate);
* a cluster never grows past ``max_cluster_size``;
* within a component that breaks a rule, pairs are merged greedily strongest first, and a
  merge that would break a rule is refused (size-cap refusals go to review).

Components that break no rule (nearly all) are settled with numpy alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .model import dob_compatible


@dataclass(frozen=True)
class Thresholds:
    """Auto-link at or above ``upper``; review from ``lower`` up to ``upper``."""

    upper: float
    lower: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.lower <= self.upper <= 1.0:
            raise ValueError("thresholds need 0 <= lower <= upper <= 1")


DEFAULT_THRESHOLDS: dict[str, Thresholds] = {
    "person": Thresholds(upper=0.95, lower=0.30),
    "organization": Thresholds(upper=0.95, lower=0.30),
}
DEFAULT_MAX_CLUSTER_SIZE = 25


def decide(
    probability: float,
    kind: str,
    thresholds: dict[str, Thresholds] | None = None,
    *,
    auto_link: bool = True,
    cannot_link: bool = False,
) -> str:
    """ "link", "review" or "new" for one scored pair (the ingest path's decision); pass
    ``Score.auto_link`` and ``Score.cannot_link`` along with ``Score.probability``."""
    t = (thresholds or DEFAULT_THRESHOLDS)[kind]
    if cannot_link:
        return "new"
    if probability >= t.upper and auto_link:
        return "link"
    if probability >= t.lower:
        return "review"
    return "new"


def connected_components(n: int, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
    """Label per node (the smallest node index of its component), by min-label propagation
    with pointer jumping: a handful of vectorized passes instead of a loop per edge."""
    parent = np.arange(n, dtype=np.int64)
    ia = np.asarray(ia, dtype=np.int64)
    ib = np.asarray(ib, dtype=np.int64)
    if not len(ia):
        return parent
    while True:
        pa, pb = parent[ia], parent[ib]
        if np.array_equal(pa, pb):
            return parent
        low = np.minimum(pa, pb)
        np.minimum.at(parent, pa, low)
        np.minimum.at(parent, pb, low)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


@dataclass
class CannotLink:
    """What must not end in one cluster.

    ``exact``: per-record values that must agree when both are known (tax id, national
    id; codes, -1 = unknown). ``birth_date``: yyyymmdd ints (0 = unknown) that must be
    compatible (equal, transposed, one typo). ``pairs``: record index pairs that must
    stay apart: "not the same" decisions and pairs whose own evidence says two customers.
    """

    exact: dict[str, np.ndarray] = field(default_factory=dict)
    birth_date: np.ndarray | None = None
    pairs: tuple[np.ndarray, np.ndarray] = field(
        default_factory=lambda: (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    )

    def __post_init__(self) -> None:
        a, b = (np.asarray(x, dtype=np.int64) for x in self.pairs)
        self.pairs = (np.minimum(a, b), np.maximum(a, b))
        self._n = int(max(a.max(initial=0), b.max(initial=0))) + 1
        self._keys = np.unique(self.pairs[0] * self._n + self.pairs[1])

    def listed(self, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
        """True for pairs in ``pairs``."""
        lo, hi = np.minimum(ia, ib), np.maximum(ia, ib)
        inside = hi < self._n
        out = np.zeros(len(ia), dtype=bool)
        out[inside] = np.isin(lo[inside] * self._n + hi[inside], self._keys)
        return out

    def pair_conflicts(self, ia: np.ndarray, ib: np.ndarray) -> np.ndarray:
        """True for pairs whose own values forbid a link."""
        bad = self.listed(ia, ib) if len(self._keys) else np.zeros(len(ia), dtype=bool)
        for codes in self.exact.values():
            a, b = codes[ia], codes[ib]
            bad |= (a >= 0) & (b >= 0) & (a != b)
        if self.birth_date is not None:
            a, b = self.birth_date[ia], self.birth_date[ib]
            both = np.flatnonzero((a > 0) & (b > 0) & (a != b) & ~bad)
            if len(both):
                bad[both] = [
                    not dob_compatible(int(x), int(y))
                    for x, y in zip(a[both].tolist(), b[both].tolist(), strict=True)
                ]
        return bad


@dataclass
class ClusterResult:
    labels: np.ndarray  # cluster label per record (smallest record index of the cluster)
    review: tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]  # ia, ib, probability, why
    stats: dict[str, Any]


def _bad_components(labels: np.ndarray, rules: CannotLink, max_cluster_size: int) -> set[int]:
    """Components that break a rule: too big, two tax ids, incompatible birth dates …"""
    bad: set[int] = set()
    roots, sizes = np.unique(labels, return_counts=True)
    bad.update(roots[sizes > max_cluster_size].tolist())
    for codes in rules.exact.values():
        has = np.flatnonzero(codes >= 0)
        pairs = np.unique(np.stack([labels[has], codes[has]], axis=1), axis=0)
        comp, count = np.unique(pairs[:, 0], return_counts=True)
        bad.update(comp[count > 1].tolist())
    if rules.birth_date is not None:
        dob = rules.birth_date
        has = np.flatnonzero(dob > 0)
        pairs = np.unique(np.stack([labels[has], dob[has].astype(np.int64)], axis=1), axis=0)
        comp, count = np.unique(pairs[:, 0], return_counts=True)
        for root in comp[count > 1].tolist():
            if root in bad:
                continue
            dates = pairs[pairs[:, 0] == root, 1].tolist()
            if any(not dob_compatible(x, y) for k, x in enumerate(dates) for y in dates[k + 1 :]):
                bad.add(root)
    pa, pb = rules.pairs
    inside = labels[pa] == labels[pb]
    bad.update(labels[pa[inside]].tolist())
    return bad


class _Greedy:
    """Union-find that refuses merges breaking a rule (used on troubled components only)."""

    def __init__(
        self, rules: CannotLink, max_cluster_size: int, apart: tuple[np.ndarray, np.ndarray]
    ) -> None:
        self.rules = rules
        self.cap = max_cluster_size
        self.parent: dict[int, int] = {}
        self.members: dict[int, list[int]] = {}
        self.exact: dict[int, dict[str, int]] = {}
        self.dobs: dict[int, set[int]] = {}
        self.forbidden: dict[int, set[int]] = {}
        self.partners: dict[int, set[int]] = {}
        for x, y in zip(apart[0].tolist(), apart[1].tolist(), strict=True):
            self.partners.setdefault(x, set()).add(y)
            self.partners.setdefault(y, set()).add(x)

    def _add(self, i: int) -> None:
        if i in self.parent:
            return
        self.parent[i] = i
        self.members[i] = [i]
        self.exact[i] = {
            name: int(codes[i]) for name, codes in self.rules.exact.items() if codes[i] >= 0
        }
        dob = self.rules.birth_date
        self.dobs[i] = {int(dob[i])} if dob is not None and dob[i] > 0 else set()
        self.forbidden[i] = set(self.partners.get(i, ()))

    def find(self, i: int) -> int:
        self._add(i)
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def try_union(self, i: int, j: int) -> str:
        a, b = self.find(i), self.find(j)
        if a == b:
            return "same"
        if len(self.members[a]) + len(self.members[b]) > self.cap:
            return "size_cap"
        ea, eb = self.exact[a], self.exact[b]
        if any(name in eb and eb[name] != value for name, value in ea.items()):
            return "cannot_link"
        if any(not dob_compatible(x, y) for x in self.dobs[a] for y in self.dobs[b]):
            return "cannot_link"
        small, large = (a, b) if len(self.members[a]) <= len(self.members[b]) else (b, a)
        if any(self.find(f) == large for f in list(self.forbidden[small])) or any(
            self.find(f) == small for f in list(self.forbidden[large])
        ):
            return "not_duplicate"
        self.parent[small] = large
        self.members[large] += self.members.pop(small)
        self.exact[large] = {**self.exact.pop(small), **self.exact[large]}
        self.dobs[large] |= self.dobs.pop(small)
        self.forbidden[large] |= self.forbidden.pop(small)
        return "linked"


def cluster_pairs(
    n: int,
    ia: np.ndarray,
    ib: np.ndarray,
    probability: np.ndarray,
    *,
    thresholds: Thresholds,
    rules: CannotLink | None = None,
    max_cluster_size: int = DEFAULT_MAX_CLUSTER_SIZE,
    auto_link: np.ndarray | None = None,
    conflict: np.ndarray | None = None,
) -> ClusterResult:
    """Cluster ``n`` records from scored pairs; returns labels and the review pairs.

    ``auto_link`` (per pair, default all True): False keeps a pair out of automatic
    linking whatever its probability; it is suggested for review instead. ``conflict``
    (per pair, optional): the pair's own values forbid a link (different ids, incompatible
    birth dates); computed from ``rules`` when not given.
    """
    rules = rules or CannotLink()
    ia = np.asarray(ia, dtype=np.int64)
    ib = np.asarray(ib, dtype=np.int64)
    probability = np.asarray(probability, dtype=np.float64)
    stats: dict[str, Any] = {}
    candidate = probability >= thresholds.lower
    if conflict is None:
        conflict = np.zeros(len(ia), dtype=bool)
        conflict[candidate] = rules.pair_conflicts(ia[candidate], ib[candidate])
    else:  # the caller's own cannot-link verdicts (from comparison levels), plus ours
        conflict = np.asarray(conflict, dtype=bool) | rules.listed(ia, ib)
    stats["pairs_blocked_by_rules"] = int(conflict.sum())
    link = (probability >= thresholds.upper) & ~conflict
    if auto_link is not None:
        stats["pairs_held_for_review"] = int((link & ~auto_link).sum())
        link &= np.asarray(auto_link, dtype=bool)
    la, lb, lp = ia[link], ib[link], probability[link]
    labels = connected_components(n, la, lb)
    bad = _bad_components(labels, rules, max_cluster_size)
    stats["components_repaired"] = len(bad)
    refused_a: list[int] = []
    refused_b: list[int] = []
    refused_p: list[float] = []
    refused_reason: dict[str, int] = {}
    if bad:
        bad_arr = np.fromiter(bad, dtype=np.int64)
        in_bad = np.isin(labels[la], bad_arr)
        ga, gb, gp = la[in_bad], lb[in_bad], lp[in_bad]
        order = np.argsort(-gp, kind="stable")
        pa, pb = rules.pairs
        troubled = np.isin(labels[pa], bad_arr) & np.isin(labels[pb], bad_arr)
        greedy = _Greedy(rules, max_cluster_size, (pa[troubled], pb[troubled]))
        for x, y, p in zip(ga[order].tolist(), gb[order].tolist(), gp[order].tolist(), strict=True):
            outcome = greedy.try_union(x, y)
            if outcome in ("linked", "same"):
                continue
            refused_reason[outcome] = refused_reason.get(outcome, 0) + 1
            if outcome == "size_cap":
                refused_a.append(x)
                refused_b.append(y)
                refused_p.append(p)
        members = np.flatnonzero(np.isin(labels, bad_arr))
        labels[members] = members  # reset, then relabel from the greedy clusters
        for root, group in greedy.members.items():
            labels[np.asarray(group, dtype=np.int64)] = min(group) if group else root
    stats["links_refused"] = refused_reason
    # Review: between the thresholds, or refused by the size cap; one pair per two clusters.
    between = candidate & ~link & ~conflict
    ra = np.concatenate([ia[between], np.asarray(refused_a, dtype=np.int64)])
    rb = np.concatenate([ib[between], np.asarray(refused_b, dtype=np.int64)])
    rp = np.concatenate([probability[between], np.asarray(refused_p, dtype=np.float64)])
    held = (probability[between] >= thresholds.upper).tolist()
    reasons = ["needs_personal_evidence" if h else "between_thresholds" for h in held]
    reasons += ["size_cap"] * len(refused_a)
    apart = labels[ra] != labels[rb]
    ra, rb, rp = ra[apart], rb[apart], rp[apart]
    reasons = [r for r, keep in zip(reasons, apart.tolist(), strict=True) if keep]
    if len(ra):
        ca, cb = labels[ra], labels[rb]
        key = np.minimum(ca, cb) * (n + 1) + np.maximum(ca, cb)
        order = np.lexsort((-rp, key))
        first = np.r_[True, key[order][1:] != key[order][:-1]]
        pick = order[first]
        pick = pick[np.argsort(-rp[pick], kind="stable")]
        ra, rb, rp = ra[pick], rb[pick], rp[pick]
        reasons = [reasons[k] for k in pick.tolist()]
    stats["review_pairs"] = len(ra)
    _, sizes = np.unique(labels, return_counts=True)
    stats["clusters"] = len(sizes)
    stats["largest_cluster"] = int(sizes.max()) if len(sizes) else 0
    return ClusterResult(labels=labels, review=(ra, rb, rp, reasons), stats=stats)


def not_duplicate_indices(
    pairs: Iterable[tuple[Any, Any]], index_of: dict[Any, int]
) -> set[tuple[int, int]]:
    """Map "not the same" pairs of record ids to ordered pairs of record indices
    (pairs naming a record not in ``index_of`` are ignored)."""
    out: set[tuple[int, int]] = set()
    for a, b in pairs:
        if a in index_of and b in index_of:
            x, y = index_of[a], index_of[b]
            out.add((min(x, y), max(x, y)))
    return out
