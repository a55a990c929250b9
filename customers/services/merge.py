"""Merge and unmerge: the steward's write path (invariant 6).

A merge folds the *merged* customer into the *survivor*: every row that belongs to the
merged customer is re-pointed to the survivor, the survivor takes the chosen field values
(with the provenance of the side they came from), and the merged customer stays in the
table as ``status=merged``, ``merged_into=survivor``. The :class:`MergeRecord` keeps a
snapshot of everything the merge changed, so :func:`customer_unmerge` can put both
records, their provenance, identity keys, related rows and object permissions back
exactly.

Partners see customers through django-guardian object permissions ("shares"). A share of
the merged customer moves to the survivor like its other rows (a partner who was shared B
keeps seeing the customer once B is folded into A); a share the survivor already has is
dropped as a duplicate. The unmerge moves them back and re-creates the dropped ones.

Every query here is set-based: the number of queries of a merge or an unmerge does not
depend on how many contacts, orders, invoices … the customers have.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from auditlog.models import LogEntry
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone
from guardian.utils import get_group_obj_perms_model, get_user_obj_perms_model

from customers.errors import ApplicationError
from customers.models import (
    ConflictRule,
    Consent,
    Contact,
    Customer,
    Deal,
    Entity,
    ExternalRef,
    FieldOwnership,
    FieldProvenance,
    IdentityKey,
    Invoice,
    MatchCandidate,
    MergeRecord,
    NotDuplicate,
    Order,
    Payment,
    Ticket,
    ordered_pair,
)
from customers.schema import SCHEMA

from .apply import as_text
from .locks import identity_lock
from .ownership import Matrix

Side = Literal["survivor", "merged"]
SIDES: tuple[Side, ...] = ("survivor", "merged")

# Called inside the merge (or unmerge) transaction with (merge_record, "merge" | "unmerge").
# customers may not import integrations, so integrations registers its outbox writer here.
MERGE_LISTENERS: list[Callable[[MergeRecord, str], None]] = []

# The rows that belong to a customer and follow it into the survivor, by snapshot key.
MOVED_MODELS: dict[str, type[models.Model]] = {
    "contacts": Contact,
    "deals": Deal,
    "orders": Order,
    "invoices": Invoice,
    "payments": Payment,
    "tickets": Ticket,
    "consents": Consent,
    "external_refs": ExternalRef,
}

# Candidates a merge still has to deal with; decided ones are history and stay as they are.
OPEN_CANDIDATE_STATUSES = (MatchCandidate.Status.PENDING, MatchCandidate.Status.DEFERRED)
SNAPSHOT_VERSION = 1


def customer_fields() -> list[str]:
    """The canonical customer fields a steward chooses between, in schema order: the
    stored ones (inputs like ``email_verified`` only steer identity resolution)."""
    return [
        name
        for name, spec in SCHEMA[Entity.CUSTOMER].items()
        if not spec.virtual and not spec.input_only
    ]


def share_models() -> dict[str, tuple[type[models.Model], str]]:
    """django-guardian's object-permission tables, by snapshot key, with the column of the
    holder (a user or a group). Both are the generic tables (content type + object_pk)."""
    return {
        "users": (get_user_obj_perms_model(), "user_id"),
        "groups": (get_group_obj_perms_model(), "group_id"),
    }


# --- preview -------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldPreview:
    """One canonical field of the two customers and the value the merge would keep."""

    name: str
    survivor_value: Any
    merged_value: Any
    survivor_provenance: FieldProvenance | None
    merged_provenance: FieldProvenance | None
    choice: Side
    reason: str  # why ``choice`` was pre-selected, for the steward

    @property
    def differs(self) -> bool:
        return as_text(self.survivor_value) != as_text(self.merged_value)

    @property
    def chosen_value(self) -> Any:
        return self.survivor_value if self.choice == "survivor" else self.merged_value


@dataclass(frozen=True)
class MergePreview:
    survivor: Customer
    merged: Customer
    fields: list[FieldPreview]
    # Rows that would move from the merged customer to the survivor, by MOVED_MODELS key,
    # plus "identity_keys".
    moves: dict[str, int] = field(default_factory=dict)
    # Why the merge would be refused ("" when it would not), so a page can say it upfront.
    problem: str = ""

    @property
    def choices(self) -> dict[str, Side]:
        return {f.name: f.choice for f in self.fields}

    @property
    def conflicts(self) -> list[FieldPreview]:
        return [f for f in self.fields if f.differs]


def merge_preview(*, survivor: Customer, merged: Customer) -> MergePreview:
    """Both customers side by side, the pre-selected value of every canonical field, and
    how many rows would move. Reads only; ``customer_merge`` re-checks everything under
    lock. Queries: ownership matrix, provenance of both, the not-duplicate check, one
    count per moved table.
    """
    matrix = Matrix.load(Entity.CUSTOMER)
    provenance = _provenance_by_side(survivor, merged)
    previews = _field_previews(survivor, merged, provenance, matrix)
    moves = {
        name: model.objects.filter(customer_id=merged.pk).count()
        for name, model in MOVED_MODELS.items()
    }
    moves["identity_keys"] = IdentityKey.objects.filter(customer_id=merged.pk).count()
    return MergePreview(
        survivor=survivor,
        merged=merged,
        fields=previews,
        moves=moves,
        problem=_refusal(survivor, merged, allow_cross_kind=False) or "",
    )


def _provenance_by_side(
    survivor: Customer, merged: Customer
) -> dict[Side, dict[str, FieldProvenance]]:
    rows = (
        FieldProvenance.objects.filter(
            entity=Entity.CUSTOMER, object_id__in=[survivor.pk, merged.pk]
        )
        .select_related("system")
        .order_by("pk")
    )
    found: dict[Side, dict[str, FieldProvenance]] = {"survivor": {}, "merged": {}}
    for prov in rows:
        found["survivor" if prov.object_id == survivor.pk else "merged"][prov.field] = prov
    return found


def _field_previews(
    survivor: Customer,
    merged: Customer,
    provenance: dict[Side, dict[str, FieldProvenance]],
    matrix: Matrix,
) -> list[FieldPreview]:
    previews = []
    for name in customer_fields():
        s_value, m_value = getattr(survivor, name), getattr(merged, name)
        s_prov, m_prov = provenance["survivor"].get(name), provenance["merged"].get(name)
        choice, reason = _preselect(
            matrix.cell(name), as_text(s_value), as_text(m_value), s_prov, m_prov
        )
        previews.append(
            FieldPreview(name, s_value, m_value, s_prov, m_prov, choice=choice, reason=reason)
        )
    return previews


def _preselect(
    cell: FieldOwnership | None,
    s_text: str,
    m_text: str,
    s_prov: FieldProvenance | None,
    m_prov: FieldProvenance | None,
) -> tuple[Side, str]:
    """The matrix's pick: the system of record's value if either side has one, else the
    newer source time, else the non-empty value. The survivor wins every tie."""
    if not m_text:
        return "survivor", "only value" if s_text else "both empty"
    if not s_text:
        return "merged", "only value"
    if cell is not None:
        s_owner = s_prov is not None and cell.is_owner(s_prov.system)
        m_owner = m_prov is not None and cell.is_owner(m_prov.system)
        if s_owner != m_owner:
            return ("merged" if m_owner else "survivor"), "system of record"
        if cell.conflict_rule == ConflictRule.MOST_TRUSTED and s_prov and m_prov:
            s_rank, m_rank = s_prov.system.trust_rank, m_prov.system.trust_rank
            if s_rank != m_rank:
                return ("merged" if m_rank > s_rank else "survivor"), "most trusted source"
    if s_prov and m_prov and m_prov.source_updated_at > s_prov.source_updated_at:
        return "merged", "newer"
    if s_prov and m_prov and s_prov.source_updated_at > m_prov.source_updated_at:
        return "survivor", "newer"
    return "survivor", "same value" if s_text == m_text else "survivor kept"


def _refusal(survivor: Customer, merged: Customer, *, allow_cross_kind: bool) -> str | None:
    """Why this pair may not be merged, or None. One query (the not-duplicate check)."""
    if survivor.pk == merged.pk:
        return "A customer cannot be merged into itself."
    for customer in (merged, survivor):
        if customer.status == Customer.Status.MERGED:
            return f"Customer #{customer.pk} is already merged into #{customer.merged_into_id}."
        if customer.status != Customer.Status.ACTIVE:
            return f"Customer #{customer.pk} is {customer.status} and cannot be merged."
    if survivor.kind != merged.kind and not allow_cross_kind:
        return (
            f"Customer #{merged.pk} is a {merged.kind} and #{survivor.pk} is a "
            f"{survivor.kind}; merging across kinds must be allowed explicitly."
        )
    low, high = ordered_pair(survivor.pk, merged.pk)
    if NotDuplicate.objects.filter(low_id=low, high_id=high).exists():
        return (
            f"Customers #{low} and #{high} were marked as not the same customer; "
            "they cannot be merged."
        )
    return None


# --- merge ---------------------------------------------------------------------------


@transaction.atomic
def customer_merge(
    *,
    survivor_id: int,
    merged_id: int,
    user: AbstractBaseUser | None = None,
    field_choices: dict[str, str] | None = None,
    candidate_id: int | None = None,
    automatic: bool = False,
    allow_cross_kind: bool = False,
) -> MergeRecord:
    """Fold customer ``merged_id`` into ``survivor_id`` and return the undo record.

    Preconditions, checked under a SELECT … FOR UPDATE lock on both customers (taken in id
    order, so two merges of overlapping pairs queue instead of deadlocking): the two ids
    differ, both customers are active, they are of the same kind (unless
    ``allow_cross_kind``), and no steward marked them as not the same. ``field_choices``
    maps canonical fields to "survivor" or "merged" and overrides the pre-selection of
    :func:`merge_preview`. ``candidate_id``, when given, must be an open candidate for this
    very pair; it is marked merged. Raises ApplicationError otherwise.

    The number of queries does not depend on the number of related rows.
    """
    if survivor_id == merged_id:
        raise ApplicationError("A customer cannot be merged into itself.")
    choices = _validated_choices(field_choices)
    # Lock order everywhere: the identity lock (no record is being resolved meanwhile),
    # the candidate, then the customers by id.
    identity_lock(exclusive=True)
    candidate = _locked_candidate(candidate_id, survivor_id, merged_id)
    locked = {
        c.pk: c
        for c in Customer.objects.select_for_update()
        .filter(pk__in=[survivor_id, merged_id])
        # Lock in id order: two merges of overlapping pairs then wait for each other.
        .order_by("pk")
    }
    if survivor_id not in locked or merged_id not in locked:
        missing = merged_id if merged_id not in locked else survivor_id
        raise ApplicationError(f"Customer #{missing} does not exist.")
    survivor, merged = locked[survivor_id], locked[merged_id]
    problem = _refusal(survivor, merged, allow_cross_kind=allow_cross_kind)
    if problem:
        raise ApplicationError(problem)

    now = timezone.now()
    provenance = _provenance_by_side(survivor, merged)
    previews = _field_previews(survivor, merged, provenance, Matrix.load(Entity.CUSTOMER))
    chosen = {p.name: choices.get(p.name, p.choice) for p in previews}
    keys = list(IdentityKey.objects.filter(customer_id__in=[survivor_id, merged_id]).order_by("pk"))
    moved = {
        name: list(
            model.objects.filter(customer_id=merged_id).order_by("pk").values_list("pk", flat=True)
        )
        for name, model in MOVED_MODELS.items()
        if model is not ExternalRef
    }
    refs = ExternalRef.objects.filter(customer_id=merged_id).order_by("pk")
    refs = list(refs.values_list("pk", "entity", "object_id"))
    moved["external_refs"] = [pk for pk, _, _ in refs]
    # The merged customer's own cross-references also name it as the object: they follow.
    customer_refs = [
        pk for pk, entity, object_id in refs if entity == Entity.CUSTOMER and object_id == merged_id
    ]
    # Customers merged earlier into the loser now point straight at the survivor, so no
    # customer is ever merged into a merged customer.
    merged_from = list(
        Customer.objects.filter(merged_into_id=merged_id)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    shares = _share_changes(survivor_id, merged_id)

    # Survivor fields that change, with the provenance they get.
    applied: dict[str, dict[str, Any]] = {}
    new_values: dict[str, Any] = {}
    new_provenance: list[FieldProvenance] = []
    for preview in previews:
        if chosen[preview.name] != "merged":
            continue
        source = preview.merged_provenance
        same_source = _same_provenance(preview.survivor_provenance, source)
        if not preview.differs and same_source:
            continue
        new_values[preview.name] = preview.merged_value
        prov = None
        if source is not None:
            prov = FieldProvenance(
                entity=Entity.CUSTOMER,
                object_id=survivor_id,
                field=preview.name,
                value=source.value,
                system_id=source.system_id,
                source_updated_at=source.source_updated_at,
                record_id=source.record_id,
                applied_at=now,
            )
            new_provenance.append(prov)
        applied[preview.name] = {
            "value": as_text(preview.merged_value),
            "provenance": _provenance_key(prov),
        }
    final_kind = new_values.get("kind", survivor.kind)
    key_values = {(k.key_type, k.value) for k in keys if k.customer_id == survivor_id}
    duplicate_keys = [
        k.pk for k in keys if k.customer_id == merged_id and (k.key_type, k.value) in key_values
    ]

    candidate_changes = _candidate_changes(
        survivor_id=survivor_id, merged_id=merged_id, candidate=candidate, user=user, now=now
    )
    snapshot = {
        "version": SNAPSHOT_VERSION,
        "touched_at": now.isoformat(),
        "survivor": _dump(survivor),
        "merged": _dump(merged),
        "provenance": {side: [_dump(p) for p in provenance[side].values()] for side in SIDES},
        "identity_keys": {
            "survivor": [_dump(k) for k in keys if k.customer_id == survivor_id],
            "merged": [_dump(k) for k in keys if k.customer_id == merged_id],
        },
        "moved": moved,
        "customer_refs": customer_refs,
        "merged_from": merged_from,
        "shares": {name: change["snapshot"] for name, change in shares.items()},
        "applied": applied,
        "candidates": candidate_changes["before"],
    }
    record = MergeRecord.objects.create(
        survivor_id=survivor_id,
        merged_id=merged_id,
        candidate=candidate,
        snapshot=snapshot,
        field_choices=chosen,
        merged_by=_user_or_none(user),
        automatic=automatic,
    )

    # One UPDATE per table; the merged customer's rows are locked out of other writers by
    # the FOR UPDATE lock (inserting a row that references it waits for this transaction).
    for name, model in MOVED_MODELS.items():
        if not moved[name]:
            continue
        changes: dict[str, Any] = {"customer_id": survivor_id}
        if model is ExternalRef and customer_refs:
            changes["object_id"] = Case(
                When(entity=Entity.CUSTOMER, object_id=merged_id, then=Value(survivor_id)),
                default=F("object_id"),
                output_field=models.BigIntegerField(),
            )
        model.objects.filter(customer_id=merged_id).update(**changes)
    if merged_from:
        Customer.objects.filter(merged_into_id=merged_id).update(merged_into_id=survivor_id)

    if applied:
        FieldProvenance.objects.filter(
            entity=Entity.CUSTOMER, object_id=survivor_id, field__in=list(applied)
        ).delete()
        FieldProvenance.objects.bulk_create(new_provenance)
    if duplicate_keys:
        IdentityKey.objects.filter(pk__in=duplicate_keys).delete()
    IdentityKey.objects.filter(customer_id=merged_id).update(
        customer_id=survivor_id, customer_kind=final_kind
    )
    if final_kind != survivor.kind:
        IdentityKey.objects.filter(customer_id=survivor_id).update(customer_kind=final_kind)
    # Shares: one DELETE of the duplicates and one UPDATE of the rest, per table.
    for name, (model, _) in share_models().items():
        change = shares[name]
        if change["duplicates"]:
            model.objects.filter(pk__in=change["duplicates"]).delete()
        if change["snapshot"]["moved"]:
            model.objects.filter(pk__in=change["snapshot"]["moved"]).update(
                object_pk=str(survivor_id)
            )

    Customer.objects.filter(pk=survivor_id).update(**new_values, updated_at=now)
    Customer.objects.filter(pk=merged_id).update(
        status=Customer.Status.MERGED, merged_into_id=survivor_id, updated_at=now
    )
    if candidate_changes["after"]:
        MatchCandidate.objects.bulk_update(
            candidate_changes["after"], ["low", "high", "status", "decided_by", "decided_at"]
        )

    survivor_changes = {
        name: [as_text(getattr(survivor, name)), as_text(value)]
        for name, value in new_values.items()
    }
    survivor_changes["merged_from"] = ["", f"#{merged_id}"]
    _audit(
        record,
        "merge",
        user,
        {
            survivor: survivor_changes,
            merged: {
                "status": [merged.status, Customer.Status.MERGED],
                "merged_into": ["", f"#{survivor_id}"],
            },
        },
    )
    for listener in MERGE_LISTENERS:
        listener(record, "merge")
    return record


def _share_changes(survivor_id: int, merged_id: int) -> dict[str, dict[str, Any]]:
    """The merged customer's object permissions, per share table: which move to the
    survivor and which are dropped because the survivor's holder already has them. One
    query per table (both customers' rows; content types are cached)."""
    content_type = ContentType.objects.get_for_model(Customer)
    survivor_pk, merged_pk = str(survivor_id), str(merged_id)
    changes = {}
    for name, (model, holder) in share_models().items():
        rows = list(
            model.objects.filter(
                content_type=content_type, object_pk__in=[survivor_pk, merged_pk]
            ).order_by("pk")
        )
        held = {(getattr(r, holder), r.permission_id) for r in rows if r.object_pk == survivor_pk}
        theirs = [r for r in rows if r.object_pk == merged_pk]
        duplicates = {r.pk for r in theirs if (getattr(r, holder), r.permission_id) in held}
        changes[name] = {
            "duplicates": sorted(duplicates),
            "snapshot": {
                # Every share of the merged customer as it was; the moved ones by id.
                "merged": [_dump(r) for r in theirs],
                "moved": [r.pk for r in theirs if r.pk not in duplicates],
            },
        }
    return changes


def _validated_choices(field_choices: dict[str, str] | None) -> dict[str, Side]:
    choices = dict(field_choices or {})
    known = set(customer_fields())
    unknown = sorted(set(choices) - known)
    if unknown:
        raise ApplicationError(f"Not a customer field: {', '.join(unknown)}.")
    bad = sorted(name for name, side in choices.items() if side not in SIDES)
    if bad:
        raise ApplicationError(
            f"Choose 'survivor' or 'merged' for {', '.join(bad)}.",
            extra={"fields": bad},
        )
    return choices  # type: ignore[return-value]


def _locked_candidate(
    candidate_id: int | None, survivor_id: int, merged_id: int
) -> MatchCandidate | None:
    if candidate_id is None:
        return None
    candidate = MatchCandidate.objects.select_for_update().filter(pk=candidate_id).first()
    if candidate is None:
        raise ApplicationError(f"Match candidate #{candidate_id} does not exist.")
    if (candidate.low_id, candidate.high_id) != ordered_pair(survivor_id, merged_id):
        raise ApplicationError(
            f"Match candidate #{candidate_id} is about customers #{candidate.low_id} and "
            f"#{candidate.high_id}, not #{survivor_id} and #{merged_id}."
        )
    if candidate.status not in OPEN_CANDIDATE_STATUSES:
        raise ApplicationError(
            f"Match candidate #{candidate_id} was already decided ({candidate.status})."
        )
    return candidate


def _candidate_changes(
    *,
    survivor_id: int,
    merged_id: int,
    candidate: MatchCandidate | None,
    user: AbstractBaseUser | None,
    now: dt.datetime,
) -> dict[str, list]:
    """Open candidates that involve the merged customer, decided by this merge.

    The candidate for this very pair is marked merged. Any other candidate (merged, X)
    becomes (survivor, X) when that is a new pair of two active customers not marked as
    not the same; otherwise it is superseded. Returns the rows to bulk-update ("after")
    and their state before, for the undo snapshot ("before"). Three queries.
    """
    # Not locked: taking candidate locks after customer locks would invert the lock order
    # of candidate_decide; the customer locks already serialize merges touching them.
    involved = list(
        MatchCandidate.objects.filter(
            Q(low_id=merged_id) | Q(high_id=merged_id), status__in=OPEN_CANDIDATE_STATUSES
        )
        .select_related("low", "high")
        .order_by("pk")
    )
    if candidate is not None and all(c.pk != candidate.pk for c in involved):
        involved.append(candidate)
    if not involved:
        return {"before": [], "after": []}
    others = {c.low_id if c.high_id == merged_id else c.high_id for c in involved} - {survivor_id}
    taken = set()
    blocked = set()
    if others:
        pairs = [ordered_pair(survivor_id, other) for other in others]
        pair_q = Q()
        for low, high in pairs:
            pair_q |= Q(low_id=low, high_id=high)
        taken = set(MatchCandidate.objects.filter(pair_q).values_list("low_id", "high_id"))
        blocked = set(NotDuplicate.objects.filter(pair_q).values_list("low_id", "high_id"))
    before, after = [], []
    decided_by = _user_or_none(user)
    for c in involved:
        before.append(_candidate_state(c))
        other_id, other = (c.low_id, c.low) if c.high_id == merged_id else (c.high_id, c.high)
        if other_id == survivor_id:
            c.status = MatchCandidate.Status.MERGED
            c.decided_by, c.decided_at = decided_by, now
        else:
            pair = ordered_pair(survivor_id, other_id)
            if other.status == Customer.Status.ACTIVE and pair not in taken and pair not in blocked:
                c.low_id, c.high_id = pair
                taken.add(pair)
            else:
                c.status = MatchCandidate.Status.SUPERSEDED
                c.decided_by, c.decided_at = None, now
        after.append(c)
    return {"before": before, "after": after}


def _candidate_state(c: MatchCandidate) -> dict[str, Any]:
    return {
        "id": c.pk,
        "low_id": c.low_id,
        "high_id": c.high_id,
        "status": c.status,
        "decided_by_id": c.decided_by_id,
        "decided_at": c.decided_at.isoformat() if c.decided_at else None,
    }


# --- unmerge -------------------------------------------------------------------------


@transaction.atomic
def customer_unmerge(*, merge_id: int, user: AbstractBaseUser | None = None) -> Customer:
    """Undo merge ``merge_id`` and return the restored (formerly merged) customer.

    Preconditions, checked under SELECT … FOR UPDATE locks on the merge record and both
    customers: the merge is not undone yet, and the survivor is still active (when it was
    merged on into another customer, that later merge must be undone first).

    Restores the merged customer's row, its identity keys and every row the merge
    re-pointed (still pointing at the survivor) exactly. Survivor fields the merge changed
    go back to their values and provenance from before the merge, unless a source changed
    them since; rows created on the survivor after the merge stay with the survivor. The
    pair is recorded as not the same customer, so it is never suggested again.
    """
    identity_lock(exclusive=True)  # first, as in customer_merge
    record = MergeRecord.objects.select_for_update().filter(pk=merge_id).first()
    if record is None:
        raise ApplicationError(f"Merge #{merge_id} does not exist.")
    if record.undone_at is not None:
        raise ApplicationError(f"Merge #{merge_id} was already undone.")
    snapshot = record.snapshot
    if snapshot.get("version") != SNAPSHOT_VERSION:
        raise ApplicationError(f"Merge #{merge_id} has no snapshot this version can undo.")
    survivor_id, merged_id = record.survivor_id, record.merged_id
    locked = {
        c.pk: c
        for c in Customer.objects.select_for_update()
        .filter(pk__in=[survivor_id, merged_id])
        .order_by("pk")
    }
    survivor, merged = locked[survivor_id], locked[merged_id]
    if survivor.status == Customer.Status.MERGED:
        later = (
            MergeRecord.objects.filter(merged_id=survivor_id, undone_at__isnull=True)
            .values_list("pk", flat=True)
            .first()
        )
        raise ApplicationError(
            f"Customer #{survivor_id} was merged into #{survivor.merged_into_id} after this "
            f"merge; undo merge #{later} first.",
            extra={"blocking_merge": later},
        )
    if survivor.status != Customer.Status.ACTIVE:
        raise ApplicationError(f"Customer #{survivor_id} is {survivor.status}; cannot unmerge.")
    if merged.status != Customer.Status.MERGED or merged.merged_into_id != survivor_id:
        raise ApplicationError(
            f"Customer #{merged_id} is no longer merged into #{survivor_id}; cannot unmerge."
        )

    now = timezone.now()
    touched_at = dt.datetime.fromisoformat(snapshot["touched_at"])
    # Survivor fields: revert those still holding what the merge put there.
    applied: dict[str, dict[str, Any]] = snapshot["applied"]
    current_prov = {
        p.field: p
        for p in FieldProvenance.objects.filter(
            entity=Entity.CUSTOMER, object_id=survivor_id, field__in=list(applied)
        )
    }
    before = _load_values(Customer, snapshot["survivor"])
    reverted = [
        name
        for name, after in applied.items()
        if as_text(getattr(survivor, name)) == after["value"]
        and _provenance_key(current_prov.get(name)) == after["provenance"]
    ]
    survivor_values = {name: before[name] for name in reverted}
    untouched_since = survivor.updated_at == touched_at and len(reverted) == len(applied)
    survivor_values["updated_at"] = before["updated_at"] if untouched_since else now
    Customer.objects.filter(pk=survivor_id).update(**survivor_values)
    merged_values = _load_values(Customer, snapshot["merged"])
    merged_values.pop("id")
    Customer.objects.filter(pk=merged_id).update(**merged_values)

    if reverted:
        FieldProvenance.objects.filter(
            entity=Entity.CUSTOMER, object_id=survivor_id, field__in=reverted
        ).delete()
        FieldProvenance.objects.bulk_create(
            _load(FieldProvenance, row)
            for row in snapshot["provenance"]["survivor"]
            if row["field"] in reverted
        )

    # Identity keys: the merged customer's come back with their ids (including those
    # dropped as duplicates of the survivor's); the survivor's get their kind back.
    merged_keys = snapshot["identity_keys"]["merged"]
    IdentityKey.objects.filter(
        pk__in=[k["id"] for k in merged_keys], customer_id=survivor_id
    ).delete()
    keys = [_load(IdentityKey, k) for k in merged_keys]
    created_at = {k.pk: k.created_at for k in keys}
    IdentityKey.objects.bulk_create(keys, ignore_conflicts=True)
    if keys:
        # auto_now_add stamped the inserted keys with the time of the insert.
        for key in keys:
            key.created_at = created_at[key.pk]
        IdentityKey.objects.bulk_update(keys, ["created_at"])
    if survivor.kind != before["kind"] and "kind" in reverted:
        IdentityKey.objects.filter(customer_id=survivor_id).update(customer_kind=before["kind"])

    # Related rows go back when they still point at the survivor; one UPDATE per table.
    customer_refs = snapshot["customer_refs"]
    for name, model in MOVED_MODELS.items():
        ids = snapshot["moved"].get(name) or []
        if not ids:
            continue
        changes: dict[str, Any] = {"customer_id": merged_id}
        if model is ExternalRef and customer_refs:
            changes["object_id"] = Case(
                When(pk__in=customer_refs, then=Value(merged_id)),
                default=F("object_id"),
                output_field=models.BigIntegerField(),
            )
        model.objects.filter(pk__in=ids, customer_id=survivor_id).update(**changes)
    if snapshot["merged_from"]:
        Customer.objects.filter(pk__in=snapshot["merged_from"], merged_into_id=survivor_id).update(
            merged_into_id=merged_id
        )
    _restore_shares(snapshot.get("shares", {}), survivor_id, merged_id)

    _restore_candidates(snapshot["candidates"], survivor_id, merged_id, user, now)
    low, high = ordered_pair(survivor_id, merged_id)
    NotDuplicate.objects.get_or_create(
        low_id=low,
        high_id=high,
        defaults={"decided_by": _user_or_none(user), "reason": "unmerged"},
    )
    record.undone_at = now
    record.undone_by = _user_or_none(user)
    record.save(update_fields=["undone_at", "undone_by"])

    restored = Customer.objects.get(pk=merged_id)
    _audit(
        record,
        "unmerge",
        user,
        {
            survivor: {
                **{
                    name: [as_text(getattr(survivor, name)), as_text(before[name])]
                    for name in reverted
                },
                "merged_from": [f"#{merged_id}", ""],
            },
            restored: {
                "status": [Customer.Status.MERGED, restored.status],
                "merged_into": [f"#{survivor_id}", ""],
            },
        },
    )
    for listener in MERGE_LISTENERS:
        listener(record, "unmerge")
    return restored


def _restore_shares(shares: dict[str, dict[str, list]], survivor_id: int, merged_id: int) -> None:
    """Object permissions back on the merged customer: the moved ones that still point at
    the survivor go back (one UPDATE per table), the dropped duplicates come back with
    their ids (one INSERT per table). Shares the survivor had before, or was given after
    the merge, stay. Snapshots written before shares followed merges have none."""
    for name, (model, _) in share_models().items():
        share = shares.get(name)
        if not share:
            continue
        moved, pk = set(share["moved"]), model._meta.pk.attname
        if moved:
            model.objects.filter(pk__in=sorted(moved), object_pk=str(survivor_id)).update(
                object_pk=str(merged_id)
            )
        dropped = [_load(model, row) for row in share["merged"] if row[pk] not in moved]
        if dropped:
            model.objects.bulk_create(dropped, ignore_conflicts=True)


def _restore_candidates(
    before: list[dict[str, Any]],
    survivor_id: int,
    merged_id: int,
    user: AbstractBaseUser | None,
    now: dt.datetime,
) -> None:
    """Put candidates the merge decided back as they were, unless decided again since.

    The candidate for the pair itself is rejected: the steward just said "not the same".
    Two queries at most.
    """
    if not before:
        return
    current = MatchCandidate.objects.in_bulk([c["id"] for c in before])
    pair = ordered_pair(survivor_id, merged_id)
    changed = []
    for state in before:
        c = current.get(state["id"])
        if c is None:
            continue
        if (state["low_id"], state["high_id"]) == pair:
            if c.status == MatchCandidate.Status.MERGED:
                c.status = MatchCandidate.Status.REJECTED
                c.decided_by, c.decided_at = _user_or_none(user), now
                changed.append(c)
            continue
        other = state["low_id"] if state["high_id"] == merged_id else state["high_id"]
        repointed = c.status in OPEN_CANDIDATE_STATUSES and (c.low_id, c.high_id) == (
            ordered_pair(survivor_id, other)
        )
        superseded = c.status == MatchCandidate.Status.SUPERSEDED and (
            (c.low_id, c.high_id) == (state["low_id"], state["high_id"])
        )
        if repointed or superseded:
            c.low_id, c.high_id = state["low_id"], state["high_id"]
            c.status = state["status"]
            c.decided_by_id = state["decided_by_id"]
            c.decided_at = (
                dt.datetime.fromisoformat(state["decided_at"]) if state["decided_at"] else None
            )
            changed.append(c)
    if changed:
        MatchCandidate.objects.bulk_update(
            changed, ["low", "high", "status", "decided_by", "decided_at"]
        )


# --- helpers -------------------------------------------------------------------------


def _audit(
    record: MergeRecord,
    action: str,
    user: AbstractBaseUser | None,
    changes: dict[Customer, dict[str, list[str]]],
) -> None:
    """One auditlog entry per customer. QuerySet.update() bypasses auditlog's signals, so
    the merge writes the entries itself."""
    actor = _user_or_none(user)
    for customer, customer_changes in changes.items():
        LogEntry.objects.log_create(
            customer,
            action=LogEntry.Action.UPDATE,
            changes=customer_changes,
            actor=actor,
            additional_data={
                "action": action,
                "merge_record": record.pk,
                "survivor": record.survivor_id,
                "merged": record.merged_id,
                "automatic": record.automatic,
            },
        )


def _user_or_none(user: AbstractBaseUser | None) -> AbstractBaseUser | None:
    return user if user is not None and user.is_authenticated else None


def _same_provenance(a: FieldProvenance | None, b: FieldProvenance | None) -> bool:
    return _provenance_key(a) == _provenance_key(b)


def _provenance_key(prov: FieldProvenance | None) -> list[Any] | None:
    """What identifies a provenance row's content, JSON-comparable."""
    if prov is None:
        return None
    return [prov.value, prov.system_id, prov.source_updated_at.isoformat(), prov.record_id]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _dump(obj: models.Model) -> dict[str, Any]:
    """Every column of ``obj`` by attname, JSON-safe; :func:`_load` reverses it."""
    return {f.attname: _jsonable(getattr(obj, f.attname)) for f in obj._meta.concrete_fields}


def _load_values(model: type[models.Model], data: dict[str, Any]) -> dict[str, Any]:
    return {
        f.attname: f.to_python(data[f.attname])
        for f in model._meta.concrete_fields
        if f.attname in data
    }


def _load(model: type[models.Model], data: dict[str, Any]) -> models.Model:
    return model(**_load_values(model, data))
