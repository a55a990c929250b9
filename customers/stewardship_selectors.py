"""Reads of the data steward's pages: the duplicates queue, the side-by-side merge, the
merge history, the field-ownership matrix and the matcher's thresholds (with the
suggestions learned from the stewards' decisions), with one access helper per model.

Every function runs a fixed number of queries whatever the number of candidates, rows or
cells; tests/customers/test_stewardship_views.py pins the counts.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from auditlog.models import LogEntry
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404

from customers.models import (
    ConflictRule,
    Contact,
    Customer,
    Deal,
    Direction,
    Entity,
    ExternalRef,
    FieldOwnership,
    FieldProvenance,
    Invoice,
    MatchCandidate,
    MatchSettings,
    MergeRecord,
    NotDuplicate,
    Order,
    Payment,
    SourceSystem,
    SystemKind,
    Ticket,
    ordered_pair,
)
from customers.permissions import check_web_access
from customers.schema import SCHEMA
from customers.services.merge import OPEN_CANDIDATE_STATUSES, MergePreview, Side, merge_preview

User = AbstractBaseUser | AnonymousUser

VIEW_CANDIDATE = "customers.view_matchcandidate"
CHANGE_CANDIDATE = "customers.change_matchcandidate"
VIEW_MERGE = "customers.view_mergerecord"
CHANGE_MERGE = "customers.change_mergerecord"
VIEW_OWNERSHIP = "customers.view_fieldownership"
CHANGE_OWNERSHIP = "customers.change_fieldownership"
VIEW_SETTINGS = "customers.view_matchsettings"
CHANGE_SETTINGS = "customers.change_matchsettings"

NOT_ALLOWED = "Your role may not use this page."


def require_perm(user: User, perm: str) -> None:
    check_web_access(user)
    if not user.has_perm(perm):
        raise PermissionDenied(NOT_ALLOWED)


# --- access helpers: 403 for every id without the page's permission, then 404 / 403 ------


def access_candidate(user: User, pk: int, perm: str = VIEW_CANDIDATE) -> MatchCandidate:
    """The match candidate ``pk`` with both customers. One query.

    A user who may not see the queue gets 403 for every id, so ids reveal nothing;
    otherwise 404 when it does not exist and 403 when ``perm`` is missing.
    """
    require_perm(user, VIEW_CANDIDATE)
    candidate = (
        MatchCandidate.objects.select_related("low", "high", "decided_by").filter(pk=pk).first()
    )
    if candidate is None:
        raise Http404("No such match candidate")
    if not user.has_perm(perm):
        raise PermissionDenied(NOT_ALLOWED)
    return candidate


def access_pair(user: User, a_id: int, b_id: int, perm: str = VIEW_CANDIDATE) -> list[Customer]:
    """Customers ``a_id`` and ``b_id`` (in that order) for an ad-hoc merge. One query."""
    require_perm(user, VIEW_CANDIDATE)
    found = Customer.objects.in_bulk([a_id, b_id])
    if a_id not in found or b_id not in found:
        raise Http404("No such customer")
    if not user.has_perm(perm):
        raise PermissionDenied(NOT_ALLOWED)
    return [found[a_id], found[b_id]]


def access_merge_record(user: User, pk: int, perm: str = VIEW_MERGE) -> MergeRecord:
    require_perm(user, VIEW_MERGE)
    record = MergeRecord.objects.filter(pk=pk).first()
    if record is None:
        raise Http404("No such merge")
    if not user.has_perm(perm):
        raise PermissionDenied(NOT_ALLOWED)
    return record


def access_ownership_cell(user: User, pk: int, perm: str = VIEW_OWNERSHIP) -> FieldOwnership:
    require_perm(user, VIEW_OWNERSHIP)
    cell = FieldOwnership.objects.select_related("owner_system", "updated_by").filter(pk=pk).first()
    if cell is None:
        raise Http404("No such ownership cell")
    if not user.has_perm(perm):
        raise PermissionDenied(NOT_ALLOWED)
    return labelled(cell)


# --- presentation vocabulary -------------------------------------------------------------

FIELD_LABELS = {
    "*": "All other fields",
    "kind": "Kind",
    "name": "Name",
    "first_name": "First name",
    "last_name": "Last name",
    "legal_name": "Legal name",
    "email": "E-mail",
    "phone": "Phone",
    "website": "Website",
    "tax_id": "Tax ID",
    "national_id": "National ID",
    "birth_date": "Birth date",
    "address_line1": "Address line 1",
    "address_line2": "Address line 2",
    "city": "City",
    "postal_code": "Postal code",
    "region": "Region",
    "country": "Country",
    "shipping_address_line1": "Shipping address",
    "shipping_city": "Shipping city",
    "shipping_postal_code": "Shipping postal code",
    "shipping_country": "Shipping country",
    "lifecycle_stage": "Lifecycle stage",
    "owner": "Account owner",
    "amount_paid": "Amount paid",
    "close_date": "Close date",
    "order_date": "Order date",
    "issue_date": "Issue date",
    "due_date": "Due date",
    "paid_at": "Paid at",
    "opened_at": "Opened at",
    "resolved_at": "Resolved at",
}

# The order a person reads a customer record in (the schema's order is the coercion order).
CUSTOMER_FIELD_ORDER = [
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
    "address_line2",
    "postal_code",
    "city",
    "region",
    "country",
    "shipping_address_line1",
    "shipping_postal_code",
    "shipping_city",
    "shipping_country",
    "lifecycle_stage",
    "owner",
]

MOVE_LABELS = {
    "contacts": ("contact", "contacts"),
    "deals": ("deal", "deals"),
    "orders": ("order", "orders"),
    "invoices": ("invoice", "invoices"),
    "payments": ("payment", "payments"),
    "tickets": ("ticket", "tickets"),
    "consents": ("consent", "consents"),
    "external_refs": ("source record", "source records"),
    "identity_keys": ("identity key", "identity keys"),
}


def field_label(name: str) -> str:
    return FIELD_LABELS.get(name) or name.replace("_", " ").capitalize()


def _customer_value(name: str, value: Any) -> str:
    """A customer field's value as the steward reads it."""
    if value is None or value == "":
        return ""
    if name == "kind":
        return Customer.Kind(value).label
    if name == "lifecycle_stage":
        return Customer.Lifecycle(value).label
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


