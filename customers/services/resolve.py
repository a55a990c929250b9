"""Probabilistic identity resolution against the database: the ingest path (one batch of
incoming records against indexed candidates) and the batch path (the whole population).

Scoring itself is pure (``customers.identity``); this module loads candidates with a
fixed number of queries per batch, applies the stewards' thresholds and remembered
decisions, and writes what the steward needs to see: candidates with their evidence.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, router, transaction
from django.utils import timezone

from customers.errors import ApplicationError
from customers.identity.batch import resolve_population
from customers.identity.blocking import _fit, _frame_keys
from customers.identity.cluster import Thresholds, decide
from customers.identity.model import IdentityModel, Score, prepare, train
from customers.identity.rules import customer_kind
from customers.models import (
    Customer,
    ExternalRef,
    IdentityKey,
    MatchSettings,
    NotDuplicate,
    TrainedModel,
)

from .candidates import candidate_upsert
from .merge import customer_merge

MATCH_FIELDS = (
    "kind",
    "name",
    "first_name",
    "last_name",
    "legal_name",
    "email",
    "phone",
    "website",
    "tax_id",
    "national_id",
    "birth_date",
    "address_line1",
    "city",
    "postal_code",
    "country",
)
MAX_CANDIDATES = 50

# The ingest path's matcher: the model (None before one is trained), thresholds and
# shared-key guards per kind.
Matcher = tuple[IdentityModel | None, dict[str, Thresholds], dict[str, int]]

_model_cache: dict[str, Any] = {"pk": None, "model": None}
_settings_cache: dict[str, Any] = {"fingerprint": None, "value": None}


def model_current() -> IdentityModel | None:
    """The newest trained model, loaded once per process and reloaded when a newer one is
    stored (one small query per call)."""
    latest = TrainedModel.objects.order_by("-created_at", "-id").values_list("pk", flat=True)
    return _model_for(latest.first())


def _model_for(pk: int | None) -> IdentityModel | None:
    if pk is None:
        return None
    if _model_cache["pk"] != pk:
        params = TrainedModel.objects.values_list("params", flat=True).get(pk=pk)
        _model_cache.update(pk=pk, model=IdentityModel.from_dict(params))
    return _model_cache["model"]


def thresholds_current() -> tuple[dict[str, Thresholds], dict[str, int]]:
    """Per kind: thresholds, and how many customers may share a key before it stops
    linking (over-merge guard)."""
    thresholds, guards = {}, {}
    for row in MatchSettings.objects.all():
        thresholds[row.kind] = Thresholds(upper=row.upper, lower=row.lower)
        guards[row.kind] = row.max_key_customers
    return thresholds, guards


def matcher_current() -> Matcher:
    """The model, thresholds and guards the ingest path scores with, for one query.

    The query returns the newest model's id and a fingerprint of the settings (how many
    rows, when one last changed: every save sets ``updated_at``); the model and the
    settings are read again only when those differ from what this process holds, so a
    steward's change or a newly trained model applies from the next batch on.
    """
    connection = connections[router.db_for_read(MatchSettings)]
    q = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT {q('id')} FROM {q(TrainedModel._meta.db_table)} "
            f"ORDER BY {q('created_at')} DESC, {q('id')} DESC LIMIT 1), "
            f"COUNT(*), MAX({q('updated_at')}) FROM {q(MatchSettings._meta.db_table)}"
        )
        model_pk, *fingerprint = cursor.fetchone()
    model = _model_for(model_pk)
    if model is None:
        return None, {}, {}
    if _settings_cache["fingerprint"] != fingerprint:
        _settings_cache.update(fingerprint=fingerprint, value=thresholds_current())
    thresholds, guards = _settings_cache["value"]
    return model, thresholds, guards


def match_record(values: dict[str, Any]) -> dict[str, Any]:
    """A customer's canonical values as the matcher reads them (ISO dates, text)."""
    record = {}
    for name in MATCH_FIELDS:
        value = values.get(name)
        if value in (None, ""):
            continue
        record[name] = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return record


@dataclass
class Proposal:
    """What the matcher says about one incoming record that no deterministic key linked."""

    link_to: int | None = None  # auto-link to this customer
    score: Score | None = None  # the score behind the link
    review: list[tuple[int, Score]] = field(default_factory=list)  # for the steward


