"""The steward's writes that have no home in merge.py or candidates.py: "not the same"
for a pair nobody queued, edits of the field-ownership matrix, and the matcher's
thresholds per kind of customer.

Matrix and threshold edits go through ``Model.save()`` on purpose: django-auditlog
(customers/audit.py) records every change from its signals, which ``QuerySet.update()``
bypasses.
"""

from __future__ import annotations

import contextvars
import math

from auditlog.context import auditlog_value, set_actor
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from customers.errors import ApplicationError
from customers.models import (
    ConflictRule,
    Customer,
    Direction,
    Entity,
    FieldOwnership,
    MatchCandidate,
    MatchSettings,
    NotDuplicate,
    SourceSystem,
    SystemKind,
    ordered_pair,
)
from customers.schema import SCHEMA

from .merge import OPEN_CANDIDATE_STATUSES


def _user_or_none(user: AbstractBaseUser | None) -> AbstractBaseUser | None:
    return user if user is not None and user.is_authenticated else None


@transaction.atomic
def pair_reject(
    *, a_id: int, b_id: int, user: AbstractBaseUser | None, reason: str = ""
) -> NotDuplicate:
    """Record that customers ``a_id`` and ``b_id`` are not the same, so the matcher never
    suggests them again (invariant 6). Idempotent: a pair already recorded is returned as
    it is.

    An open candidate for the pair, if the matcher queued one meanwhile, is decided
    "not the same" too (locked first, the lock order of ``candidate_decide``). Raises
    ApplicationError for one customer twice or a customer that does not exist.
    """
    if a_id == b_id:
        raise ApplicationError("A customer is always the same as itself.")
    low, high = ordered_pair(a_id, b_id)
    candidate = (
        MatchCandidate.objects.select_for_update()
        .filter(low_id=low, high_id=high, status__in=OPEN_CANDIDATE_STATUSES)
        .first()
    )
    found = set(Customer.objects.filter(pk__in=[low, high]).values_list("pk", flat=True))
    missing = [pk for pk in (low, high) if pk not in found]
    if missing:
        raise ApplicationError(f"Customer #{missing[0]} does not exist.")
    decided_by = _user_or_none(user)
    record, _ = NotDuplicate.objects.get_or_create(
        low_id=low,
        high_id=high,
        defaults={"decided_by": decided_by, "reason": reason[:255] or "rejected by a steward"},
    )
    if candidate is not None:
        candidate.status = MatchCandidate.Status.REJECTED
        candidate.decided_by = decided_by
        candidate.decided_at = timezone.now()
        candidate.save(update_fields=["status", "decided_by", "decided_at"])
    return record


def _validated_cell(
    *, owner_kind: str, owner_system_id: int | None, direction: str, conflict_rule: str
) -> tuple[str, SourceSystem | None]:
    if direction not in Direction.values:
        raise ApplicationError(f"Unknown direction {direction!r}.")
    if conflict_rule not in ConflictRule.values:
        raise ApplicationError(f"Unknown conflict rule {conflict_rule!r}.")
    if owner_kind and owner_kind not in SystemKind.values:
        raise ApplicationError(f"Unknown kind of system {owner_kind!r}.")
    system = None
    if owner_system_id is not None:
        system = SourceSystem.objects.filter(pk=owner_system_id).first()
        if system is None:
            raise ApplicationError(f"Source system #{owner_system_id} does not exist.")
        # One system of record: a specific system replaces the kind.
        owner_kind = ""
    return owner_kind, system


@transaction.atomic
def field_ownership_update(
    *,
    cell_id: int,
    user: AbstractBaseUser | None,
    owner_kind: str,
    owner_system_id: int | None,
    direction: str,
    conflict_rule: str,
) -> FieldOwnership:
    """Change one cell of the matrix: its system of record (a specific system, or any
    system of a kind), direction and conflict rule. Saved with ``save()`` under a row lock,
    so auditlog records who changed what; ``updated_by`` is set to ``user``. The new rule
    applies to values arriving from now on; nothing already applied is re-evaluated.
    """
    cell = FieldOwnership.objects.select_for_update().filter(pk=cell_id).first()
    if cell is None:
        raise ApplicationError(f"Ownership cell #{cell_id} does not exist.")
    owner_kind, system = _validated_cell(
        owner_kind=owner_kind,
        owner_system_id=owner_system_id,
        direction=direction,
        conflict_rule=conflict_rule,
    )
    cell.owner_kind = owner_kind
    cell.owner_system = system
    cell.direction = direction
    cell.conflict_rule = conflict_rule
    cell.updated_by = _user_or_none(user)
    cell.save()
    return cell


