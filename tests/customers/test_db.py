"""The raw bulk SQL helpers, on whichever database the suite runs (SQLite or PostgreSQL)."""

import datetime as dt
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from customers.db import (
    analyze_new_tables,
    bulk_insert,
    bulk_update,
    bulk_update_fast,
    bulk_upsert,
    rows_matching,
)
from customers.models import Customer, FieldProvenance, IdentityKey, Invoice, SourceSystem

pytestmark = pytest.mark.django_db(transaction=False)

T1 = dt.datetime(2026, 1, 1, 10, 0, tzinfo=dt.UTC)
T2 = dt.datetime(2026, 1, 2, 10, 0, tzinfo=dt.UTC)
CUSTOMER_FIELDS = ["kind", "name", "email", "birth_date", "status", "created_at", "updated_at"]


def customer_row(name: str, **overrides) -> tuple:
    values = {
        "kind": "person",
        "name": name,
        "email": f"{name.lower()}@example.org",
        "birth_date": dt.date(1990, 5, 17),
        "status": "active",
        "created_at": T1,
        "updated_at": T1,
    } | overrides
    return tuple(values[f] for f in CUSTOMER_FIELDS)


@pytest.fixture
def crm():
    return SourceSystem.objects.create(name="crm", kind="crm")


def test_insert_writes_values_of_every_type():
    bulk_insert(Customer, CUSTOMER_FIELDS, [customer_row("Ann"), customer_row("Bob")])
    ann = Customer.objects.get(name="Ann")
    assert (ann.kind, ann.email, ann.birth_date, ann.created_at) == (
        "person",
        "ann@example.org",
        dt.date(1990, 5, 17),
        T1,
    )
    # Fields not named get their defaults, as Model() and bulk_create would give them.
    assert (ann.first_name, ann.lifecycle_stage, ann.merged_into_id) == ("", "", None)
    before = dt.datetime.now(dt.UTC)
    bulk_insert(Invoice, ["customer", "number", "amount"], [(ann.pk, "INV-1", Decimal("10.50"))])
    invoice = Invoice.objects.get()
    assert (invoice.customer, invoice.amount, invoice.amount_paid, invoice.status) == (
        ann,
        Decimal("10.50"),
        Decimal("0.00"),
        "issued",
    )
    assert invoice.created_at >= before and invoice.created_at == invoice.updated_at


def test_insert_returns_keys_in_the_order_of_the_rows():
    rows = [customer_row(f"C{i}") for i in range(300)]
    returned = bulk_insert(Customer, CUSTOMER_FIELDS, rows, returning=["id", "name"])
    assert [name for _, name in returned] == [f"C{i}" for i in range(300)]
    stored = dict(Customer.objects.values_list("id", "name"))
    assert dict(returned) == stored


def test_insert_can_skip_conflicts_and_says_which_rows_went_in(crm):
    customer = Customer.objects.create(name="Acme")
    fields = ["customer", "key_type", "value", "customer_kind", "system", "created_at"]
    bulk_insert(
        IdentityKey, fields, [(customer.pk, "email", "a@acme.com", "organization", crm.pk, T1)]
    )
    rows = [
        (customer.pk, "email", "a@acme.com", "organization", crm.pk, T2),  # already there
        (customer.pk, "domain", "acme.com", "organization", None, T2),
    ]
    returned = bulk_insert(
        IdentityKey, fields, rows, ignore_conflicts=True, returning=["id", "value"]
    )
    assert [value for _, value in returned] == ["acme.com"]
    keys = {k.value: k for k in IdentityKey.objects.all()}
    assert keys["a@acme.com"].created_at == T1  # the existing row is left alone
    assert keys["acme.com"].pk == returned[0][0] and keys["acme.com"].system is None
    with pytest.raises(IntegrityError), transaction.atomic():
        bulk_insert(IdentityKey, fields, rows[:1])


