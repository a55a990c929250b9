"""The review queue: candidates, steward decisions, and "not the same" kept forever."""

from __future__ import annotations

import pytest

from customers.errors import ApplicationError
from customers.models import Customer, MatchCandidate, NotDuplicate, SourceSystem
from customers.services.candidates import (
    candidate_decide,
    candidate_upsert,
    candidates_bulk_approve,
    is_not_duplicate,
)
from customers.services.merge import customer_merge, customer_unmerge
from tests.customers.test_merge import build_customer, rows_of

EVIDENCE = [{"field": "email", "level": "exact", "weight": 6.2, "a": "x@a.test", "b": "x@a.test"}]


def upsert(a: Customer, b: Customer, probability: float = 0.9, **extra) -> MatchCandidate | None:
    return candidate_upsert(
        a_id=a.pk,
        b_id=b.pk,
        probability=probability,
        match_weight=5.0,
        evidence=EVIDENCE,
        source="batch",
        **extra,
    )


@pytest.fixture
def steward(make_user):
    return make_user("steward")


@pytest.fixture
def customers(db) -> list[Customer]:
    systems = {
        "crm": SourceSystem.objects.create(name="crm", kind="crm", trust_rank=70),
        "erp": SourceSystem.objects.create(name="erp", kind="billing", trust_rank=80),
    }
    return [build_customer(systems, tag, rows=1) for tag in "abcdef"]


# --- candidate_upsert ----------------------------------------------------------------


def test_upsert_stores_the_ordered_pair_and_refreshes_a_pending_score(customers):
    a, b = customers[:2]
    created = upsert(b, a, probability=0.7, rule="email")
    assert (created.low_id, created.high_id) == (a.pk, b.pk)
    assert (created.status, created.rule, created.source) == ("pending", "email", "batch")
    assert created.evidence == EVIDENCE

    again = upsert(a, b, probability=0.95)
    assert again.pk == created.pk
    again.refresh_from_db()
    assert again.probability == 0.95
    assert MatchCandidate.objects.count() == 1


def test_upsert_refuses_pairs_that_may_not_be_suggested(customers, steward):
    a, b, c, d = customers[:4]
    assert upsert(a, a) is None
    NotDuplicate.objects.create(low=a, high=b, decided_by=steward)
    assert upsert(b, a) is None
    customer_merge(survivor_id=c.pk, merged_id=d.pk)
    assert upsert(a, d) is None  # d is merged
    Customer.objects.filter(pk=a.pk).update(status=Customer.Status.ERASED)
    assert upsert(a, c) is None
    assert MatchCandidate.objects.count() == 0


def test_upsert_leaves_decided_candidates_alone(customers, steward):
    a, b = customers[:2]
    candidate = upsert(a, b, probability=0.6)
    candidate_decide(candidate_id=candidate.pk, user=steward, decision="defer")
    again = upsert(a, b, probability=0.99)
    assert again.status == MatchCandidate.Status.DEFERRED
    assert MatchCandidate.objects.get().probability == 0.6


def test_is_not_duplicate_either_way_round(customers, steward):
    a, b, c = customers[:3]
    NotDuplicate.objects.create(low=a, high=b, decided_by=steward)
    assert is_not_duplicate(a.pk, b.pk)
    assert is_not_duplicate(b.pk, a.pk)
    assert not is_not_duplicate(a.pk, c.pk)


def test_an_unmerged_pair_is_never_suggested_again(customers, steward):
    a, b = customers[:2]
    candidate = upsert(a, b)
    candidate_decide(candidate_id=candidate.pk, user=steward, decision="merge")
    record = a.merges.get()
    customer_unmerge(merge_id=record.pk, user=steward)

    assert is_not_duplicate(a.pk, b.pk)
    assert upsert(a, b, probability=0.999) is None
    candidate.refresh_from_db()
    assert candidate.status == MatchCandidate.Status.REJECTED
    with pytest.raises(ApplicationError, match="not the same customer"):
        customer_merge(survivor_id=a.pk, merged_id=b.pk)


# --- candidate_decide ----------------------------------------------------------------


def test_decide_merge_keeps_the_older_customer_by_default(customers, steward):
    a, b = customers[:2]
    candidate = upsert(b, a)
    decided = candidate_decide(
        candidate_id=candidate.pk, user=steward, decision="merge", field_choices={"name": "merged"}
    )
    assert (decided.status, decided.decided_by) == (MatchCandidate.Status.MERGED, steward)
    b.refresh_from_db()
    assert (b.status, b.merged_into_id) == (Customer.Status.MERGED, a.pk)
    a.refresh_from_db()
    assert a.name == b.name
    record = a.merges.get()
    assert (record.candidate_id, record.merged_by, record.automatic) == (
        candidate.pk,
        steward,
        False,
    )
    assert rows_of(a.pk)["contacts"] == 2


