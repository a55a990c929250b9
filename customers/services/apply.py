"""Resolve and apply mapped records to the canonical models, one batch at a time.

The pipeline in ``integrations`` calls :func:`records_apply` with records that are already
landed and mapped to canonical values. Everything here is set-based: a fixed number of
queries per batch whatever its size (lookups with ``__in``, bulk inserts and updates).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from operator import attrgetter
from typing import Any

from django.db import models, router, transaction
from django.utils import timezone

from customers.db import (
    bulk_insert,
    bulk_update_fast,
    bulk_upsert,
    instance_maker,
    rows_matching,
)
from customers.identity.rules import KEY_PRIORITY, customer_kind, identity_keys
from customers.models import (
    ENTITY_MODELS,
    Customer,
    Entity,
    ExternalRef,
    FieldProvenance,
    IdentityKey,
    OrderLine,
    SourceSystem,
)
from customers.schema import REQUIRED_FIELDS, REQUIRED_REFS, SCHEMA

from .locks import identity_lock
from .ownership import Current, Decision, Matrix


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    STALE = "stale"
    FAILED = "failed"


@dataclass
class ApplyItem:
    """One landed record, mapped to canonical values."""

    external_id: str
    source_updated_at: dt.datetime
    payload_hash: str
    values: dict[str, Any]
    refs: dict[str, str] = field(default_factory=dict)
    record_id: int | None = None
    deleted: bool = False  # the source deleted the record


@dataclass
class ApplyResult:
    outcome: Outcome
    object_id: int | None = None
    customer_id: int | None = None
    matched_by: str = ""  # "xref", a key type ("email" …), or "new"
    applied: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    error: str = ""
    match: dict[str, Any] = field(default_factory=dict)  # probability and per-field evidence

    @property
    def linked(self) -> bool:
        """A new source record joined an existing customer."""
        return self.matched_by not in ("", "xref", "new")


def as_text(value: Any) -> str:
    """The provenance representation of a canonical value; also used to compare values."""
    if type(value) is str:  # most values: checked first, the pipeline calls this per field
        return value
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


@dataclass(slots=True)
class _Provenance:
    """A field's provenance: what is stored (loaded) or about to be written (touched)."""

    value: str
    system: SourceSystem
    source_updated_at: dt.datetime
    record_id: int | None = None
    target: models.Model | None = None  # the object; a new one has its pk after insert


PROVENANCE_FIELDS = [
    "entity",
    "object_id",
    "field",
    "value",
    "system",
    "source_updated_at",
    "record_id",
    "applied_at",
]
REF_FIELDS = [
    "system",
    "entity",
    "external_id",
    "object_id",
    "customer",
    "payload_hash",
    "source_updated_at",
    "created_at",
    "updated_at",
]
KEY_FIELDS = ["customer", "key_type", "value", "customer_kind", "system", "created_at"]


class DeletePolicy(StrEnum):
    IGNORE = "ignore"
    SOFT_DELETE = "soft_delete"
    TOMBSTONE = "tombstone"


@transaction.atomic
def records_apply(
    *,
    system: SourceSystem,
    entity: str,
    items: list[ApplyItem],
    delete_policy: str = DeletePolicy.SOFT_DELETE,
) -> list[ApplyResult]:
    """Resolve each item to its canonical object and apply it under the ownership matrix.

    Precondition: external ids are unique within ``items`` (the pipeline splits a page
    that carries two versions of one record into successive calls). Returns one result per
    item, in order. Writes provenance for every applied field. Deleted items follow the
    system's delete policy; nothing is ever hard-deleted (invoices and payments included).
    """
    ids = [i.external_id for i in items]
    if len(set(ids)) != len(ids):
        raise ValueError("records_apply needs unique external ids per call")
    identity_lock(exclusive=entity == Entity.CUSTOMER)
    upserts = [n for n, i in enumerate(items) if not i.deleted]
    deletes = [n for n, i in enumerate(items) if i.deleted]
    results: list[ApplyResult | None] = [None] * len(items)
    if upserts:
        batch = _Batch(system=system, entity=entity, items=[items[n] for n in upserts])
        if entity == Entity.CUSTOMER:
            batch.resolve_customers()
        else:
            batch.resolve_related()
        batch.decide()
        batch.write()
        for n, result in zip(upserts, batch.results, strict=True):
            results[n] = result
    if deletes:
        deleted = _apply_deletes(
            system=system, entity=entity, items=[items[n] for n in deletes], policy=delete_policy
        )
        for n, result in zip(deletes, deleted, strict=True):
            results[n] = result
    return results


