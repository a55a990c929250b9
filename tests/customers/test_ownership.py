"""The field-ownership matrix decides each incoming value (invariants 3 and 4)."""

import datetime as dt

import pytest

from customers.models import ConflictRule, FieldOwnership, SourceSystem
from customers.services.ownership import Current, Decision, Matrix

T1 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
T2 = dt.datetime(2026, 1, 2, tzinfo=dt.UTC)

CRM = SourceSystem(pk=1, name="crm", kind="crm", trust_rank=70)
ERP = SourceSystem(pk=2, name="erp", kind="billing", trust_rank=80)
DESK = SourceSystem(pk=3, name="desk", kind="helpdesk", trust_rank=50)


def matrix(rule: str, owner_kind: str = "crm") -> Matrix:
    return Matrix(
        "customer",
        [FieldOwnership(entity="customer", field="*", owner_kind=owner_kind, conflict_rule=rule)],
    )


def decide(m: Matrix, system, at, value, current: Current) -> Decision:
    return m.decide("name", system=system, source_updated_at=at, value=value, current=current)


def test_first_value_is_applied_whoever_sends_it():
    m = matrix(ConflictRule.SYSTEM_WINS)
    assert decide(m, DESK, T1, "Acme", Current("", None, None)) == Decision.APPLY


@pytest.mark.parametrize(
    ("incoming", "at", "holder", "held_at", "expected"),
    [
        (CRM, T2, ERP, T1, Decision.APPLY),  # owner replaces a non-owner
        (CRM, T1, ERP, T2, Decision.APPLY),  # … even with an older value
        (ERP, T2, CRM, T1, Decision.REJECTED),  # non-owner never replaces the owner
        (CRM, T1, CRM, T2, Decision.STALE),  # owner's own older update is stale
        (ERP, T2, DESK, T1, Decision.APPLY),  # between non-owners the newest wins
        (ERP, T1, DESK, T2, Decision.STALE),
    ],
)
def test_system_of_record_wins(incoming, at, holder, held_at, expected):
    m = matrix(ConflictRule.SYSTEM_WINS)
    assert decide(m, incoming, at, "new", Current("old", holder, held_at)) == expected


def test_newest_wins_and_same_value_is_not_stale():
    m = matrix(ConflictRule.NEWEST_WINS)
    assert decide(m, DESK, T2, "new", Current("old", CRM, T1)) == Decision.APPLY
    assert decide(m, DESK, T1, "new", Current("old", CRM, T2)) == Decision.STALE
    assert decide(m, DESK, T1, "old", Current("old", CRM, T2)) == Decision.SAME
    assert decide(m, DESK, T2, "old", Current("old", CRM, T1)) == Decision.CONFIRM


def test_most_trusted_source():
    m = matrix(ConflictRule.MOST_TRUSTED)
    assert decide(m, ERP, T1, "new", Current("old", CRM, T2)) == Decision.APPLY
    assert decide(m, DESK, T2, "new", Current("old", CRM, T1)) == Decision.REJECTED


def test_specific_system_of_record_overrides_kind():
    cell = FieldOwnership(entity="customer", field="name", owner_system=ERP, owner_kind="crm")
    m = Matrix("customer", [cell])
    assert decide(m, CRM, T2, "new", Current("old", ERP, T1)) == Decision.REJECTED


@pytest.mark.django_db
def test_default_matrix_is_seeded():
    cells = {(c.entity, c.field): c for c in FieldOwnership.objects.all()}
    assert cells[("customer", "*")].owner_kind == "crm"
    assert cells[("invoice", "*")].owner_kind == "billing"
    assert cells[("payment", "*")].owner_kind == "billing"
    assert cells[("ticket", "*")].conflict_rule == "newest_wins"
    assert cells[("ticket", "*")].direction == "both"