def test_upsert_inserts_new_rows_and_updates_existing_ones(crm):
    erp = SourceSystem.objects.create(name="erp", kind="billing")
    fields = ["entity", "object_id", "field", "value", "system", "source_updated_at", "record_id"]
    fields += ["applied_at"]
    bulk_upsert(
        FieldProvenance,
        fields,
        [("customer", 1, "name", "Acme", crm.pk, T1, 10, T1)],
        unique_fields=["entity", "object_id", "field"],
        update_fields=["value", "system", "source_updated_at", "record_id", "applied_at"],
    )
    bulk_upsert(
        FieldProvenance,
        fields,
        [
            ("customer", 1, "name", "ACME Inc", erp.pk, T2, 11, T2),
            ("customer", 1, "email", "a@acme.com", erp.pk, T2, None, T2),
        ],
        unique_fields=["entity", "object_id", "field"],
        update_fields=["value", "system", "source_updated_at", "record_id", "applied_at"],
    )
    rows = FieldProvenance.objects.order_by("field").values_list(
        "field", "value", "system__name", "source_updated_at", "record_id"
    )
    assert list(rows) == [
        ("email", "a@acme.com", "erp", T2, None),
        ("name", "ACME Inc", "erp", T2, 11),
    ]


def test_update_sets_the_named_fields_only():
    returned = bulk_insert(
        Customer, CUSTOMER_FIELDS, [customer_row("Ann"), customer_row("Bob")], returning=["id"]
    )
    (ann,), (bob,) = returned
    bulk_update(Customer, ["name", "updated_at"], [(ann, "Anna", T2), (bob, "Robert", T2)])
    assert dict(Customer.objects.values_list("name", "updated_at")) == {"Anna": T2, "Robert": T2}
    assert set(Customer.objects.values_list("email", flat=True)) == {
        "ann@example.org",
        "bob@example.org",
    }
    customers = list(Customer.objects.order_by("pk"))
    customers[0].phone, customers[1].phone = "+14155550100", "+4930123456"
    customers[0].email = "not-saved@example.org"
    bulk_update_fast(customers, ["phone"])
    assert list(Customer.objects.order_by("pk").values_list("email", "phone")) == [
        ("ann@example.org", "+14155550100"),
        ("bob@example.org", "+4930123456"),
    ]


def test_helpers_can_run_twice_in_one_transaction_and_roll_back(crm):
    fields = ["entity", "object_id", "field", "value", "system", "source_updated_at"]
    fields += ["applied_at"]
    upsert = {
        "unique_fields": ["entity", "object_id", "field"],
        "update_fields": ["value"],
    }
    with transaction.atomic():
        bulk_upsert(
            FieldProvenance, fields, [("customer", 1, "name", "A", crm.pk, T1, T1)], **upsert
        )
        bulk_upsert(
            FieldProvenance, fields, [("customer", 2, "name", "B", crm.pk, T1, T1)], **upsert
        )
    assert FieldProvenance.objects.count() == 2  # the second call saw none of the first's rows
    with pytest.raises(RuntimeError), transaction.atomic():
        bulk_upsert(
            FieldProvenance, fields, [("customer", 3, "name", "C", crm.pk, T1, T1)], **upsert
        )
        raise RuntimeError("roll back")
    bulk_upsert(FieldProvenance, fields, [("customer", 4, "name", "D", crm.pk, T1, T1)], **upsert)
    assert sorted(FieldProvenance.objects.values_list("value", flat=True)) == ["A", "B", "D"]


def test_statements_do_not_grow_with_rows():
    def statements(n: int, prefix: str) -> int:
        with CaptureQueriesContext(connection) as ctx:
            ids = bulk_insert(
                Customer,
                CUSTOMER_FIELDS,
                [customer_row(f"{prefix}{i}") for i in range(n)],
                returning=["id"],
            )
            bulk_update(Customer, ["name"], [(pk, f"{prefix}x{pk}") for (pk,) in ids])
        return len(ctx.captured_queries)

    assert bulk_insert(Customer, CUSTOMER_FIELDS, []) == []
    small, large = statements(5, "a"), statements(2000, "b")
    if connection.vendor == "postgresql":
        assert large == small  # each bulk statement is one COPY or one SQL statement
    else:
        # SQLite: one INSERT per parameter limit's worth of rows (every column is written).
        columns = len(Customer._meta.concrete_fields) - 1
        assert large <= small + 2000 // (connection.features.max_query_params // columns) + 1
    assert Customer.objects.count() == 2005