def _apply_deletes(
    *, system: SourceSystem, entity: str, items: list[ApplyItem], policy: str
) -> list[ApplyResult]:
    """Upstream deletes: tombstone the cross-reference; soft delete the object's row when
    the policy says so (a customer stays: other systems may still hold it)."""
    refs = {
        r.external_id: r
        for r in ExternalRef.objects.filter(
            system=system, entity=entity, external_id__in=[i.external_id for i in items]
        ).order_by()
    }
    now = timezone.now()
    results, tombstoned, soft_deleted = [], [], []
    for item in items:
        ref = refs.get(item.external_id)
        if ref is None:
            results.append(ApplyResult(Outcome.UNCHANGED, matched_by="new"))
            continue
        result = ApplyResult(Outcome.UNCHANGED, ref.object_id, ref.customer_id, "xref")
        if ref.source_updated_at and item.source_updated_at < ref.source_updated_at:
            result.outcome = Outcome.STALE
        elif policy != DeletePolicy.IGNORE and ref.tombstoned_at is None:
            ref.tombstoned_at = now
            ref.source_updated_at = item.source_updated_at
            ref.payload_hash = item.payload_hash
            ref.updated_at = now
            tombstoned.append(ref)
            result.outcome = Outcome.UPDATED
            result.applied = ["deleted"]
            if policy == DeletePolicy.SOFT_DELETE and entity != Entity.CUSTOMER:
                soft_deleted.append(ref.object_id)
        results.append(result)
    if tombstoned:
        ExternalRef.objects.bulk_update(
            tombstoned, ["tombstoned_at", "source_updated_at", "payload_hash", "updated_at"]
        )
    if soft_deleted:
        ENTITY_MODELS[entity].objects.filter(pk__in=soft_deleted, deleted_at__isnull=True).update(
            deleted_at=now
        )
    return results


