"""The duplicate review queue: match candidates, the steward's decisions on them, and the
"not the same" memory that keeps a rejected pair from ever coming back (invariant 6)."""

from __future__ import annotations

import logging
from typing import Any, Literal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from customers.errors import ApplicationError
from customers.models import Customer, MatchCandidate, NotDuplicate, ordered_pair

from .merge import OPEN_CANDIDATE_STATUSES, customer_merge

logger = logging.getLogger(__name__)

Decision = Literal["merge", "reject", "defer"]


def is_not_duplicate(a_id: int, b_id: int) -> bool:
    """True when a steward decided (or an unmerge recorded) that a and b are different."""
    low, high = ordered_pair(a_id, b_id)
    return NotDuplicate.objects.filter(low_id=low, high_id=high).exists()


@transaction.atomic
def candidate_upsert(
    *,
    a_id: int,
    b_id: int,
    probability: float,
    match_weight: float,
    evidence: list[dict[str, Any]],
    source: str,
    rule: str = "",
) -> MatchCandidate | None:
    """Queue the pair (a, b) for review, or refresh the score of its pending candidate.

    Returns None, writing nothing, for a pair that may not be suggested: the same customer
    twice, a pair marked as not the same, or a customer that is not active (merged or
    erased). A candidate the steward already decided (or deferred) is returned unchanged;
    a superseded one is reopened when both customers are active again.
    """
    if a_id == b_id:
        return None
    low, high = ordered_pair(a_id, b_id)
    if is_not_duplicate(low, high):
        return None
    active = Customer.objects.filter(pk__in=[low, high], status=Customer.Status.ACTIVE).count()
    if active != 2:
        return None
    score = {
        "probability": probability,
        "match_weight": match_weight,
        "evidence": evidence,
        "source": source,
        "rule": rule,
    }
    candidate, created = MatchCandidate.objects.get_or_create(
        low_id=low, high_id=high, defaults=score
    )
    if created:
        return candidate
    if candidate.status == MatchCandidate.Status.SUPERSEDED:
        score.update(status=MatchCandidate.Status.PENDING, decided_by=None, decided_at=None)
    elif candidate.status != MatchCandidate.Status.PENDING:
        return candidate
    for name, value in score.items():
        setattr(candidate, name, value)
    candidate.save(update_fields=list(score))
    return candidate


@transaction.atomic
def candidate_decide(
    *,
    candidate_id: int,
    user: AbstractBaseUser | None,
    decision: Decision,
    field_choices: dict[str, str] | None = None,
    survivor_id: int | None = None,
    reason: str = "",
) -> MatchCandidate:
    """Apply a steward's decision to an open (pending or deferred) candidate.

    ``merge`` merges the pair: the survivor is ``survivor_id`` when given (one of the
    pair), else the older customer (the lower id). ``reject`` records the pair as not the
    same, so it is never suggested again. ``defer`` parks it. Raises ApplicationError for a
    missing or already decided candidate, and for whatever ``customer_merge`` refuses.
    """
    if decision not in ("merge", "reject", "defer"):
        raise ApplicationError(f"Unknown decision {decision!r}: use merge, reject or defer.")
    # Locked first: customer_merge takes the same lock before the customers' locks.
    candidate = MatchCandidate.objects.select_for_update().filter(pk=candidate_id).first()
    if candidate is None:
        raise ApplicationError(f"Match candidate #{candidate_id} does not exist.")
    if candidate.status not in OPEN_CANDIDATE_STATUSES:
        raise ApplicationError(
            f"Match candidate #{candidate_id} was already decided "
            f"({candidate.get_status_display().lower()})."
        )
    decided_by = user if user is not None and user.is_authenticated else None
    if decision == "merge":
        survivor = survivor_id if survivor_id is not None else candidate.low_id
        if survivor not in (candidate.low_id, candidate.high_id):
            raise ApplicationError(
                f"Customer #{survivor} is not one of match candidate #{candidate_id}'s pair."
            )
        merged = candidate.high_id if survivor == candidate.low_id else candidate.low_id
        customer_merge(
            survivor_id=survivor,
            merged_id=merged,
            user=user,
            field_choices=field_choices,
            candidate_id=candidate.pk,
        )
        candidate.refresh_from_db()
        return candidate
    if decision == "reject":
        NotDuplicate.objects.get_or_create(
            low_id=candidate.low_id,
            high_id=candidate.high_id,
            defaults={"decided_by": decided_by, "reason": reason or "rejected in review"},
        )
        candidate.status = MatchCandidate.Status.REJECTED
    else:
        candidate.status = MatchCandidate.Status.DEFERRED
    candidate.decided_by = decided_by
    candidate.decided_at = timezone.now()
    candidate.save(update_fields=["status", "decided_by", "decided_at"])
    return candidate


def candidates_bulk_approve(
    *, user: AbstractBaseUser | None, min_probability: float, limit: int = 500
) -> int:
    """Merge up to ``limit`` pending candidates scoring at least ``min_probability``,
    best first, and return how many were merged.

    Each merge is its own transaction, so one refusal (a candidate superseded or decided
    meanwhile, a customer merged by an earlier merge of the same batch, a not-the-same
    pair) skips that candidate and leaves the others merged.
    """
    ids = list(
        MatchCandidate.objects.filter(
            status=MatchCandidate.Status.PENDING, probability__gte=min_probability
        )
        .order_by("-probability", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    merged = 0
    for candidate_id in ids:
        try:
            candidate = candidate_decide(candidate_id=candidate_id, user=user, decision="merge")
        except ApplicationError as exc:
            logger.info("bulk approve skipped candidate %s: %s", candidate_id, exc.message)
            continue
        if candidate.status == MatchCandidate.Status.MERGED:
            merged += 1
    return merged