# --- the duplicates queue ----------------------------------------------------------------

DECIDED_STATUSES = (
    MatchCandidate.Status.MERGED,
    MatchCandidate.Status.REJECTED,
    MatchCandidate.Status.AUTO_LINKED,
    MatchCandidate.Status.SUPERSEDED,
)
QUEUE_STATUSES = {
    "pending": (MatchCandidate.Status.PENDING,),
    "deferred": (MatchCandidate.Status.DEFERRED,),
    "decided": DECIDED_STATUSES,
}
# Rows that make a customer matter: what a wrong merge (or a missed one) would scatter.
IMPACT_MODELS = (Contact, Deal, Order, Invoice, Payment, Ticket)


@dataclass(frozen=True)
class QueueFilters:
    status: str = "pending"
    system_id: int | None = None
    kind: str = ""
    min_probability: float | None = None
    max_probability: float | None = None

    @property
    def narrowed(self) -> bool:
        return bool(
            self.system_id
            or self.kind
            or self.min_probability is not None
            or self.max_probability is not None
        )


def _rows_of(side: str) -> Coalesce:
    """Live related rows of the candidate's ``side`` customer, as a sum of correlated
    counts (one per table) so the queue is still one query."""
    total = None
    for model in IMPACT_MODELS:
        count = (
            model.objects.filter(customer_id=OuterRef(side), deleted_at__isnull=True)
            .order_by()
            .values("customer_id")
            .annotate(n=Count("pk"))
            .values("n")
        )
        term = Coalesce(Subquery(count, output_field=IntegerField()), 0)
        total = term if total is None else total + term
    return total


def candidate_queue(*, filters: QueueFilters) -> QuerySet[MatchCandidate]:
    """Candidates of one queue tab, biggest impact first, with both customers and
    ``low_rows`` / ``high_rows`` / ``impact`` (their related rows).

    Open tabs are ordered by probability, then by impact; the decided tab by the newest
    decision. One query for the rows (the counts are correlated subqueries), one more when
    a paginator counts them.
    """
    statuses = QUEUE_STATUSES.get(filters.status, QUEUE_STATUSES["pending"])
    candidates = MatchCandidate.objects.filter(status__in=statuses)
    if filters.kind:
        candidates = candidates.filter(low__kind=filters.kind)
    if filters.min_probability is not None:
        candidates = candidates.filter(probability__gte=filters.min_probability)
    if filters.max_probability is not None:
        candidates = candidates.filter(probability__lte=filters.max_probability)
    if filters.system_id:
        known = ExternalRef.objects.filter(system_id=filters.system_id)
        candidates = candidates.filter(
            Exists(known.filter(customer_id=OuterRef("low_id")))
            | Exists(known.filter(customer_id=OuterRef("high_id")))
        )
    candidates = candidates.select_related("low", "high", "decided_by").annotate(
        low_rows=_rows_of("low_id"), high_rows=_rows_of("high_id")
    )
    if filters.status == "decided":
        return candidates.order_by(F("decided_at").desc(nulls_last=True), "-pk")
    return candidates.annotate(impact=F("low_rows") + F("high_rows")).order_by(
        "-probability", "-impact", "pk"
    )


def customer_systems(customer_ids: Iterable[int]) -> dict[int, list[SourceSystem]]:
    """The live systems that hold a record of each customer (or of one of its rows), by
    name. One query: the system columns come with the refs."""
    ids = set(customer_ids)
    if not ids:
        return {}
    rows = (
        ExternalRef.objects.filter(customer_id__in=ids, tombstoned_at__isnull=True)
        .order_by()
        .values_list("customer_id", "system_id", "system__name", "system__label", "system__kind")
        .distinct()
    )
    found: dict[int, dict[int, SourceSystem]] = defaultdict(dict)
    for customer_id, system_id, name, label, kind in rows:
        found[customer_id][system_id] = SourceSystem(
            pk=system_id, name=name, label=label, kind=kind
        )
    return {c: sorted(s.values(), key=lambda s: s.name) for c, s in found.items()}


MINUS = "\u2212"  # a real minus sign: the weights are numbers, not hyphenated words


