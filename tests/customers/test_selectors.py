"""Reads behind the web UI: search, the golden record, KPIs, ticket stats and the timeline."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from guardian.shortcuts import assign_perm

from customers import selectors
from customers.models import Customer, Deal, Entity, Ticket
from customers.selectors import Money
from tests.factories.customers import (
    CustomerFactory,
    DealFactory,
    ExternalRefFactory,
    FieldProvenanceFactory,
    InvoiceFactory,
    OrderFactory,
    PaymentFactory,
    SourceSystemFactory,
    TicketFactory,
)

pytestmark = pytest.mark.django_db


def names(customers) -> list[str]:
    return [c.name for c in customers]


def test_customer_list_hides_merged_and_erased_and_sorts_by_name(make_user):
    CustomerFactory(name="Zulu")
    CustomerFactory(name="Alpha")
    CustomerFactory(name="Merged", status=Customer.Status.MERGED)
    CustomerFactory(name="Erased", status=Customer.Status.ERASED)
    assert names(selectors.customer_list(user=make_user("sales"))) == ["Alpha", "Zulu"]


def test_system_count_counts_distinct_live_systems(make_user):
    customer = CustomerFactory()
    crm, erp = SourceSystemFactory(name="crm"), SourceSystemFactory(name="erp")
    ExternalRefFactory(customer=customer, system=crm)
    ExternalRefFactory(customer=customer, system=crm, entity=Entity.CONTACT)
    ExternalRefFactory(customer=customer, system=erp, entity=Entity.INVOICE)
    ExternalRefFactory(
        customer=customer, system=SourceSystemFactory(name="old"), tombstoned_at=timezone.now()
    )
    lonely = CustomerFactory()
    counts = {c.pk: c.system_count for c in selectors.customer_list(user=make_user("sales"))}
    assert counts == {customer.pk: 2, lonely.pk: 0}


def test_customer_list_runs_one_query(make_user, django_assert_num_queries):
    user = make_user("sales")
    user.has_perm("customers.view_customer")  # permissions are cached on the user
    for customer in CustomerFactory.create_batch(20):
        ExternalRefFactory(customer=customer)
    with django_assert_num_queries(1):  # customers with the system count as a subquery
        assert len(list(selectors.customer_list(user=user, query="customer"))) == 20


def test_partner_sees_only_customers_shared_with_them(make_user):
    partner = make_user("partner")
    shared = CustomerFactory(name="Shared")
    CustomerFactory(name="Not shared")
    assign_perm("customers.view_customer", partner, shared)
    assert names(selectors.customer_list(user=partner)) == ["Shared"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Acme", True),
        ("cme co", True),
        ("AP@ACME.TEST", True),
        ("+14155550100", True),
        ("+1 415 555 0100", True),
        ("(415) 555-0100", True),
        ("0041 415 555 0100", False),  # another country's number with the same digits
        ("555-0100", True),  # a local number without its area code
        ("0100", False),  # too few digits to be a phone number
        ("A-1000", True),
        ("a-1000", False),  # source ids are exact
    ],
)
def test_customer_search_filter(make_user, query, expected):
    acme = CustomerFactory(name="Acme Corp", email="ap@acme.test", phone="+14155550100")
    ExternalRefFactory(customer=acme, external_id="A-1000")
    found = selectors.customer_list(user=make_user("sales"), query=query)
    assert (acme in found) is expected


def test_golden_record_shows_where_each_value_came_from(django_assert_num_queries):
    crm = SourceSystemFactory(name="crm", label="CRM")
    erp = SourceSystemFactory(name="erp", label="ERP")
    customer = CustomerFactory(name="Acme", address_line1="1 Main St", city="Springfield")
    now = timezone.now()
    FieldProvenanceFactory(object_id=customer.pk, field="name", system=crm)
    FieldProvenanceFactory(
        object_id=customer.pk,
        field="address_line1",
        system=crm,
        source_updated_at=now - dt.timedelta(days=9),
    )
    FieldProvenanceFactory(
        object_id=customer.pk,
        field="city",
        system=erp,
        source_updated_at=now - dt.timedelta(days=1),
    )
    FieldProvenanceFactory(object_id=CustomerFactory().pk, field="email", system=erp)
    with django_assert_num_queries(1):  # provenance with its systems
        record = selectors.customer_golden_record(customer=customer)
    assert record.name.value == "Acme" and record.name.provenance.system == crm
    by_name = {f.name: f for f in record.fields}
    # The address is several fields: it shows the newest of their sources.
    assert by_name["address"].provenance.system == erp
    assert by_name["email"].provenance is None
    assert by_name["status"].value == "Active" and by_name["status"].provenance is None
    assert [f.label for f in record.fields] == [
        "Kind",
        "Legal name",
        "E-mail",
        "Phone",
        "Website",
        "Tax ID",
        "Address",
        "Lifecycle stage",
        "Owner",
        "Status",
    ]


def test_kpis_are_per_currency_and_skip_what_the_user_may_not_see(make_user):
    customer = CustomerFactory()
    today = timezone.localdate()
    InvoiceFactory(customer=customer, amount=Decimal("100"), due_date=today - dt.timedelta(days=1))
    InvoiceFactory(
        customer=customer, amount=Decimal("50"), currency="EUR", amount_paid=Decimal("20")
    )
    TicketFactory(customer=customer)
    DealFactory(customer=customer, amount=Decimal("10"))
    DealFactory(customer=customer, amount=None)
    OrderFactory(customer=customer, total=Decimal("7"))

    finance = selectors.customer_kpis(customer=customer, user=make_user("finance"))
    assert finance.open_balance == [Money(Decimal("30.00"), "EUR"), Money(Decimal("100.00"), "USD")]
    assert finance.overdue == [Money(Decimal("100.00"), "USD")]
    assert finance.overdue_count == 1
    assert finance.open_tickets is None  # finance does not see tickets
    assert finance.pipeline == [Money(Decimal("10.00"), "USD")]
    assert finance.lifetime_orders == [Money(Decimal("7.00"), "USD")]

    sales = selectors.customer_kpis(customer=customer, user=make_user("sales"))
    assert sales.open_tickets == 1

    nobody = selectors.customer_kpis(customer=customer, user=AnonymousUser())
    assert nobody == selectors.CustomerKpis()


def test_ticket_stats_average_resolution_time():
    customer = CustomerFactory()
    opened = timezone.now() - dt.timedelta(days=3)
    TicketFactory(
        customer=customer,
        opened_at=opened,
        resolved_at=opened + dt.timedelta(hours=1),
        status=Ticket.Status.SOLVED,
    )
    TicketFactory(
        customer=customer,
        opened_at=opened,
        resolved_at=opened + dt.timedelta(hours=4),
        status=Ticket.Status.CLOSED,
    )
    TicketFactory(customer=customer, status=Ticket.Status.PENDING)
    TicketFactory(customer=customer, deleted_at=timezone.now())
    stats = selectors.ticket_stats(customer=customer)
    assert stats == selectors.TicketStats(
        open=1, resolved=2, average_resolution=dt.timedelta(hours=2, minutes=30)
    )
    empty = selectors.ticket_stats(customer=CustomerFactory())
    assert empty == selectors.TicketStats(open=0, resolved=0, average_resolution=None)


def test_timeline_is_limited_and_bounded(make_user, django_assert_num_queries):
    user = make_user("steward")
    user.has_perm("customers.view_customer")  # permissions are cached on the user
    customer = CustomerFactory()
    now = timezone.now()
    for i in range(15):
        TicketFactory(
            customer=customer,
            opened_at=now - dt.timedelta(hours=i + 2),
            resolved_at=now - dt.timedelta(hours=i + 1),
            status=Ticket.Status.SOLVED,
        )
        DealFactory(customer=customer, stage=Deal.Stage.CLOSED_LOST)
        PaymentFactory(customer=customer)
    # deals created, deals closed, orders, invoices issued, invoices due, payments,
    # tickets opened, tickets resolved
    with django_assert_num_queries(8):
        events = selectors.customer_timeline(customer=customer, user=user, limit=10)
    assert len(events) == 10
    assert [e.at for e in events] == sorted((e.at for e in events), reverse=True)


def test_timeline_of_a_user_without_row_permissions_is_empty(make_user, django_assert_num_queries):
    customer = CustomerFactory()
    TicketFactory(customer=customer)
    with django_assert_num_queries(0):
        assert selectors.customer_timeline(customer=customer, user=AnonymousUser()) == []


def test_timeline_shows_overdue_due_dates_and_skips_future_ones(make_user):
    customer = CustomerFactory()
    today = timezone.localdate()
    InvoiceFactory(customer=customer, number="LATE", due_date=today - dt.timedelta(days=2))
    InvoiceFactory(
        customer=customer,
        number="PAID",
        due_date=today - dt.timedelta(days=2),
        amount_paid=Decimal("1000"),
    )
    InvoiceFactory(customer=customer, number="LATER", due_date=today + dt.timedelta(days=2))
    events = selectors.customer_timeline(customer=customer, user=make_user("sales"))
    due = {e.title: e.status for e in events if e.title.endswith(" due")}
    assert due == {"Invoice LATE due": "overdue", "Invoice PAID due": ""}
