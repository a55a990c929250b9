"""factory-boy factories for the canonical models (customers app).

Rows are realistic enough to render: names, amounts, dates. Related rows default to a
new customer; pass ``customer=`` to hang many rows on one. ``SourceSystemFactory`` gets
or creates by name, so ``SourceSystemFactory(name="crm")`` is safe to call twice.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import factory
from django.utils import timezone

from customers.models import (
    Contact,
    Customer,
    Deal,
    Entity,
    ExternalRef,
    FieldProvenance,
    Invoice,
    Order,
    OrderLine,
    Payment,
    SourceSystem,
    SystemKind,
    Ticket,
)


class SourceSystemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SourceSystem
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"system-{n}")
    label = factory.LazyAttribute(lambda o: o.name.upper())
    kind = SystemKind.CRM
    trust_rank = 50


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    kind = Customer.Kind.ORGANIZATION
    name = factory.Sequence(lambda n: f"Customer {n:04d} Ltd")
    legal_name = factory.LazyAttribute(lambda o: o.name)
    email = factory.Sequence(lambda n: f"accounts{n}@customer{n}.test")
    phone = ""
    website = factory.Sequence(lambda n: f"customer{n}.test")
    country = "US"
    city = "San Francisco"
    lifecycle_stage = Customer.Lifecycle.CUSTOMER
    status = Customer.Status.ACTIVE


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    customer = factory.SubFactory(CustomerFactory)
    first_name = factory.Sequence(lambda n: f"Alex{n}")
    last_name = "Morgan"
    email = factory.Sequence(lambda n: f"alex{n}@customer.test")
    title = "Head of Operations"


class DealFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Deal

    customer = factory.SubFactory(CustomerFactory)
    name = factory.Sequence(lambda n: f"Deal {n}")
    stage = Deal.Stage.PROPOSAL
    amount = Decimal("12000.00")
    currency = "USD"
    close_date = factory.LazyFunction(lambda: timezone.localdate() + dt.timedelta(days=30))


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    customer = factory.SubFactory(CustomerFactory)
    number = factory.Sequence(lambda n: f"SO-{10000 + n}")
    order_date = factory.LazyFunction(lambda: timezone.localdate() - dt.timedelta(days=20))
    status = Order.Status.CONFIRMED
    total = Decimal("2400.00")
    currency = "USD"


class OrderLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = OrderLine

    order = factory.SubFactory(OrderFactory)
    position = factory.Sequence(lambda n: n)
    sku = factory.Sequence(lambda n: f"SKU-{n:04d}")
    description = "Annual licence"
    quantity = Decimal("2")
    unit_price = Decimal("600.00")


class InvoiceFactory(factory.django.DjangoModelFactory):
    """An issued, unpaid invoice due in 30 days (payment status "open")."""

    class Meta:
        model = Invoice

    customer = factory.SubFactory(CustomerFactory)
    number = factory.Sequence(lambda n: f"INV-{20000 + n}")
    issue_date = factory.LazyFunction(timezone.localdate)
    due_date = factory.LazyAttribute(lambda o: o.issue_date + dt.timedelta(days=30))
    amount = Decimal("1000.00")
    amount_paid = Decimal("0.00")
    currency = "USD"
    status = Invoice.Status.ISSUED


class PaymentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Payment

    customer = factory.SubFactory(CustomerFactory)
    invoice = None
    amount = Decimal("1000.00")
    currency = "USD"
    paid_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(days=1))
    method = "bank_transfer"
    status = Payment.Status.SUCCEEDED


class TicketFactory(factory.django.DjangoModelFactory):
    """An open ticket opened two hours ago; pass ``resolved_at`` for a solved one."""

    class Meta:
        model = Ticket

    customer = factory.SubFactory(CustomerFactory)
    subject = factory.Sequence(lambda n: f"Cannot export report #{n}")
    status = Ticket.Status.OPEN
    priority = Ticket.Priority.NORMAL
    channel = "email"
    opened_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(hours=2))
    resolved_at = None


class ExternalRefFactory(factory.django.DjangoModelFactory):
    """A cross-reference; by default the customer's own record in a CRM."""

    class Meta:
        model = ExternalRef

    system = factory.SubFactory(SourceSystemFactory, name="crm", label="CRM")
    entity = Entity.CUSTOMER
    external_id = factory.Sequence(lambda n: f"ext-{n:06d}")
    customer = factory.SubFactory(CustomerFactory)
    object_id = factory.LazyAttribute(lambda o: o.customer.pk)
    source_updated_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(hours=2))


class FieldProvenanceFactory(factory.django.DjangoModelFactory):
    """Provenance of one customer field; ``object_id`` defaults to a new customer's id."""

    class Meta:
        model = FieldProvenance

    entity = Entity.CUSTOMER
    object_id = factory.LazyFunction(lambda: CustomerFactory().pk)
    field = "name"
    value = ""
    system = factory.SubFactory(SourceSystemFactory, name="crm", label="CRM")
    source_updated_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(hours=2))
    record_id = None