@dataclass(frozen=True)
class Evidence:
    """One compared field of a candidate pair, as the matcher stored it."""

    field: str
    level: str
    weight: float | None
    left: str
    right: str
    share: float = 0.0  # |weight| as a percentage of the pair's largest, for a bar

    @property
    def label(self) -> str:
        return field_label(self.field)

    @property
    def tone(self) -> str:
        """agree (weight for the match), disagree (against), neutral (no evidence)."""
        if self.weight is None or self.weight == 0 or self.level == "missing":
            return "neutral"
        return "agree" if self.weight > 0 else "disagree"

    @property
    def weight_text(self) -> str:
        if self.weight is None:
            return "—"
        if math.isinf(self.weight):
            return "+∞" if self.weight > 0 else f"{MINUS}∞"
        if self.weight == 0:
            return "0"
        sign = "+" if self.weight > 0 else MINUS
        return f"{sign}{abs(self.weight):.1f}"

    @property
    def level_text(self) -> str:
        return self.level.replace("_", " ")


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def evidence_of(candidate: MatchCandidate) -> list[Evidence]:
    """The stored per-field evidence, tolerant of older shapes (``a``/``b`` for the values)."""
    items = candidate.evidence if isinstance(candidate.evidence, list) else []
    found = []
    for item in items:
        if not isinstance(item, dict) or not item.get("field"):
            continue
        found.append(
            Evidence(
                field=str(item["field"]),
                level=str(item.get("level") or ""),
                weight=_number(item.get("weight")),
                left=str(item.get("left", item.get("a")) or ""),
                right=str(item.get("right", item.get("b")) or ""),
            )
        )
    finite = [abs(e.weight) for e in found if e.weight is not None and not math.isinf(e.weight)]
    scale = max(finite, default=0.0)
    return [replace(e, share=_share(e.weight, scale)) for e in found]


def _share(weight: float | None, scale: float) -> float:
    if weight is None:
        return 0.0
    if math.isinf(weight):
        return 100.0
    return round(abs(weight) / scale * 100, 1) if scale else 0.0


def decorate_queue_page(candidates: list[MatchCandidate]) -> list[MatchCandidate]:
    """Attach what the queue rows show: the systems of both customers (one query), the
    evidence and the score as a percentage."""
    systems = customer_systems({c.low_id for c in candidates} | {c.high_id for c in candidates})
    for c in candidates:
        c.low_systems = systems.get(c.low_id, [])
        c.high_systems = systems.get(c.high_id, [])
        c.evidence_items = evidence_of(c)
        c.percent = c.probability * 100
    return candidates


def system_choices() -> list[tuple[int, str]]:
    return [(s.pk, str(s)) for s in SourceSystem.objects.order_by("name")]


def pending_above(min_probability: float) -> QuerySet[MatchCandidate]:
    """Pending candidates a bulk approval at ``min_probability`` would merge, best first."""
    return (
        MatchCandidate.objects.filter(
            status=MatchCandidate.Status.PENDING, probability__gte=min_probability
        )
        .select_related("low", "high")
        .order_by("-probability", "pk")
    )


# --- the steward's labels: what the decisions say about the matcher -----------------------

MIN_DECISIONS = 20  # fewer judged pairs say nothing about a threshold
AUTO_LINK_TARGET = 0.98  # below: auto-links are wrong too often
AUTO_LINK_COMFORT = 0.995  # above, over enough decisions: the threshold may come down
RULE_WARNING = 0.9
RULE_MIN_DECISIONS = 10
MODEL_RULE = "Probabilistic match"


@dataclass(frozen=True)
class RulePrecision:
    rule: str
    merged: int
    rejected: int

    @property
    def decisions(self) -> int:
        return self.merged + self.rejected

    @property
    def precision(self) -> float | None:
        return self.merged / self.decisions if self.decisions else None

    @property
    def precision_text(self) -> str:
        return percent_text(self.precision)

    @property
    def label(self) -> str:
        return self.rule or MODEL_RULE

    @property
    def weak(self) -> bool:
        return (
            self.decisions >= RULE_MIN_DECISIONS
            and self.precision is not None
            and self.precision < RULE_WARNING
        )


@dataclass(frozen=True)
class StewardLabels:
    """Counts of the queue and of the steward's decisions, and what they suggest."""

    by_status: dict[str, int]
    rules: list[RulePrecision]
    auto_links: int  # automatic links judged: auto-linked candidates and automatic merges
    wrong_auto_links: int  # automatic merges a steward undid
    pending_above: int  # pending candidates at or above the bulk-approval threshold
    bulk_threshold: float
    tabs: dict[str, int] = field(default_factory=dict)

    @property
    def merged(self) -> int:
        return self.by_status.get(MatchCandidate.Status.MERGED, 0)

    @property
    def rejected(self) -> int:
        return self.by_status.get(MatchCandidate.Status.REJECTED, 0)

    @property
    def auto_linked(self) -> int:
        return self.by_status.get(MatchCandidate.Status.AUTO_LINKED, 0)

    @property
    def auto_precision(self) -> float | None:
        if not self.auto_links:
            return None
        return (self.auto_links - self.wrong_auto_links) / self.auto_links

    @property
    def auto_precision_text(self) -> str:
        return percent_text(self.auto_precision)

    @property
    def auto_precision_low(self) -> bool:
        """Worth a red figure: below target over enough decisions to mean something."""
        return (
            self.auto_precision is not None
            and self.auto_links >= MIN_DECISIONS
            and self.auto_precision < AUTO_LINK_TARGET
        )

    @property
    def reviewed(self) -> RulePrecision:
        merged = sum(r.merged for r in self.rules)
        rejected = sum(r.rejected for r in self.rules)
        return RulePrecision("", merged, rejected)

    @property
    def suggestions(self) -> list[str]:
        lines = []
        p, n = self.auto_precision, self.auto_links
        if p is not None:
            decisions = f"{n} decision{'s' if n != 1 else ''}"
            head = f"Precision of auto-links {percent_text(p)} over {decisions}"
            if n < MIN_DECISIONS:
                lines.append(f"{head}: too few to tune the upper threshold yet.")
            elif p < AUTO_LINK_TARGET:
                lines.append(f"{head}: consider raising the upper threshold.")
            elif p >= AUTO_LINK_COMFORT:
                lines.append(
                    f"{head}: auto-links are reliable; lowering the upper threshold a little "
                    "would send fewer pairs to review."
                )
            else:
                lines.append(f"{head}: the upper threshold looks right.")
        reviewed = self.reviewed
        if reviewed.decisions >= MIN_DECISIONS and reviewed.precision is not None:
            share = percent_text(reviewed.precision)
            if reviewed.precision < 0.3:
                lines.append(
                    f"Only {share} of {reviewed.decisions} reviewed pairs were duplicates: "
                    "consider raising the lower threshold."
                )
            elif reviewed.precision >= AUTO_LINK_TARGET:
                lines.append(
                    f"{share} of {reviewed.decisions} reviewed pairs were duplicates: the "
                    "upper threshold could come down."
                )
        for rule in self.rules:
            if rule.weak:
                lines.append(
                    f"{rule.label}: precision {percent_text(rule.precision)} over {rule.decisions} "
                    "decisions — review this rule."
                )
        return lines