class _Batch:
    def __init__(self, *, system: SourceSystem, entity: str, items: list[ApplyItem]) -> None:
        self.system = system
        self.entity = entity
        self.model: type[models.Model] = ENTITY_MODELS[entity]
        self.items = items
        self.results: list[ApplyResult | None] = [None] * len(items)
        self.now = timezone.now()
        self.refs: dict[str, ExternalRef] = {
            r.external_id: r
            for r in ExternalRef.objects.filter(
                system=system, entity=entity, external_id__in=[i.external_id for i in items]
            ).order_by()  # the model's ordering joins the system table; not needed here
        }
        # Per item: the target object (saved or pending) and how it was found.
        self.targets: list[models.Model | None] = [None] * len(items)
        self.matched_by: list[str] = [""] * len(items)
        self.parent_ids: list[int | None] = [None] * len(items)
        self.new_objects: list[models.Model] = []
        self.changed_fields: dict[int, set[str]] = defaultdict(set)  # id(obj) → fields
        self.provenance: dict[tuple[int, str], _Provenance] = {}  # (id(obj), field)
        self.touched_provenance: dict[tuple[int, str], _Provenance] = {}
        self.replaced_lines: dict[int, tuple[models.Model, list[dict[str, Any]]]] = {}
        self.match_info: dict[int, dict[str, Any]] = {}
        self.review_after: dict[int, list] = {}
        self.model_active = False
        # Per item resolved by its keys: the customer kind and identity keys it was given.
        self.identity: dict[int, tuple[str, list[tuple[str, str]]]] = {}

    # -- resolution ---------------------------------------------------------------------

    def _screen_refs(self) -> list[int]:
        """Settle items whose xref says they are unchanged or stale; return the rest."""
        pending = []
        for n, item in enumerate(self.items):
            ref = self.refs.get(item.external_id)
            if ref is not None:
                if ref.payload_hash == item.payload_hash:
                    self.results[n] = ApplyResult(
                        Outcome.UNCHANGED, ref.object_id, ref.customer_id, "xref"
                    )
                    continue
                if ref.source_updated_at and item.source_updated_at < ref.source_updated_at:
                    self.results[n] = ApplyResult(
                        Outcome.STALE, ref.object_id, ref.customer_id, "xref"
                    )
                    continue
            pending.append(n)
        return pending

    def resolve_customers(self) -> None:
        pending = self._screen_refs()
        existing_ids = {
            self.refs[self.items[n].external_id].object_id
            for n in pending
            if self.items[n].external_id in self.refs
        }
        unresolved = [n for n in pending if self.items[n].external_id not in self.refs]
        kinds = {n: customer_kind(self.items[n].values) for n in unresolved}
        keys = {n: identity_keys(self.items[n].values, kinds[n]) for n in unresolved}
        self.identity = {n: (kinds[n], keys[n]) for n in unresolved}
        # The customers' status comes from the primary key lookup below rather than a join,
        # which PostgreSQL may plan as a loop over every customer.
        found = rows_matching(
            IdentityKey,
            ("key_type", "value"),
            {key for ks in keys.values() for key in ks},
            ("key_type", "value", "customer_kind", "customer_id"),
        )
        wanted = existing_ids | {customer_id for *_, customer_id in found}
        loaded = Customer.objects.in_bulk(wanted) if wanted else {}
        owners: dict[tuple[str, str, str], set[int]] = defaultdict(set)
        for key_type, value, kind, customer_id in found:
            customer = loaded.get(customer_id)
            if customer is not None and customer.status == Customer.Status.ACTIVE:
                owners[(key_type, value, kind)].add(customer_id)
        candidate_ids = {c for ids in owners.values() for c in ids}
        # Cannot-link evidence: a candidate with a different tax or national id is another
        # customer, whatever e-mail or phone they share.
        hard_ids: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        if candidate_ids:
            for customer_id, key_type, value in IdentityKey.objects.filter(
                customer_id__in=candidate_ids, key_type__in=("tax_id", "national_id")
            ).values_list("customer_id", "key_type", "value"):
                hard_ids[customer_id][key_type].add(value)
        existing_ids |= candidate_ids
        loaded = {pk: c for pk, c in loaded.items() if pk in existing_ids}
        # Probabilistic stage, for records no cross-reference or key points at one customer
        # (none, or several: an e-mail two unmerged duplicates share must not make a third
        # copy): one batch against indexed candidates (once a model has been trained). The
        # deterministic rules still come first below; the model decides where they can't.
        proposals = self._proposals(
            [
                n
                for n in unresolved
                if not any(len(owners.get(k, ())) == 1 for k in _owner_keys(keys[n], kinds[n]))
            ],
            kinds,
        )
        extra = {p.link_to for p in proposals.values() if p.link_to} - set(loaded)
        if extra:
            loaded |= Customer.objects.filter(status=Customer.Status.ACTIVE).in_bulk(extra)

        # Pending new customers are keyed by negative numbers so that later rows of the
        # same batch can link to them before they have a primary key.
        batch_owner: dict[tuple[str, str, str], int] = {}
        pending_new: dict[int, Customer] = {}
        for n in pending:
            item = self.items[n]
            ref = self.refs.get(item.external_id)
            if ref is not None:
                self.targets[n] = loaded[ref.object_id]
                self.matched_by[n] = "xref"
                continue
            kind = kinds[n]
            mine = {t: v for t, v in keys[n] if t in ("tax_id", "national_id")}
            chosen: int | None = None
            for key_type in KEY_PRIORITY:
                found: set[int] = set()
                for t, value in keys[n]:
                    if t != key_type:
                        continue
                    found |= owners.get((t, value, kind), set())
                    if (t, value, kind) in batch_owner:
                        found.add(batch_owner[(t, value, kind)])
                found = {c for c in found if not _conflicts(mine, hard_ids.get(c, {}))}
                if len(found) == 1:
                    chosen = found.pop()
                    self.matched_by[n] = key_type
                    break
            proposal = proposals.get(n)
            if chosen is None and proposal and proposal.link_to in loaded:
                chosen = proposal.link_to
                self.matched_by[n] = "probabilistic"
                self.match_info[n] = _match_detail(proposal.score)
            if chosen is None:
                if not _display_name(item.values):
                    self._fail(n, "a new customer needs a name, first/last name or e-mail")
                    continue
                customer = _new(Customer, kind=kind, status=Customer.Status.ACTIVE)
                chosen = -len(pending_new) - 1
                pending_new[chosen] = customer
                self.new_objects.append(customer)
                self.matched_by[n] = "new"
                if proposal and proposal.review:
                    self.review_after[n] = proposal.review
            self.targets[n] = pending_new[chosen] if chosen < 0 else loaded[chosen]
            for t, value in keys[n]:
                batch_owner.setdefault((t, value, kind), chosen)
                if t in ("tax_id", "national_id"):
                    hard_ids[chosen][t].add(value)
        # Provenance of the customers chosen, not of every key holder and candidate.
        self._load_provenance({id(t): t for t in self.targets if t is not None and t.pk}.values())

    def _proposals(self, indices: list[int], kinds: dict[int, str]) -> dict[int, Any]:
        from .resolve import matcher_current, proposals_for

        # With a model, the batch also keeps its customers' blocking keys current (written
        # after the batch), whether or not any record needs the model itself.
        matcher = matcher_current()
        self.model_active = matcher[0] is not None
        if not indices or not self.model_active:
            return {}
        records = [self.items[n].values | {"kind": kinds[n]} for n in indices]
        return dict(zip(indices, proposals_for(records, matcher=matcher), strict=True))

    def resolve_related(self) -> None:
        pending = self._screen_refs()
        parent_xids = {self.items[n].refs.get("customer", "") for n in pending} - {""}
        parents = dict(
            ExternalRef.objects.filter(
                system=self.system, entity=Entity.CUSTOMER, external_id__in=parent_xids
            )
            .values_list("external_id", "customer_id")
            .order_by()
        )
        invoice_xids = {self.items[n].refs.get("invoice", "") for n in pending} - {""}
        invoices = (
            dict(
                ExternalRef.objects.filter(
                    system=self.system, entity=Entity.INVOICE, external_id__in=invoice_xids
                )
                .values_list("external_id", "object_id")
                .order_by()
            )
            if invoice_xids
            else {}
        )
        object_ids = [
            self.refs[self.items[n].external_id].object_id
            for n in pending
            if self.items[n].external_id in self.refs
        ]
        loaded = self.model.objects.in_bulk(object_ids) if object_ids else {}
        self._load_provenance(loaded.values())
        required = REQUIRED_FIELDS.get(self.entity, ())
        for n in pending:
            item = self.items[n]
            missing = [r for r in REQUIRED_REFS[self.entity] if not item.refs.get(r)]
            if missing:
                self._fail(n, f"missing reference to the {', '.join(missing)}")
                continue
            parent = parents.get(item.refs["customer"])
            if parent is None:
                self._fail(
                    n,
                    f"customer {item.refs['customer']!r} is not known in {self.system.name}; "
                    "import that customer, then replay this record",
                )
                continue
            invoice_xid = item.refs.get("invoice")
            if invoice_xid and invoice_xid not in invoices:
                self._fail(
                    n,
                    f"invoice {invoice_xid!r} is not known in {self.system.name}; "
                    "import that invoice, then replay this record",
                )
                continue
            self.parent_ids[n] = parent
            ref = self.refs.get(item.external_id)
            if ref is not None and ref.object_id in loaded:
                obj = loaded[ref.object_id]
                self.matched_by[n] = "xref"
            else:
                absent = [f for f in required if f not in item.values]
                if absent:
                    self._fail(n, f"required field missing: {', '.join(absent)}")
                    continue
                obj = _new(self.model, customer_id=parent)
                self.new_objects.append(obj)
                self.matched_by[n] = "new"
            if invoice_xid and obj.invoice_id != invoices[invoice_xid]:
                obj.invoice_id = invoices[invoice_xid]
                self.changed_fields[id(obj)].add("invoice")
            self.targets[n] = obj

    def _fail(self, n: int, message: str) -> None:
        self.results[n] = ApplyResult(Outcome.FAILED, error=message)

    def _load_provenance(self, objects: Iterable[models.Model]) -> None:
        by_pk = {obj.pk: obj for obj in objects}
        if not by_pk:
            return
        # The systems behind the values come in the same query (the ownership rules read
        # their kind and trust rank): one round trip, not two.
        rows = FieldProvenance.objects.filter(
            entity=self.entity, object_id__in=list(by_pk)
        ).values_list(
            "object_id",
            "field",
            "value",
            "source_updated_at",
            *(f"system__{name}" for name in _SYSTEM_COLUMNS),
        )
        systems = {self.system.pk: self.system}
        for object_id, name, value, source_updated_at, *system in rows.order_by():
            if system[0] not in systems:
                systems[system[0]] = _new(
                    SourceSystem, **dict(zip(_SYSTEM_COLUMNS, system, strict=True))
                )
                systems[system[0]]._state.adding = False
            key = (id(by_pk[object_id]), name)
            self.provenance[key] = _Provenance(value, systems[system[0]], source_updated_at)

    # -- decisions ----------------------------------------------------------------------

    def decide(self) -> None:
        matrix = Matrix.load(self.entity)
        specs = SCHEMA[self.entity]
        seen: set[int] = set()
        for n, item in enumerate(self.items):
            obj = self.targets[n]
            if self.results[n] is not None or obj is None:
                continue
            result = ApplyResult(
                Outcome.UNCHANGED, matched_by=self.matched_by[n], match=self.match_info.get(n, {})
            )
            is_new = obj.pk is None and self.matched_by[n] == "new"
            values = dict(item.values)
            if self.entity == Entity.CUSTOMER:
                _fill_customer_defaults(values, obj)
            if self.parent_ids[n] is not None and obj.customer_id != self.parent_ids[n]:
                obj.customer_id = self.parent_ids[n]
                self.changed_fields[id(obj)].add("customer")
                result.applied.append("customer")
            for name, value in values.items():
                spec = specs.get(name)
                if spec is not None and spec.input_only:
                    continue  # steers identity resolution only (rules.identity_keys)
                text = as_text(value)
                key = (id(obj), name)
                prov = self.provenance.get(key)
                virtual = spec is not None and spec.virtual
                current_value = (
                    prov.value
                    if virtual and prov
                    else as_text(None if virtual else getattr(obj, name))
                )
                decision = matrix.decide(
                    name,
                    system=self.system,
                    source_updated_at=item.source_updated_at,
                    value=text,
                    current=Current(
                        value=current_value,
                        system=prov.system if prov else None,
                        source_updated_at=prov.source_updated_at if prov else None,
                    ),
                )
                if decision == Decision.STALE:
                    result.stale.append(name)
                    continue
                if decision == Decision.REJECTED:
                    result.rejected.append(name)
                    continue
                if decision == Decision.SAME and prov is not None:
                    continue
                if decision == Decision.APPLY:
                    result.applied.append(name)
                    if virtual:
                        self.replaced_lines[id(obj)] = (obj, value)
                    else:
                        setattr(obj, name, value)
                        self.changed_fields[id(obj)].add(name)
                new_prov = _Provenance(
                    text, self.system, item.source_updated_at, item.record_id, target=obj
                )
                self.provenance[key] = new_prov
                self.touched_provenance[key] = new_prov
            if is_new and id(obj) not in seen:
                result.outcome = Outcome.CREATED
            elif result.applied or self.matched_by[n] != "xref":
                # Changed values, or a new source record linked to an existing customer.
                result.outcome = Outcome.UPDATED
            elif result.stale:
                result.outcome = Outcome.STALE
            seen.add(id(obj))
            self.results[n] = result

    # -- writes -------------------------------------------------------------------------

    def write(self) -> None:
        self._insert_new_objects()
        new_ids = {id(o) for o in self.new_objects}
        changed = [
            self.targets[n]
            for n in range(len(self.items))
            if self.targets[n] is not None and id(self.targets[n]) not in new_ids
        ]
        changed = list({id(o): o for o in changed if self.changed_fields.get(id(o))}.values())
        if changed:
            names = {f for o in changed for f in self.changed_fields[id(o)]}
            for obj in changed:
                obj.updated_at = self.now
            bulk_update_fast(changed, [*sorted(names), "updated_at"])
        self._write_lines()
        # A new object has no provenance yet: its rows are plain inserts (COPY on
        # PostgreSQL); only rows of objects that existed can replace a stored row.
        for_new, for_existing = [], []
        for (target, name), prov in self.touched_provenance.items():
            row = (
                self.entity,
                prov.target.pk,
                name,
                prov.value,
                prov.system.pk,
                prov.source_updated_at,
                prov.record_id,
                self.now,
            )
            (for_new if target in new_ids else for_existing).append(row)
        bulk_insert(FieldProvenance, PROVENANCE_FIELDS, for_new)
        bulk_upsert(
            FieldProvenance,
            PROVENANCE_FIELDS,
            for_existing,
            unique_fields=["entity", "object_id", "field"],
            update_fields=["value", "system", "source_updated_at", "record_id", "applied_at"],
        )
        self._write_refs_and_keys(new_ids)
        if self.model_active:
            self._write_matching()

    def _write_matching(self) -> None:
        """Once a model is trained: blocking keys of the customers this batch touched, and
        the pairs between the thresholds queued for a steward with their evidence."""
        from .resolve import blocking_keys_write, review_candidates_write

        touched = {id(o): o for o in self.targets if o is not None and o.pk}
        blocking_keys_write(customers=touched.values())
        review_candidates_write(
            pairs=[
                (self.targets[n].pk, candidate_id, score)
                for n, pairs in self.review_after.items()
                if self.targets[n] is not None and self.targets[n].pk
                for candidate_id, score in pairs
            ],
            source="ingest",
        )

    def _insert_new_objects(self) -> None:
        """Insert the new objects in one statement and give each its primary key."""
        if not self.new_objects:
            return
        meta = self.model._meta
        fields = [f for f in meta.concrete_fields if not f.primary_key]
        for obj in self.new_objects:
            obj.created_at = obj.updated_at = self.now
        values = attrgetter(*(f.attname for f in fields))
        keys = bulk_insert(
            self.model,
            [f.name for f in fields],
            [values(obj) for obj in self.new_objects],
            returning=[meta.pk.name],
        )
        alias = router.db_for_write(self.model)
        for obj, (pk,) in zip(self.new_objects, keys, strict=True):
            obj.pk = pk
            obj._state.adding, obj._state.db = False, alias

    def _write_lines(self) -> None:
        if not self.replaced_lines:
            return
        OrderLine.objects.filter(
            order_id__in=[obj.pk for obj, _ in self.replaced_lines.values()]
        ).delete()
        OrderLine.objects.bulk_create(
            OrderLine(
                order=obj,
                position=pos,
                sku=line["sku"],
                description=line["description"],
                quantity=Decimal(line["quantity"]),
                unit_price=Decimal(line["unit_price"]),
            )
            for obj, lines in self.replaced_lines.values()
            for pos, line in enumerate(lines, start=1)
        )

    def _write_refs_and_keys(self, new_ids: set[int]) -> None:
        new_refs, updated_refs, new_keys, other_keys = [], [], {}, {}
        for n, item in enumerate(self.items):
            result, obj = self.results[n], self.targets[n]
            if result is None or obj is None or result.outcome == Outcome.FAILED:
                continue
            result.object_id = obj.pk
            result.customer_id = obj.pk if self.entity == Entity.CUSTOMER else obj.customer_id
            if result.outcome == Outcome.STALE:
                continue
            ref = self.refs.get(item.external_id)
            if ref is None:
                new_refs.append(
                    (
                        self.system.pk,
                        self.entity,
                        item.external_id,
                        obj.pk,
                        result.customer_id,
                        item.payload_hash,
                        item.source_updated_at,
                        self.now,
                        self.now,
                    )
                )
            else:
                ref.payload_hash = item.payload_hash
                ref.source_updated_at = item.source_updated_at
                ref.customer_id = result.customer_id
                ref.updated_at = self.now
                updated_refs.append(ref)
            if self.entity == Entity.CUSTOMER:
                kind, pairs = self.identity.get(n, ("", []))
                if kind != obj.kind:  # found by its xref: no keys computed yet
                    pairs = identity_keys(item.values, obj.kind)
                # Keys of new customers cannot exist yet; an existing one may have them.
                target = new_keys if id(obj) in new_ids else other_keys
                for key_type, value in pairs:
                    # The first system to bring a key to a customer stays its source.
                    target.setdefault(
                        (key_type, value, obj.pk),
                        (obj.pk, key_type, value, obj.kind, self.system.pk, self.now),
                    )
        bulk_insert(ExternalRef, REF_FIELDS, new_refs)
        if updated_refs:
            bulk_update_fast(
                updated_refs, ["payload_hash", "source_updated_at", "customer", "updated_at"]
            )
        bulk_insert(IdentityKey, KEY_FIELDS, new_keys.values())
        bulk_insert(IdentityKey, KEY_FIELDS, other_keys.values(), ignore_conflicts=True)