@transaction.atomic
def field_ownership_create(
    *,
    entity: str,
    field: str,
    user: AbstractBaseUser | None,
    owner_kind: str,
    owner_system_id: int | None,
    direction: str,
    conflict_rule: str,
) -> FieldOwnership:
    """Give one canonical field (or ``*``, the entity's default) a row of its own in the
    matrix; until now it followed the entity's ``*`` row. Raises ApplicationError for a
    field the schema does not know or a row that already exists.
    """
    if entity not in Entity.values:
        raise ApplicationError(f"Unknown entity {entity!r}.")
    if field != "*" and field not in SCHEMA.get(entity, {}):
        raise ApplicationError(f"{entity} has no canonical field {field!r}.")
    if field != "*" and SCHEMA[entity][field].input_only:
        raise ApplicationError(
            f"{field!r} only steers identity resolution; it is never stored, so no system owns it."
        )
    owner_kind, system = _validated_cell(
        owner_kind=owner_kind,
        owner_system_id=owner_system_id,
        direction=direction,
        conflict_rule=conflict_rule,
    )
    cell = FieldOwnership(
        entity=entity,
        field=field,
        owner_kind=owner_kind,
        owner_system=system,
        direction=direction,
        conflict_rule=conflict_rule,
        updated_by=_user_or_none(user),
    )
    try:
        with transaction.atomic():
            cell.save()
    except IntegrityError:
        raise ApplicationError(f"{entity}.{field} already has a row in the matrix.") from None
    return cell


# --- the matcher's thresholds ------------------------------------------------------------

MIN_KEY_GUARD = 2  # a "shared" key is held by two customers at least
MAX_KEY_GUARD = 100_000  # beyond this the guard guards nothing (and the column is an int)


def _save_audited(row: MatchSettings, user: AbstractBaseUser | None) -> None:
    """``row.save()`` with auditlog naming ``user`` as the actor, in a request or not (a
    command, a shell, a task).

    ``set_actor`` runs in a copy of the context: auditlog never resets its context
    variable, so nesting it inside AuditlogMiddleware's would leave the request's context
    replaced (and its later entries without an actor).
    """
    if user is None:
        row.save()
        return
    current = auditlog_value.get(None) or {}

    def save() -> None:
        with set_actor(user, remote_addr=current.get("remote_addr")):
            row.save()

    contextvars.copy_context().run(save)


def match_settings_validate(*, upper: float, lower: float, max_key_customers: int) -> None:
    """Raise ApplicationError unless 0 < lower < upper <= 1 and the guard is at least 2."""
    for name, value in (("upper", upper), ("lower", lower)):
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise ApplicationError(f"The {name} threshold must be a number between 0 and 1.")
    if lower <= 0:
        raise ApplicationError("The lower threshold must be above 0.")
    if upper > 1:
        raise ApplicationError("The upper threshold cannot be above 1 (a probability).")
    if not lower < upper:
        raise ApplicationError(
            "The lower threshold must be below the upper threshold: pairs between them go "
            "to the review queue."
        )
    if isinstance(max_key_customers, bool) or not isinstance(max_key_customers, int):
        raise ApplicationError("The shared-key guard must be a whole number.")
    if not MIN_KEY_GUARD <= max_key_customers <= MAX_KEY_GUARD:
        raise ApplicationError(
            f"The shared-key guard must be between {MIN_KEY_GUARD} and {MAX_KEY_GUARD:,}: "
            "the number of customers a key may be shared by before it stops linking."
        )


@transaction.atomic
def match_settings_update(
    *,
    kind: str,
    upper: float,
    lower: float,
    max_key_customers: int,
    user: AbstractBaseUser | None,
) -> MatchSettings:
    """Set the matcher's thresholds for one kind of customer: auto-link at or above
    ``upper``, review queue from ``lower`` up to ``upper``, a new customer below; a key
    shared by more than ``max_key_customers`` customers stops linking.

    Validated (0 < lower < upper <= 1, guard >= 2, else ApplicationError), saved with
    ``save()`` under a row lock so auditlog records who changed what; ``updated_by`` is
    ``user``. Nothing is written (and nothing audited) when the values do not change. The
    new thresholds apply to records scored from now on (``resolve.thresholds_current``);
    nothing already linked or queued is re-decided.
    """
    if kind not in Customer.Kind.values:
        raise ApplicationError(f"Unknown kind of customer {kind!r}.")
    match_settings_validate(upper=upper, lower=lower, max_key_customers=max_key_customers)
    upper, lower = float(upper), float(lower)
    row = MatchSettings.objects.select_for_update().filter(kind=kind).first()
    if row is None:
        # The data migration creates one row per kind; recreate one removed by hand.
        row = MatchSettings(kind=kind)
    elif (row.upper, row.lower, row.max_key_customers) == (upper, lower, max_key_customers):
        return row
    row.upper = upper
    row.lower = lower
    row.max_key_customers = max_key_customers
    row.updated_by = _user_or_none(user)
    _save_audited(row, row.updated_by)
    return row