def percent_text(value: float | None) -> str:
    if value is None:
        return "—"
    percent = value * 100
    text = f"{percent:.0f}" if percent >= 99.95 or percent.is_integer() else f"{percent:.1f}"
    if text.endswith(".0"):
        text = text[:-2]
    return f"{text}%"


def steward_labels(*, bulk_threshold: float = 0.99) -> StewardLabels:
    """The labels summary of the queue page. Two aggregate queries.

    1. Candidates grouped by (rule, source, status): the tab counts, the decision counts,
       per-rule precision (merged ÷ merged + rejected; an undone merge turns its candidate
       into "not the same", so it counts as a wrong decision) and, for pending ones, how
       many score at or above ``bulk_threshold``.
    2. Automatic merges: how many, and how many a steward undid (a wrong auto-link). A merge
       of an ingest auto-linked candidate is counted once, as that candidate.
    """
    groups = (
        MatchCandidate.objects.order_by()
        .values("rule", "source", "status")
        .annotate(n=Count("pk"), above=Count("pk", filter=Q(probability__gte=bulk_threshold)))
    )
    by_status: dict[str, int] = defaultdict(int)
    per_rule: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    auto_linked_ingest = 0
    pending_above_n = 0
    for row in groups:
        status, n = row["status"], row["n"]
        by_status[status] += n
        if status == MatchCandidate.Status.MERGED:
            per_rule[row["rule"]][0] += n
        elif status == MatchCandidate.Status.REJECTED:
            per_rule[row["rule"]][1] += n
        elif status == MatchCandidate.Status.AUTO_LINKED and row["source"] == "ingest":
            auto_linked_ingest += n
        elif status == MatchCandidate.Status.PENDING:
            pending_above_n += row["above"]
    ingest_auto = Q(candidate__status=MatchCandidate.Status.AUTO_LINKED, candidate__source="ingest")
    automatic = MergeRecord.objects.filter(automatic=True).aggregate(
        other=Count("pk", filter=Q(candidate__isnull=True) | ~ingest_auto),
        undone=Count("pk", filter=Q(undone_at__isnull=False)),
    )
    rules = sorted(
        (RulePrecision(rule, merged, rejected) for rule, (merged, rejected) in per_rule.items()),
        key=lambda r: (-r.decisions, r.label),
    )
    tabs = {
        name: sum(by_status.get(s, 0) for s in statuses)
        for name, statuses in QUEUE_STATUSES.items()
    }
    return StewardLabels(
        by_status=dict(by_status),
        rules=rules,
        auto_links=auto_linked_ingest + automatic["other"],
        wrong_auto_links=automatic["undone"],
        pending_above=pending_above_n,
        bulk_threshold=bulk_threshold,
        tabs=tabs,
    )


# --- the side-by-side merge --------------------------------------------------------------


@dataclass
class FieldRow:
    """One canonical field of the pair: both values, where they came from, the pick."""

    name: str
    label: str
    survivor_value: str
    merged_value: str
    survivor_provenance: FieldProvenance | None
    merged_provenance: FieldProvenance | None
    suggested: Side
    reason: str
    chosen: Side

    @property
    def differs(self) -> bool:
        return self.survivor_value != self.merged_value

    @property
    def empty(self) -> bool:
        return not self.survivor_value and not self.merged_value

    @property
    def overridden(self) -> bool:
        return self.chosen != self.suggested

    @property
    def chosen_value(self) -> str:
        return self.survivor_value if self.chosen == "survivor" else self.merged_value

    @property
    def chosen_provenance(self) -> FieldProvenance | None:
        if self.chosen == "survivor":
            return self.survivor_provenance
        return self.merged_provenance


@dataclass(frozen=True)
class Move:
    key: str
    count: int

    @property
    def label(self) -> str:
        one, many = MOVE_LABELS.get(self.key, (self.key, self.key))
        return one if self.count == 1 else many