_makers: dict[type[models.Model], Any] = {}
# SourceSystem's columns by attribute name, its primary key first.
_SYSTEM_COLUMNS = [f.attname for f in SourceSystem._meta.concrete_fields]


def _new(model: type[models.Model], **values: Any) -> models.Model:
    """A new instance, built the fast way: a page creates up to a thousand."""
    if model not in _makers:
        _makers[model] = instance_maker(model)
    return _makers[model](**values)


def _conflicts(mine: dict[str, str], theirs: dict[str, set[str]]) -> bool:
    return any(value and theirs.get(t) and value not in theirs[t] for t, value in mine.items())


def _owner_keys(keys: list[tuple[str, str]], kind: str) -> list[tuple[str, str, str]]:
    return [(key_type, value, kind) for key_type, value in keys]


def _match_detail(score: Any) -> dict[str, Any]:
    from .resolve import finite_evidence

    return {
        "probability": round(score.probability, 6),
        "match_weight": round(score.match_weight, 3),
        "evidence": finite_evidence(score.evidence),
    }


def _display_name(values: dict[str, Any]) -> str:
    full = f"{values.get('first_name', '')} {values.get('last_name', '')}".strip()
    return values.get("name") or full or values.get("legal_name") or values.get("email") or ""


def _fill_customer_defaults(values: dict[str, Any], customer: Customer) -> None:
    """A display name from the names or e-mail when the source has no single name field."""
    if "name" not in values and not customer.name:
        name = _display_name(values)
        if name:
            values["name"] = name