def test_rows_matching_finds_rows_by_composite_keys(crm):
    acme, globex = Customer.objects.create(name="Acme"), Customer.objects.create(name="Globex")
    fields = ["customer", "key_type", "value", "customer_kind", "system", "created_at"]
    bulk_insert(
        IdentityKey,
        fields,
        [
            (acme.pk, "email", "info@acme.com", "organization", crm.pk, T1),
            (acme.pk, "domain", "acme.com", "organization", crm.pk, T1),
            (globex.pk, "email", "info@acme.com", "organization", crm.pk, T1),  # shared
            (globex.pk, "phone", "+4930123456", "organization", crm.pk, T1),
        ],
    )
    found = rows_matching(
        IdentityKey,
        ("key_type", "value"),
        [
            ("email", "info@acme.com"),
            ("domain", "acme.com"),
            ("domain", "nope.org"),
            ("phone", "info@acme.com"),  # a value under another key type does not match
        ],
        ("key_type", "value", "customer_id"),
    )
    assert sorted(found) == sorted(
        [
            ("email", "info@acme.com", acme.pk),
            ("email", "info@acme.com", globex.pk),
            ("domain", "acme.com", acme.pk),
        ]
    )
    assert rows_matching(IdentityKey, ("key_type", "value"), [], ("customer_id",)) == []


def test_rows_matching_is_one_query_for_many_keys():
    keys = [("email", f"user{i}@example.org") for i in range(3000)]
    keys += [("phone", f"+1415555{i:04d}") for i in range(3000)]
    with CaptureQueriesContext(connection) as ctx:
        assert rows_matching(IdentityKey, ("key_type", "value"), keys, ("customer_id",)) == []
    assert len(ctx.captured_queries) == 1


def test_tables_with_rows_get_statistics_once(crm):
    Customer.objects.create(name="Acme")
    analyzed = analyze_new_tables(Customer, Invoice)
    if connection.vendor != "postgresql":
        assert analyzed == []
        return
    # Analyzed now unless an earlier test did it (ANALYZE outlives a test's rollback).
    assert set(analyzed) <= {"customers_customer", "customers_invoice"}
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stats WHERE tablename = 'customers_customer'")
        assert cursor.fetchone()[0] > 0
    assert "customers_customer" not in analyze_new_tables(Customer, Invoice)


def test_instance_maker_builds_what_the_model_would():
    from customers.db import instance_maker

    make = instance_maker(Customer)
    fast, slow = make(kind="person", name="Ann"), Customer(kind="person", name="Ann")
    fields = [f.attname for f in Customer._meta.concrete_fields]
    assert [getattr(fast, f) for f in fields] == [getattr(slow, f) for f in fields]
    assert fast._state.adding and fast._state.db is None and fast.pk is None
    # Callable defaults are called per instance, never shared between instances.
    made = instance_maker(FieldProvenance)
    first, second = made(field="name"), made(field="email")
    assert first.applied_at is not None and first.field == "name"
    from integrations.models import InboundRecord

    landing = instance_maker(InboundRecord)
    one, other = landing(), landing()
    assert one.detail == {} and one.detail is not other.detail  # default=dict
    assert second.field == "email"


def test_a_system_holding_data_cannot_be_deleted_without_database_constraints():
    """The high-volume tables point at their system without a database constraint
    (HIGH_VOLUME_SYSTEM_FK); Django's PROTECT still refuses to delete a system with data."""
    from django.db.models import ProtectedError

    from customers.models import ExternalRef

    crm = SourceSystem.objects.create(name="crm", kind="crm")
    customer = Customer.objects.create(kind="person", name="Ann")
    ExternalRef.objects.create(
        system=crm, entity="customer", external_id="C1", object_id=customer.pk, customer=customer
    )
    FieldProvenance.objects.create(
        entity="customer",
        object_id=customer.pk,
        field="name",
        value="Ann",
        system=crm,
        source_updated_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    )
    with pytest.raises(ProtectedError):
        crm.delete()
    assert SourceSystem.objects.filter(pk=crm.pk).exists()
    assert FieldProvenance.objects.filter(system=crm).count() == 1