@dataclass
class MergeComparison:
    survivor: Customer
    merged: Customer
    candidate: MatchCandidate | None
    rows: list[FieldRow]
    moves: list[Move]
    problem: str
    evidence: list[Evidence]
    systems: dict[int, list[SourceSystem]]

    @property
    def survivor_systems(self) -> list[SourceSystem]:
        return self.systems.get(self.survivor.pk, [])

    @property
    def merged_systems(self) -> list[SourceSystem]:
        return self.systems.get(self.merged.pk, [])

    @property
    def score_percent(self) -> float | None:
        return self.candidate.probability * 100 if self.candidate else None

    @property
    def empty_labels(self) -> list[str]:
        return [r.label for r in self.rows if r.empty]

    @property
    def rows_moving(self) -> int:
        return sum(m.count for m in self.moves if m.key != "identity_keys")

    @property
    def conflicts(self) -> int:
        return sum(1 for r in self.rows if r.differs and r.survivor_value and r.merged_value)

    @property
    def open(self) -> bool:
        """Whether a decision can still be taken (an ad-hoc pair always can)."""
        return self.candidate is None or self.candidate.status in OPEN_CANDIDATE_STATUSES

    @property
    def golden(self) -> list[FieldRow]:
        """The merged record as it would be written: the chosen value of every field."""
        return [r for r in self.rows if r.chosen_value]


def default_survivor(
    a: Customer, b: Customer, wanted: int | None = None
) -> tuple[Customer, Customer]:
    """(survivor, merged): ``wanted`` when it is one of the pair, else the older customer."""
    if wanted in (a.pk, b.pk):
        return (a, b) if a.pk == wanted else (b, a)
    older = min((a, b), key=lambda c: (c.created_at, c.pk))
    return (older, b if older is a else a)


def _ordered_fields(previews: list) -> list:
    rank = {name: n for n, name in enumerate(CUSTOMER_FIELD_ORDER)}
    return sorted(previews, key=lambda p: rank.get(p.name, len(rank)))


def merge_comparison(
    *,
    survivor: Customer,
    merged: Customer,
    candidate: MatchCandidate | None = None,
    choices: dict[str, Side] | None = None,
) -> MergeComparison:
    """Both customers field by field with the matrix's pick, overridden by ``choices``
    (field → side), the rows that would move and the candidate's evidence. Writes nothing.

    Queries: those of ``merge_preview`` (ownership matrix, provenance of both, the
    not-duplicate check, one count per moved table) and one for the systems of both.
    """
    preview: MergePreview = merge_preview(survivor=survivor, merged=merged)
    choices = choices or {}
    rows = [
        FieldRow(
            name=p.name,
            label=field_label(p.name),
            survivor_value=_customer_value(p.name, p.survivor_value),
            merged_value=_customer_value(p.name, p.merged_value),
            survivor_provenance=p.survivor_provenance,
            merged_provenance=p.merged_provenance,
            suggested=p.choice,
            reason=p.reason,
            chosen=choices.get(p.name, p.choice),
        )
        for p in _ordered_fields(preview.fields)
    ]
    moves = [Move(key, n) for key, n in preview.moves.items() if n]
    return MergeComparison(
        survivor=survivor,
        merged=merged,
        candidate=candidate,
        rows=rows,
        moves=moves,
        problem=preview.problem,
        evidence=evidence_of(candidate) if candidate else [],
        systems=customer_systems([survivor.pk, merged.pk]),
    )


def open_candidate_for(a_id: int, b_id: int) -> MatchCandidate | None:
    """The open candidate for the pair, if the matcher already queued it. One query."""
    low, high = ordered_pair(a_id, b_id)
    return MatchCandidate.objects.filter(
        low_id=low, high_id=high, status__in=OPEN_CANDIDATE_STATUSES
    ).first()


# --- merge history of one customer -------------------------------------------------------

MERGE_HISTORY_LIMIT = 50


def merge_history(*, customer: Customer) -> list[MergeRecord]:
    """Merges the customer survived or was merged by, newest first. One query."""
    return list(
        MergeRecord.objects.filter(Q(survivor=customer) | Q(merged=customer))
        .select_related("survivor", "merged", "merged_by", "undone_by")
        .order_by("-merged_at", "-pk")[:MERGE_HISTORY_LIMIT]
    )


# --- the field-ownership matrix ----------------------------------------------------------


@dataclass(frozen=True)
class EntityCells:
    entity: str
    label: str
    cells: list[FieldOwnership]

    @property
    def specific(self) -> int:
        """Fields with a row of their own (not the ``*`` default)."""
        return sum(1 for c in self.cells if c.field != "*")


def labelled(cell: FieldOwnership) -> FieldOwnership:
    """The cell with ``label``, the field as the matrix shows it."""
    cell.label = field_label(cell.field)
    return cell


def ownership_matrix() -> list[EntityCells]:
    """The matrix grouped by entity, the ``*`` default first in each. One query."""
    cells = FieldOwnership.objects.select_related("owner_system", "updated_by").order_by(
        "entity", "field"
    )
    grouped: dict[str, list[FieldOwnership]] = defaultdict(list)
    for cell in cells:
        grouped[cell.entity].append(labelled(cell))
    result = []
    for entity in Entity:
        listed = sorted(grouped.get(entity.value, []), key=lambda c: (c.field != "*", c.field))
        if listed:
            result.append(EntityCells(entity.value, entity.label, listed))
    return result