def test_decide_merge_with_a_chosen_survivor(customers, steward):
    a, b, c = customers[:3]
    candidate = upsert(a, b)
    candidate_decide(candidate_id=candidate.pk, user=steward, decision="merge", survivor_id=b.pk)
    a.refresh_from_db()
    assert a.merged_into_id == b.pk

    other = upsert(b, c)
    with pytest.raises(ApplicationError, match="is not one of"):
        candidate_decide(candidate_id=other.pk, user=steward, decision="merge", survivor_id=a.pk)
    assert MatchCandidate.objects.get(pk=other.pk).status == MatchCandidate.Status.PENDING


def test_decide_reject_remembers_not_the_same(customers, steward):
    a, b = customers[:2]
    candidate = upsert(a, b)
    decided = candidate_decide(
        candidate_id=candidate.pk, user=steward, decision="reject", reason="sister companies"
    )
    assert (decided.status, decided.decided_by) == (MatchCandidate.Status.REJECTED, steward)
    assert decided.decided_at is not None
    note = NotDuplicate.objects.get(low=a, high=b)
    assert (note.decided_by, note.reason) == (steward, "sister companies")
    assert upsert(a, b) is None


def test_decide_defer_then_merge_later(customers, steward):
    a, b = customers[:2]
    candidate = upsert(a, b)
    deferred = candidate_decide(candidate_id=candidate.pk, user=steward, decision="defer")
    assert deferred.status == MatchCandidate.Status.DEFERRED
    merged = candidate_decide(candidate_id=candidate.pk, user=steward, decision="merge")
    assert merged.status == MatchCandidate.Status.MERGED


def test_decide_refuses_decided_missing_and_unknown(customers, steward):
    a, b = customers[:2]
    candidate = upsert(a, b)
    candidate_decide(candidate_id=candidate.pk, user=steward, decision="reject")
    with pytest.raises(ApplicationError, match="already decided"):
        candidate_decide(candidate_id=candidate.pk, user=steward, decision="merge")
    with pytest.raises(ApplicationError, match="does not exist"):
        candidate_decide(candidate_id=999_999, user=steward, decision="merge")
    with pytest.raises(ApplicationError, match="Unknown decision"):
        candidate_decide(candidate_id=candidate.pk, user=steward, decision="maybe")


def test_a_failed_merge_leaves_the_candidate_pending(customers, steward):
    a, b = customers[:2]
    candidate = upsert(a, b)
    with pytest.raises(ApplicationError, match="Not a customer field"):
        candidate_decide(
            candidate_id=candidate.pk, user=steward, decision="merge", field_choices={"x": "y"}
        )
    candidate.refresh_from_db()
    assert candidate.status == MatchCandidate.Status.PENDING


# --- candidates_bulk_approve ---------------------------------------------------------


def test_bulk_approve_merges_the_best_and_skips_what_became_invalid(customers, steward):
    a, b, c, d, e, f = customers
    ab = upsert(a, b, probability=0.99)
    bc = upsert(b, c, probability=0.98)  # after a <- b, this becomes a ~ c and merges too
    de = upsert(d, e, probability=0.97)
    low = upsert(e, f, probability=0.5)  # below the threshold
    # Marked not the same after it was queued: the merge refuses, the batch goes on.
    NotDuplicate.objects.create(low_id=de.low_id, high_id=de.high_id, decided_by=steward)

    merged = candidates_bulk_approve(user=steward, min_probability=0.9)

    assert merged == 2
    statuses = {
        c.pk: c.status for c in MatchCandidate.objects.filter(pk__in=[ab.pk, bc.pk, de.pk, low.pk])
    }
    assert statuses == {ab.pk: "merged", bc.pk: "merged", de.pk: "pending", low.pk: "pending"}
    assert set(
        Customer.objects.filter(status=Customer.Status.MERGED).values_list("pk", "merged_into")
    ) == {(b.pk, a.pk), (c.pk, a.pk)}
    assert rows_of(a.pk)["contacts"] == 3


def test_bulk_approve_respects_the_limit(customers, steward):
    a, b, c, d = customers[:4]
    upsert(a, b, probability=0.95)
    upsert(c, d, probability=0.99)
    assert candidates_bulk_approve(user=steward, min_probability=0.9, limit=1) == 1
    c_row = Customer.objects.get(pk=d.pk)
    assert c_row.merged_into_id == c.pk  # the best one first
    assert Customer.objects.get(pk=b.pk).status == Customer.Status.ACTIVE