def proposals_for(
    records: Sequence[dict[str, Any]], *, matcher: Matcher | None = None
) -> list[Proposal]:
    """Score incoming records (canonical values incl. ``kind``) against their candidates.

    Queries: the model and settings check (none when the caller passes the ``matcher``
    it got from :func:`matcher_current`), then the holders of the records' blocking keys
    with their values (one query). Keys shared by more customers than the kind's guard
    are dropped: role mailboxes and switchboards must not pull in the world.
    """
    proposals = [Proposal() for _ in records]
    if not records:
        return proposals
    model, thresholds, guards = matcher or matcher_current()
    if model is None:
        return proposals
    keys = _candidate_keys([match_record(r) for r in records], [r.get("kind") for r in records])
    all_keys = {k for ks in keys for k in ks}
    if not all_keys:
        return proposals
    owners, candidates = _block_candidates(all_keys, max_guard=max(guards.values(), default=25))
    for n, (record, record_keys) in enumerate(zip(records, keys, strict=True)):
        guard = guards.get(record.get("kind", ""), 25)
        found: list[int] = []
        for key in record_keys:
            if len(owners.get(key, ())) <= guard:
                found.extend(owners.get(key, ()))
        pool = [candidates[c] for c in list(dict.fromkeys(found))[:MAX_CANDIDATES]]
        pool = [c for c in pool if c["kind"] == record.get("kind")]
        if not pool:
            continue
        scores = model.score_candidates(match_record(record), [match_record(c) for c in pool])
        best: tuple[float, int, Score] | None = None
        for candidate, score in zip(pool, scores, strict=True):
            verdict = decide(
                score.probability,
                record.get("kind", "person"),
                thresholds,
                auto_link=score.auto_link,
                cannot_link=score.cannot_link,
            )
            if verdict == "link" and (best is None or score.probability > best[0]):
                best = (score.probability, candidate["id"], score)
            elif verdict == "review":
                proposals[n].review.append((candidate["id"], score))
        if best is not None:
            proposals[n].link_to, proposals[n].score = best[1], best[2]
            proposals[n].review = [(c, s) for c, s in proposals[n].review if c != best[1]]
    return proposals