def unowned_fields(matrix: list[EntityCells]) -> list[tuple[str, list[tuple[str, str]]]]:
    """Per entity, the canonical fields without a row of their own (they follow ``*``),
    as choices "entity:field" for the add form. No query."""
    taken = {(group.entity, cell.field) for group in matrix for cell in group.cells}
    groups = []
    for entity in Entity:
        names = [
            n
            for n, spec in SCHEMA.get(entity.value, {}).items()
            if (entity.value, n) not in taken and not spec.input_only  # never stored
        ]
        if (entity.value, "*") not in taken:
            names.insert(0, "*")
        if names:
            groups.append((entity.label, [(f"{entity.value}:{n}", field_label(n)) for n in names]))
    return groups


def owner_choices(systems: list[SourceSystem]) -> list[tuple[str, Any]]:
    """System-of-record choices: a kind of system, or one specific system."""
    kinds = [(f"kind:{value}", f"Any {label} system") for value, label in SystemKind.choices]
    specific = [(f"system:{s.pk}", f"{s} ({s.get_kind_display()})") for s in systems]
    choices: list[tuple[str, Any]] = [("", "No system of record")]
    choices.append(("By kind", kinds))
    if specific:
        choices.append(("A specific system", specific))
    return choices


@dataclass(frozen=True)
class Change:
    label: str
    old: str
    new: str


@dataclass(frozen=True)
class HistoryEntry:
    timestamp: dt.datetime
    actor: Any
    action: str  # create, update, delete
    changes: list[Change]


# The columns of a cell a person reads in its history, with how to show their values;
# bookkeeping (updated_by, updated_at) is already the entry's actor and time.
_HISTORY_FIELDS: dict[str, tuple[str, dict[str, str]]] = {
    "entity": ("Entity", dict(Entity.choices)),
    "field": ("Field", {}),
    "owner_kind": ("System of record (kind)", dict(SystemKind.choices)),
    "owner_system": ("System of record", {}),
    "direction": ("Direction", dict(Direction.choices)),
    "conflict_rule": ("Conflict rule", dict(ConflictRule.choices)),
}
_ACTIONS = {
    LogEntry.Action.CREATE: "create",
    LogEntry.Action.UPDATE: "update",
    LogEntry.Action.DELETE: "delete",
}


def _shown(value: Any, labels: dict[str, str]) -> str:
    if value in (None, "None", ""):
        return ""
    return str(labels.get(str(value), value))


def cell_history(*, cell: FieldOwnership, limit: int = 20) -> list[HistoryEntry]:
    """auditlog's entries for one cell, newest first, in the matrix's words.

    One query for the entries with their actors, one more for the systems they name (if
    any); auditlog's own ``changes_display_dict`` would query per entry and foreign key.
    """
    entries = list(
        LogEntry.objects.get_for_object(cell)
        .select_related("actor")
        .order_by("-timestamp", "-pk")[:limit]
    )
    system_ids = {
        int(value)
        for entry in entries
        for value in entry.changes_dict.get("owner_system", [])
        if str(value).isdigit()
    }
    systems = (
        {str(s.pk): str(s) for s in SourceSystem.objects.filter(pk__in=system_ids)}
        if system_ids
        else {}
    )
    history = []
    for entry in entries:
        changes = []
        for name, values in entry.changes_dict.items():
            if name not in _HISTORY_FIELDS or len(values) != 2:
                continue
            label, choices = _HISTORY_FIELDS[name]
            choices = systems if name == "owner_system" else choices
            changes.append(Change(label, _shown(values[0], choices), _shown(values[1], choices)))
        action = _ACTIONS.get(entry.action, "update")
        history.append(HistoryEntry(entry.timestamp, entry.actor, action, changes))
    return history


# --- the matcher's thresholds, and what the stewards' labels suggest ----------------------

SUGGEST_MIN_LABELS = 20  # labelled pairs needed on the side of a cut before suggesting it
SUGGEST_PRECISION = 0.99  # upper: labelled pairs at or above the cut, share of duplicates
SUGGEST_REJECTED = 0.95  # lower: labelled pairs below the cut, share marked not the same
_EPSILON = 1e-9  # shares are compared as floats: 99 of 100 is exactly the target

THRESHOLD_FIELDS: dict[str, str] = {
    "upper": "Upper threshold (auto-link)",
    "lower": "Lower threshold (review)",
    "max_key_customers": "Shared-key guard",
}


def match_settings() -> list[MatchSettings]:
    """The thresholds of every kind, people first, with who changed them and
    ``upper_text`` / ``lower_text`` (as percentages). One query."""
    order = {kind: n for n, kind in enumerate(Customer.Kind.values)}
    rows = list(MatchSettings.objects.select_related("updated_by"))
    for row in rows:
        row.upper_text = percent_text(row.upper)
        row.lower_text = percent_text(row.lower)
    return sorted(rows, key=lambda row: (order.get(row.kind, len(order)), row.kind))


def access_match_settings(user: User, kind: str, perm: str = VIEW_SETTINGS) -> MatchSettings:
    """The thresholds of ``kind``: 403 without the page's permission, 404 for an unknown
    kind, 403 without ``perm``. One query."""
    require_perm(user, VIEW_SETTINGS)
    row = MatchSettings.objects.filter(kind=kind).first()
    if row is None:
        raise Http404("No thresholds for this kind of customer")
    if not user.has_perm(perm):
        raise PermissionDenied(NOT_ALLOWED)
    return row


@dataclass(frozen=True)
class Label:
    """``count`` labelled pairs scoring ``probability``: duplicates (``match``) or not."""

    probability: float
    match: bool
    count: int = 1


