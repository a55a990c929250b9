"""Whole-population identity resolution: train, block, score, cluster. No ORM.

``resolve_population(records)`` is the batch path behind ``resolve_identities``: it takes
every customer record (dicts with canonical field names, an "id" and a "kind"), trains the
model unsupervised when none is given, and returns the clusters (one per customer), the
pairs a steward should review, and what happened at each step. Everything after
normalization is column-wise numpy work, so a million people take about a minute on two
cores (docs/benchmarks.md).
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .blocking import DEFAULT_MAX_BLOCK, DEFAULT_MAX_KEY_ENTITIES, block, shared_key_guard
from .cluster import (
    DEFAULT_MAX_CLUSTER_SIZE,
    DEFAULT_THRESHOLDS,
    CannotLink,
    Thresholds,
    cluster_pairs,
    not_duplicate_indices,
)
from .model import (
    IdentityModel,
    KindModel,
    auto_link_allowed,
    cannot_link,
    comparison_levels,
    must_stay_apart,
    prepare,
    train_kind,
)
from .rules import customer_kind


@dataclass
class ReviewPair:
    """Two records the steward should look at (ids as given in the records)."""

    left: Any
    right: Any
    kind: str
    probability: float
    match_weight: float
    reason: str  # "between_thresholds", "needs_personal_evidence" or "size_cap"


@dataclass
class BatchResult:
    clusters: list[list[Any]]  # record ids, one list per resolved customer
    labels: np.ndarray  # cluster number per input record, aligned with the input
    review_pairs: list[ReviewPair]
    stats: dict[str, Any]
    model: IdentityModel = field(repr=False)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def resolve_population(
    records: Iterable[dict[str, Any]],
    model: IdentityModel | None = None,
    thresholds: dict[str, Thresholds] | None = None,
    *,
    not_duplicate: Iterable[tuple[Any, Any]] = (),
    max_cluster_size: int = DEFAULT_MAX_CLUSTER_SIZE,
    max_key_entities: int = DEFAULT_MAX_KEY_ENTITIES,
    max_block: int = DEFAULT_MAX_BLOCK,
    seed: int = 0,
) -> BatchResult:
    """Resolve a whole population of customer records into clusters.

    ``model``: a trained ``IdentityModel``; when None (or missing a kind), one is trained
    on these records. ``thresholds``: per kind, auto-link and review probabilities.
    ``not_duplicate``: pairs of record ids a steward marked "not the same"; they are never
    linked, not even through other records, and never suggested for review.
    """
    started = time.perf_counter()
    records = records if isinstance(records, list) else list(records)
    thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    ids = [r.get("id", n) for n, r in enumerate(records)]
    index_of = {rid: n for n, rid in enumerate(ids)}
    forbidden = not_duplicate_indices(not_duplicate, index_of)
    by_kind: dict[str, list[int]] = {}
    for n, record in enumerate(records):
        by_kind.setdefault(customer_kind(record), []).append(n)

    labels = np.arange(len(records), dtype=np.int64)
    review: list[ReviewPair] = []
    stats: dict[str, Any] = {"records": len(records), "kinds": {}}
    kinds: dict[str, KindModel] = dict(model.kinds) if model else {}
    for kind, members in by_kind.items():
        members_arr = np.asarray(members, dtype=np.int64)
        kind_stats: dict[str, Any] = {"records": len(members)}
        timings: dict[str, float] = {}
        ref = [time.perf_counter()]

        def lap(name: str, ref: list[float] = ref, timings: dict[str, float] = timings) -> None:
            now = time.perf_counter()
            timings[name] = round(now - ref[0], 3)
            ref[0] = now

        frame = prepare([records[n] for n in members], kind)
        lap("normalize")
        shared = shared_key_guard(frame, max_entities=max_key_entities)
        kind_stats["shared_keys_suppressed"] = len(shared)
        kind_stats["shared_keys_examples"] = [
            {"field": s.column, "value": s.value, "records": s.records, "entities": s.entities}
            for s in shared[:10]
        ]
        blocked = block(frame, max_block=max_block)
        kind_stats["blocking"] = blocked.stats
        lap("block")
        levels = comparison_levels(frame, blocked.ia, blocked.ib)
        lap("compare")
        if kind not in kinds:
            kinds[kind] = train_kind(
                frame,
                candidate_pairs=(blocked.ia, blocked.ib),
                candidate_levels=levels,
                seed=seed,
            )
            lap("train")
        km = kinds[kind]
        weights = km.match_weights(frame, blocked.ia, blocked.ib, levels)
        probability = 1.0 / (1.0 + np.exp2(-np.clip(weights, -60, 60)))
        lap("score")
        local = {int(n): k for k, n in enumerate(members)}
        steward = [(local[a], local[b]) for a, b in forbidden if a in local and b in local]
        apart = must_stay_apart(kind, levels)
        rules = CannotLink(
            exact={
                "tax_id": frame.columns["tax_id"].codes,
                "national_id": frame.columns["national_id"].codes,
            },
            birth_date=frame.dob if kind == "person" else None,
            pairs=(
                np.r_[blocked.ia[apart], np.array([a for a, _ in steward], dtype=np.int64)],
                np.r_[blocked.ib[apart], np.array([b for _, b in steward], dtype=np.int64)],
            ),
        )
        result = cluster_pairs(
            frame.n,
            blocked.ia,
            blocked.ib,
            probability,
            thresholds=thresholds[kind],
            rules=rules,
            max_cluster_size=max_cluster_size,
            auto_link=auto_link_allowed(kind, levels),
            conflict=cannot_link(kind, levels),
        )
        labels[members_arr] = members_arr[result.labels]
        ra, rb, rp, reasons = result.review
        if len(ra):
            # block() returns pairs sorted by (ia * n + ib): look the weights up.
            keys = blocked.ia * frame.n + blocked.ib
            at = np.searchsorted(keys, np.minimum(ra, rb) * frame.n + np.maximum(ra, rb))
            for a, b, p, w, why in zip(
                ra.tolist(), rb.tolist(), rp.tolist(), weights[at].tolist(), reasons, strict=True
            ):
                review.append(
                    ReviewPair(
                        ids[members[a]], ids[members[b]], kind, round(p, 6), round(w, 3), why
                    )
                )
        lap("cluster")
        kind_stats["pairs_scored"] = len(blocked.ia)
        kind_stats["pairs_above_upper"] = int((probability >= thresholds[kind].upper).sum())
        kind_stats["clustering"] = result.stats
        kind_stats["timings_s"] = timings
        stats["kinds"][kind] = kind_stats

    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    bounds = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1], True])
    order_list = order.tolist()
    clusters = [
        [ids[i] for i in order_list[s:e]]
        for s, e in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)
    ]
    # Dense cluster numbers, aligned with the input.
    dense = np.empty(len(records), dtype=np.int64)
    dense[order] = np.cumsum(np.r_[0, (sorted_labels[1:] != sorted_labels[:-1]).astype(int)])
    stats["clusters"] = len(clusters)
    stats["review_pairs"] = len(review)
    stats["seconds"] = round(time.perf_counter() - started, 3)
    stats["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return BatchResult(
        clusters=clusters,
        labels=dense,
        review_pairs=review,
        stats=stats,
        model=IdentityModel(kinds=kinds),
    )