def _block_candidates(
    keys: Iterable[str], *, max_guard: int
) -> tuple[dict[str, list[int]], dict[int, dict[str, Any]]]:
    """The active customers holding each blocking key (keys held by more than ``max_guard``
    left out: no kind's guard lets them through), and those customers' values.

    At a million customers a common name key ("names:JN|SM0") is held by thousands, so on
    PostgreSQL each key is one probe of the (key_type, value, customer) index that stops
    after ``max_guard + 1`` holders (a ``LATERAL`` subquery with its own ``LIMIT``), joined
    to the customer's primary key for its status and values: one query, at most
    ``max_guard + 1`` rows per key. (Looked up with ``IN`` and a join instead, the same
    keys returned 150 rows per record on average and 4,000 for a James Smith.)
    """
    connection = connections[router.db_for_read(IdentityKey)]
    if connection.vendor != "postgresql":
        holders: dict[str, list[int]] = defaultdict(list)
        for value, customer_id in IdentityKey.objects.filter(
            key_type=IdentityKey.KeyType.BLOCK,
            value__in=list(keys),
            customer__status=Customer.Status.ACTIVE,
        ).values_list("value", "customer_id"):
            holders[value].append(customer_id)
        owners = {k: ids for k, ids in holders.items() if len(ids) <= max_guard}
        wanted = {c for ids in owners.values() for c in ids}
        rows = Customer.objects.filter(pk__in=wanted).values("id", *MATCH_FIELDS)
        return owners, {row["id"]: row for row in rows}
    q = connection.ops.quote_name
    columns = ["id", *(Customer._meta.get_field(name).column for name in MATCH_FIELDS)]
    selected = ", ".join(f"c.{q(column)}" for column in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT * FROM (SELECT k.value AS block_key, o.*, "
            f"count(*) OVER (PARTITION BY k.value) AS holders "
            f"FROM unnest(%s::varchar[]) AS k(value) CROSS JOIN LATERAL ("
            f"SELECT {selected} FROM {q(IdentityKey._meta.db_table)} i "
            f"JOIN {q(Customer._meta.db_table)} c ON c.id = i.customer_id "
            f"WHERE i.key_type = %s AND i.value = k.value AND c.status = %s LIMIT %s"
            f") AS o) AS found WHERE holders <= %s",
            [
                sorted(keys),
                IdentityKey.KeyType.BLOCK,
                Customer.Status.ACTIVE,
                max_guard + 1,
                max_guard,
            ],
        )
        found = cursor.fetchall()
    owners = defaultdict(list)
    candidates: dict[int, dict[str, Any]] = {}
    names = ["id", *MATCH_FIELDS]
    for key, *values, _ in found:
        owners[key].append(values[0])
        candidates[values[0]] = dict(zip(names, values, strict=True))
    return owners, candidates


def _candidate_keys(
    records: Sequence[dict[str, Any]], kinds: Sequence[str | None]
) -> list[list[str]]:
    """``candidate_keys`` of many match records: one frame per kind instead of one per
    record (the keys of a record depend on its own values only; a test compares them)."""
    out: list[list[str]] = [[] for _ in records]
    by_kind: dict[str, list[int]] = defaultdict(list)
    for n, (record, kind) in enumerate(zip(records, kinds, strict=True)):
        by_kind[kind or customer_kind(record)].append(n)
    for kind, members in by_kind.items():
        frame = prepare([records[n] for n in members], kind)
        for i, n in enumerate(members):
            out[n] = sorted({_fit(key) for key in _frame_keys(frame, i)})
    return out


def blocking_keys_write(*, customers: Iterable[Customer]) -> None:
    """(Re)write the blocking keys of ``customers`` from their current values.

    On PostgreSQL one statement: keys a customer no longer has are deleted, new ones
    inserted, unchanged ones left alone (no churn when a record changes nothing that
    blocks). Elsewhere: delete all, insert all.
    """
    customers = list(customers)
    if not customers:
        return
    keys = _candidate_keys(
        [match_record({f: getattr(c, f) for f in MATCH_FIELDS}) for c in customers],
        [c.kind for c in customers],
    )
    rows = list(
        {
            (c.pk, key): (c.pk, key, c.kind)
            for c, customer_keys in zip(customers, keys, strict=True)
            for key in customer_keys
        }.values()
    )
    connection = connections[router.db_for_write(IdentityKey)]
    if connection.vendor != "postgresql":
        IdentityKey.objects.filter(
            key_type=IdentityKey.KeyType.BLOCK, customer__in=[c.pk for c in customers]
        ).delete()
        IdentityKey.objects.bulk_create(
            [
                IdentityKey(
                    customer_id=pk,
                    key_type=IdentityKey.KeyType.BLOCK,
                    value=key,
                    customer_kind=kind,
                )
                for pk, key, kind in rows
            ],
            ignore_conflicts=True,
        )
        return
    # The DELETE and the INSERT touch disjoint rows (values not wanted / wanted), so the
    # order in which PostgreSQL runs them within the statement does not matter.
    table = connection.ops.quote_name(IdentityKey._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH wanted (customer_id, value, customer_kind) AS ("
            f"SELECT * FROM unnest(%s::bigint[], %s::varchar[], %s::varchar[])), "
            f"gone AS (DELETE FROM {table} i WHERE i.key_type = %s "
            f"AND i.customer_id = ANY(%s::bigint[]) AND NOT EXISTS (SELECT FROM wanted w "
            f"WHERE w.customer_id = i.customer_id AND w.value = i.value)) "
            f"INSERT INTO {table} AS i (customer_id, key_type, value, customer_kind, created_at) "
            f"SELECT customer_id, %s, value, customer_kind, %s FROM wanted "
            f"ON CONFLICT (key_type, value, customer_id) DO UPDATE "
            f"SET customer_kind = EXCLUDED.customer_kind "
            f"WHERE i.customer_kind <> EXCLUDED.customer_kind",
            [
                [pk for pk, _, _ in rows],
                [key for _, key, _ in rows],
                [kind for _, _, kind in rows],
                IdentityKey.KeyType.BLOCK,
                [c.pk for c in customers],
                IdentityKey.KeyType.BLOCK,
                timezone.now(),
            ],
        )


def finite_evidence(evidence: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Evidence safe for JSON columns: a decisive (infinite) weight is stored as ±99."""
    safe = []
    for row in evidence:
        weight = row.get("weight")
        if isinstance(weight, float) and math.isinf(weight):
            row = {**row, "weight": math.copysign(99.0, weight), "decisive": True}
        safe.append(row)
    return safe


def review_candidates_write(*, pairs: Iterable[tuple[int, int, Score]], source: str) -> int:
    """Queue pairs for the steward (never a remembered "not the same" pair)."""
    written = 0
    for a_id, b_id, score in pairs:
        if candidate_upsert(
            a_id=a_id,
            b_id=b_id,
            probability=score.probability,
            match_weight=score.match_weight,
            evidence=finite_evidence(score.evidence),
            source=source,
        ):
            written += 1
    return written


@dataclass
class BatchSummary:
    customers: int = 0
    clusters_merged: int = 0
    merges: int = 0
    merges_refused: int = 0
    review_pairs: int = 0
    model_id: int | None = None
    stats: dict[str, Any] = field(default_factory=dict)


def identities_resolve(*, system: str | None = None, user=None) -> BatchSummary:
    """Re-resolve the whole population: train the model on it (EM, unsupervised), store
    the model, merge each auto-link cluster into its oldest customer (audited, reversible
    MergeRecords), queue review pairs, and rewrite the blocking keys.

    With ``system``, only clusters that contain a customer known to that system are
    merged (what a migration runs after importing that system).
    """
    rows = list(Customer.objects.filter(status=Customer.Status.ACTIVE).values("id", *MATCH_FIELDS))
    summary = BatchSummary(customers=len(rows))
    if not rows:
        return summary
    thresholds, guards = thresholds_current()
    records = [{"id": row["id"], **match_record(row)} for row in rows]
    pairs = NotDuplicate.objects.values_list("low_id", "high_id")
    result = resolve_population(
        records,
        thresholds=thresholds,
        not_duplicate=list(pairs),
        max_key_entities=min(guards.values(), default=5),
    )
    trained = TrainedModel.objects.create(
        params=result.model.to_dict(), records=len(records), stats=_jsonable(result.stats)
    )
    summary.model_id, summary.stats = trained.pk, result.stats
    in_scope = None
    if system is not None:
        in_scope = set(
            ExternalRef.objects.filter(system__name=system, entity="customer").values_list(
                "customer_id", flat=True
            )
        )
        if not in_scope and not ExternalRef.objects.filter(system__name=system).exists():
            raise ApplicationError(f"no records from a system called {system!r}")
    for cluster in result.clusters:
        if len(cluster) < 2 or (in_scope is not None and not in_scope & set(cluster)):
            continue
        survivor, *others = sorted(cluster)
        merged_any = False
        for other in others:
            try:
                with transaction.atomic():
                    customer_merge(survivor_id=survivor, merged_id=other, user=user, automatic=True)
                summary.merges += 1
                merged_any = True
            except ApplicationError:
                summary.merges_refused += 1
        summary.clusters_merged += merged_any
    by_id = {row["id"]: row for row in rows}
    review = []
    for pair in result.review_pairs:
        if pair.left in by_id and pair.right in by_id:
            score = result.model.score_pair(
                match_record(by_id[pair.left]), match_record(by_id[pair.right])
            )
            review.append((pair.left, pair.right, score))
    summary.review_pairs = review_candidates_write(pairs=review, source="batch")
    blocking_keys_write(customers=Customer.objects.filter(status=Customer.Status.ACTIVE))
    return summary


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def model_train(*, sample: int | None = None) -> TrainedModel:
    """Train on the current population without merging anything (cold start)."""
    rows = Customer.objects.filter(status=Customer.Status.ACTIVE).values("id", *MATCH_FIELDS)
    if sample:
        rows = rows[:sample]
    records = [{"id": row["id"], **match_record(row)} for row in rows]
    if not records:
        raise ApplicationError("no customers to learn from yet")
    model = train(records)
    return TrainedModel.objects.create(params=model.to_dict(), records=len(records))