@dataclass(frozen=True)
class CutEvidence:
    """The labelled pairs on one side of a cut: at or above it (an upper threshold) or
    below it (a lower threshold)."""

    threshold: float
    labels: int
    matches: int

    @property
    def non_matches(self) -> int:
        return self.labels - self.matches

    @property
    def precision(self) -> float | None:
        return self.matches / self.labels if self.labels else None

    @property
    def rejected_share(self) -> float | None:
        return self.non_matches / self.labels if self.labels else None

    @property
    def threshold_text(self) -> str:
        return percent_text(self.threshold)

    @property
    def precision_text(self) -> str:
        return percent_text(self.precision)

    @property
    def rejected_text(self) -> str:
        return percent_text(self.rejected_share)


@dataclass(frozen=True)
class ThresholdSuggestion:
    """What the labels say about one kind's thresholds. ``suggested_upper`` /
    ``suggested_lower`` are None when the labels do not support a cut; the ``*_note``
    says why, in the steward's words."""

    upper: float  # the thresholds in force
    lower: float
    labels: int
    matches: int
    at_upper: CutEvidence  # labelled pairs at or above the current upper threshold
    suggested_upper: CutEvidence | None
    suggested_lower: CutEvidence | None
    upper_note: str = ""
    lower_note: str = ""
    conflict: str = ""  # why the suggestion cannot be applied as it is
    min_labels: int = SUGGEST_MIN_LABELS

    @property
    def non_matches(self) -> int:
        return self.labels - self.matches

    @property
    def new_upper(self) -> float:
        return self.suggested_upper.threshold if self.suggested_upper else self.upper

    @property
    def new_lower(self) -> float:
        return self.suggested_lower.threshold if self.suggested_lower else self.lower

    @property
    def applicable(self) -> bool:
        """A valid pair of thresholds (0 < lower < upper <= 1) that differs from today's."""
        if self.conflict:
            return False
        if (self.new_upper, self.new_lower) == (self.upper, self.lower):
            return False
        return 0 < self.new_lower < self.new_upper <= 1

    @property
    def at_upper_low(self) -> bool:
        """Labelled precision at the current upper threshold misses the target over
        enough labels to mean something."""
        p = self.at_upper.precision
        return (
            p is not None
            and self.at_upper.labels >= self.min_labels
            and p < SUGGEST_PRECISION - _EPSILON
        )


def suggest_thresholds(
    labels: Iterable[Label],
    *,
    upper: float,
    lower: float,
    min_labels: int = SUGGEST_MIN_LABELS,
    target_precision: float = SUGGEST_PRECISION,
    target_rejected: float = SUGGEST_REJECTED,
) -> ThresholdSuggestion:
    """Thresholds learned from labelled pairs (pure; no query).

    * Upper: the lowest cut (a labelled probability) where the pairs scoring at or above
      it number at least ``min_labels`` and at least ``target_precision`` of them are
      duplicates — auto-linking from there would have been right that often.
    * Lower: the highest cut below the upper threshold (the suggested one, else today's)
      where the pairs scoring below it number at least ``min_labels`` and at least
      ``target_rejected`` of them were not the same — the review queue below it was
      (almost) all rejections.

    Cuts are labelled probabilities, so pairs with the same probability fall on the same
    side of every cut (ties are never split). A side with too few labels gives no
    suggestion rather than a guess.
    """
    counts: dict[float, list[int]] = defaultdict(lambda: [0, 0])  # p -> [matches, non]
    for label in labels:
        if label.count > 0:
            counts[float(label.probability)][0 if label.match else 1] += label.count
    cuts = sorted(counts)
    total = sum(m + n for m, n in counts.values())
    matches = sum(m for m, _ in counts.values())
    above = [(m, n) for p, (m, n) in counts.items() if p >= upper]
    at_upper = CutEvidence(upper, sum(m + n for m, n in above), sum(m for m, _ in above))

    suggested_upper = None
    seen_m = seen_n = 0
    for p in reversed(cuts):
        seen_m += counts[p][0]
        seen_n += counts[p][1]
        n = seen_m + seen_n
        if n >= min_labels and seen_m >= target_precision * n - _EPSILON:
            suggested_upper = CutEvidence(p, n, seen_m)

    # The lower cut must sit below the upper threshold (the suggested one, else today's):
    # search below it; a qualifying cut at or above it is only worth a note.
    ceiling = suggested_upper.threshold if suggested_upper else upper
    suggested_lower = blocked_lower = None
    seen_m = seen_n = 0
    for p in cuts:
        n = seen_m + seen_n
        if p > 0 and n >= min_labels and seen_n >= target_rejected * n - _EPSILON:
            if p < ceiling:
                suggested_lower = CutEvidence(p, n, seen_m)
            elif blocked_lower is None:
                blocked_lower = CutEvidence(p, n, seen_m)
        seen_m += counts[p][0]
        seen_n += counts[p][1]

    share, rejected = percent_text(target_precision), percent_text(target_rejected)
    if not total:
        upper_note = lower_note = "No labelled pairs yet: nothing to learn from."
    elif total < min_labels:
        upper_note = lower_note = (
            f"Too few labels: {total} labelled pair{'s' if total != 1 else ''}, "
            f"{min_labels} needed before suggesting a threshold."
        )
    else:
        upper_note = (
            ""
            if suggested_upper
            else f"No cut has {share} duplicates among at least {min_labels} labelled pairs "
            "at or above it: the labels do not support auto-linking lower."
        )
        lower_note = (
            ""
            if suggested_lower
            else f"No cut has {rejected} of at least {min_labels} labelled pairs below it "
            "marked not the same: the low end of the review queue still finds duplicates."
        )
    if suggested_lower is None and blocked_lower is not None:
        which = "suggested" if suggested_upper else "current"
        lower_note = (
            f"Not suggested: the cut where {rejected} were not the same "
            f"({blocked_lower.threshold_text}) is not below the {which} upper threshold "
            f"({percent_text(ceiling)})."
        )
    conflict = ""
    new_lower = suggested_lower.threshold if suggested_lower else lower
    if suggested_upper is not None and suggested_upper.threshold <= new_lower:
        conflict = (
            f"The suggested upper threshold ({suggested_upper.threshold_text}) is not above "
            f"the lower threshold ({percent_text(new_lower)}): lower that one first."
        )
    return ThresholdSuggestion(
        upper=upper,
        lower=lower,
        labels=total,
        matches=matches,
        at_upper=at_upper,
        suggested_upper=suggested_upper,
        suggested_lower=suggested_lower,
        upper_note=upper_note,
        lower_note=lower_note,
        conflict=conflict,
        min_labels=min_labels,
    )


def _same_pair(model: type) -> QuerySet:
    return model.objects.filter(low_id=OuterRef("low_id"), high_id=OuterRef("high_id"))


def threshold_labels(kind: str | None = None) -> dict[str, list[Label]]:
    """The stewards' labels per kind, with the probability the matcher stored. One query.

    A duplicate: a candidate a steward approved (status merged, bulk approvals included).
    Not the same: a candidate rejected, or any candidate whose pair is remembered as not
    the same (an undone merge or auto-link). Auto-links nobody undid are no label: no
    person looked at them. The kind is the candidate's customers' kind.
    """
    rows = MatchCandidate.objects.annotate(not_same=Exists(_same_pair(NotDuplicate))).filter(
        Q(status__in=[MatchCandidate.Status.MERGED, MatchCandidate.Status.REJECTED])
        | Q(not_same=True)
    )
    if kind:
        rows = rows.filter(low__kind=kind)
    grouped = (
        rows.order_by()
        .values("low__kind", "probability", "status", "not_same")
        .annotate(n=Count("pk"))
    )
    labels: dict[str, list[Label]] = defaultdict(list)
    for row in grouped:
        match = row["status"] == MatchCandidate.Status.MERGED and not row["not_same"]
        labels[row["low__kind"]].append(Label(row["probability"], match, row["n"]))
    return dict(labels)


def unscored_rejections(kind: str | None = None) -> dict[str, int]:
    """Per kind, "not the same" pairs no candidate scored (an ad-hoc rejection, an undone
    batch merge): labels without a probability, so no cut can use them. One query."""
    rows = NotDuplicate.objects.annotate(scored=Exists(_same_pair(MatchCandidate))).filter(
        scored=False
    )
    if kind:
        rows = rows.filter(low__kind=kind)
    grouped = rows.order_by().values("low__kind").annotate(n=Count("pk"))
    return {row["low__kind"]: row["n"] for row in grouped}


@dataclass(frozen=True)
class KindThresholds:
    """One kind's thresholds in force and what the labels suggest for them."""

    settings: MatchSettings
    suggestion: ThresholdSuggestion
    unscored: int = 0

    @property
    def kind(self) -> str:
        return self.settings.kind

    @property
    def label(self) -> str:
        return Customer.Kind(self.settings.kind).label

    @property
    def upper_text(self) -> str:
        return percent_text(self.settings.upper)

    @property
    def lower_text(self) -> str:
        return percent_text(self.settings.lower)


def kind_thresholds(settings: list[MatchSettings]) -> list[KindThresholds]:
    """``settings`` with the suggestion of each kind. Two queries: the labels, and the
    rejections without a score."""
    labels = threshold_labels()
    unscored = unscored_rejections()
    return [
        KindThresholds(
            settings=row,
            suggestion=suggest_thresholds(
                labels.get(row.kind, []), upper=row.upper, lower=row.lower
            ),
            unscored=unscored.get(row.kind, 0),
        )
        for row in settings
    ]


def kind_suggestion(row: MatchSettings) -> ThresholdSuggestion:
    """The suggestion for one kind, computed now (what "apply" applies). One query."""
    labels = threshold_labels(row.kind).get(row.kind, [])
    return suggest_thresholds(labels, upper=row.upper, lower=row.lower)


@dataclass(frozen=True)
class SettingsChange:
    timestamp: dt.datetime
    actor: Any
    action: str  # create, update, delete
    kind: str
    changes: list[Change]


def match_settings_history(
    *, settings: list[MatchSettings], limit: int = 20
) -> list[SettingsChange]:
    """auditlog's entries for the thresholds of every kind, newest first. One query (the
    content type is cached after its first lookup)."""
    kinds = {str(row.pk): Customer.Kind(row.kind).label for row in settings}
    entries = (
        LogEntry.objects.get_for_model(MatchSettings)
        .select_related("actor")
        .order_by("-timestamp", "-pk")[:limit]
    )
    history = []
    for entry in entries:
        changes = [
            Change(label, _shown(values[0], {}), _shown(values[1], {}))
            for name, label in THRESHOLD_FIELDS.items()
            if len(values := entry.changes_dict.get(name, [])) == 2
        ]
        kind = kinds.get(str(entry.object_pk)) or str(entry.object_repr).split(":")[0]
        action = _ACTIONS.get(entry.action, "update")
        history.append(SettingsChange(entry.timestamp, entry.actor, action, kind, changes))
    return history
