"""Reads: every non-trivial query of the hub, with the joins it needs."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import (
    Avg,
    Count,
    DecimalField,
    DurationField,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce
from django.utils import timezone
from guardian.shortcuts import get_objects_for_user

from customers.identity import normalize
from customers.models import (
    Contact,
    Customer,
    Deal,
    Entity,
    ExternalRef,
    FieldProvenance,
    Invoice,
    Order,
    Payment,
    PaymentStatus,
    Ticket,
)
from customers.permissions import VIEW_CUSTOMER


def survivor_ids() -> dict[int, int]:
    """Merged customer id → the active customer it was merged into (chains followed)."""
    parent = dict(
        Customer.objects.filter(merged_into__isnull=False).values_list("pk", "merged_into_id")
    )
    resolved: dict[int, int] = {}
    for start in parent:
        node, seen = start, set()
        while node in parent and node not in seen:
            seen.add(node)
            node = parent[node]
        resolved[start] = node
    return resolved


def crossref_rows(chunk_size: int = 5000) -> Iterator[tuple[str, str, str, int]]:
    """(system, entity, external_id, customer_id now) for every ExternalRef."""
    survivors = survivor_ids()
    refs = ExternalRef.objects.order_by("system__name", "entity", "external_id").values_list(
        "system__name", "entity", "external_id", "customer_id"
    )
    for system, entity, external_id, customer_id in refs.iterator(chunk_size=chunk_size):
        yield system, entity, external_id, survivors.get(customer_id, customer_id)


# --- Web UI reads: the customer list and the customer 360 page -------------------------
#
# Every function below runs a fixed number of queries whatever the number of rows; the
# tests in tests/customers/test_selectors.py and test_views.py pin the counts.

_PHONE_LIKE = re.compile(r"^\+?[\d\s().\-/]{7,}$")
ADDRESS_FIELDS = ("address_line1", "address_line2", "postal_code", "city", "region", "country")
OPEN_DEAL_STAGES = [
    Deal.Stage.LEAD,
    Deal.Stage.QUALIFIED,
    Deal.Stage.PROPOSAL,
    Deal.Stage.NEGOTIATION,
]
CLOSED_DEAL_STAGES = [Deal.Stage.CLOSED_WON, Deal.Stage.CLOSED_LOST]
OPEN_TICKET_STATUSES = [Ticket.Status.NEW, Ticket.Status.OPEN, Ticket.Status.PENDING]


def customer_search_filter(query: str) -> Q:
    """Name (contains), e-mail, phone, or any source system's id for one of its records.

    The phone is matched in E.164 when the query parses as an international number, and
    otherwise by its digits (without trunk zeros), so "(415) 555-0100" finds +14155550100
    without guessing a country.
    """
    condition = Q(name__icontains=query) | Q(email__icontains=query)
    if "@" in query:
        condition |= Q(email=normalize.email(query))
    if e164 := normalize.phone(query):
        condition |= Q(phone=e164)
    digits = re.sub(r"\D", "", query).lstrip("0")
    if _PHONE_LIKE.match(query) and len(digits) >= 7:
        condition |= Q(phone__contains=digits)
    # A ticket's or an invoice's id finds its customer; a merged customer's ids find
    # the customer it was merged into.
    owners = ExternalRef.objects.filter(external_id=query).values("customer_id")
    survivors = Customer.objects.filter(pk__in=owners, merged_into__isnull=False)
    condition |= Q(pk__in=owners) | Q(pk__in=survivors.values("merged_into_id"))
    return condition


def customer_list(*, user: AbstractBaseUser, query: str = "") -> QuerySet[Customer]:
    """Active customers ``user`` may see, matching ``query``, with ``system_count``.

    One query for the rows (the system count is a correlated subquery, evaluated only for
    the rows of the page), one more when a paginator counts them.
    """
    customers = Customer.objects.filter(status=Customer.Status.ACTIVE)
    if not user.has_perm(VIEW_CUSTOMER):
        # Partners: only the customers shared with them object by object.
        shared = get_objects_for_user(
            user, VIEW_CUSTOMER, klass=Customer, accept_global_perms=False
        )
        customers = customers.filter(pk__in=shared.values("pk"))
    if query:
        customers = customers.filter(customer_search_filter(query))
    systems = (
        ExternalRef.objects.filter(customer=OuterRef("pk"), tombstoned_at__isnull=True)
        .order_by()
        .values("customer")
        .annotate(n=Count("system", distinct=True))
        .values("n")
    )
    return customers.annotate(
        system_count=Coalesce(Subquery(systems, output_field=IntegerField()), 0)
    ).order_by("name", "id")


@dataclass(frozen=True)
class GoldenField:
    """One value of the golden record and where it came from (None: set in the hub)."""

    name: str
    label: str
    value: str
    provenance: FieldProvenance | None


@dataclass(frozen=True)
class GoldenRecord:
    name: GoldenField
    fields: list[GoldenField]


def customer_golden_record(*, customer: Customer) -> GoldenRecord:
    """The header of the 360 page: values with provenance. One query."""
    provenance = {
        p.field: p
        for p in FieldProvenance.objects.filter(
            entity=Entity.CUSTOMER, object_id=customer.pk
        ).select_related("system")
    }
    address_sources = [provenance[f] for f in ADDRESS_FIELDS if f in provenance]
    address = max(address_sources, key=lambda p: p.source_updated_at, default=None)

    def field(name: str, label: str, value: str) -> GoldenField:
        return GoldenField(name, label, value, provenance.get(name))

    return GoldenRecord(
        name=field("name", "Name", customer.name),
        fields=[
            field("kind", "Kind", customer.get_kind_display()),
            field("legal_name", "Legal name", customer.legal_name),
            field("email", "E-mail", customer.email),
            field("phone", "Phone", customer.phone),
            field("website", "Website", customer.website),
            field("tax_id", "Tax ID", customer.tax_id),
            GoldenField("address", "Address", customer.display_address, address),
            field("lifecycle_stage", "Lifecycle stage", customer.get_lifecycle_stage_display()),
            field("owner", "Owner", customer.owner),
            GoldenField("status", "Status", customer.get_status_display(), None),
        ],
    )


@dataclass(frozen=True)
class Money:
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class CustomerKpis:
    """Figures for the KPI strip; None where the user may not see the underlying rows."""

    open_balance: list[Money] | None = None
    overdue: list[Money] | None = None
    overdue_count: int = 0
    open_tickets: int | None = None
    pipeline: list[Money] | None = None
    lifetime_orders: list[Money] | None = None


def _money(rows: Iterable[dict[str, Any]], key: str) -> list[Money]:
    # Amounts in different currencies are never added up: one figure per currency.
    return [Money(row[key], row["currency"]) for row in rows if row[key]]


def customer_kpis(*, customer: Customer, user: AbstractBaseUser) -> CustomerKpis:
    """One aggregate query per kind of row ``user`` may see (at most four)."""
    today = timezone.localdate()
    figures: dict[str, Any] = {}
    if user.has_perm("customers.view_payment_status"):
        balance = F("amount") - F("amount_paid")
        overdue = Q(due_date__lt=today)
        rows = list(
            Invoice.objects.filter(customer=customer, deleted_at__isnull=True)
            .unpaid()
            .values("currency")
            .order_by("currency")
            .annotate(
                balance=Sum(balance),
                overdue=Sum(balance, filter=overdue),
                overdue_count=Count("pk", filter=overdue),
            )
        )
        figures["open_balance"] = _money(rows, "balance")
        figures["overdue"] = _money(rows, "overdue")
        figures["overdue_count"] = sum(row["overdue_count"] for row in rows)
    if user.has_perm("customers.view_ticket"):
        figures["open_tickets"] = Ticket.objects.filter(
            customer=customer, deleted_at__isnull=True, status__in=OPEN_TICKET_STATUSES
        ).count()
    if user.has_perm("customers.view_deal"):
        rows = (
            Deal.objects.filter(
                customer=customer, deleted_at__isnull=True, stage__in=OPEN_DEAL_STAGES
            )
            .values("currency")
            .order_by("currency")
            .annotate(total=Sum("amount"))
        )
        figures["pipeline"] = _money(rows, "total")
    if user.has_perm("customers.view_order"):
        rows = (
            Order.objects.filter(customer=customer, deleted_at__isnull=True)
            .exclude(status=Order.Status.CANCELLED)
            .values("currency")
            .order_by("currency")
            .annotate(total=Sum("total"))
        )
        figures["lifetime_orders"] = _money(rows, "total")
    return CustomerKpis(**figures)


def contact_list(*, customer: Customer) -> QuerySet[Contact]:
    return Contact.objects.filter(customer=customer, deleted_at__isnull=True)


def deal_list(*, customer: Customer) -> QuerySet[Deal]:
    return Deal.objects.filter(customer=customer, deleted_at__isnull=True).order_by(
        F("close_date").desc(nulls_last=True), "-id"
    )


def order_list(*, customer: Customer) -> QuerySet[Order]:
    """Orders with ``line_count`` and ``lines_total``; the lines come in one more query."""
    return (
        Order.objects.filter(customer=customer, deleted_at__isnull=True)
        .annotate(
            line_count=Count("lines"),
            lines_total=Sum(
                F("lines__quantity") * F("lines__unit_price"),
                output_field=DecimalField(max_digits=28, decimal_places=2),
            ),
        )
        .prefetch_related("lines")
        .order_by(F("order_date").desc(nulls_last=True), "-id")
    )


def invoice_list(*, customer: Customer) -> QuerySet[Invoice]:
    return Invoice.objects.filter(customer=customer, deleted_at__isnull=True).order_by(
        F("issue_date").desc(nulls_last=True), "-id"
    )


def payment_list(*, customer: Customer) -> QuerySet[Payment]:
    return (
        Payment.objects.filter(customer=customer, deleted_at__isnull=True)
        .select_related("invoice")
        .order_by(F("paid_at").desc(nulls_last=True), "-id")
    )


def ticket_list(*, customer: Customer) -> QuerySet[Ticket]:
    return Ticket.objects.filter(customer=customer, deleted_at__isnull=True).order_by(
        F("opened_at").desc(nulls_last=True), "-id"
    )


@dataclass(frozen=True)
class TicketStats:
    open: int
    resolved: int
    average_resolution: dt.timedelta | None


def ticket_stats(*, customer: Customer) -> TicketStats:
    """Open and resolved counts and the average resolution time, in one query."""
    resolved = Q(opened_at__isnull=False, resolved_at__isnull=False)
    stats = Ticket.objects.filter(customer=customer, deleted_at__isnull=True).aggregate(
        open=Count("pk", filter=Q(status__in=OPEN_TICKET_STATUSES)),
        resolved=Count("pk", filter=resolved),
        average_resolution=Avg(
            F("resolved_at") - F("opened_at"), filter=resolved, output_field=DurationField()
        ),
    )
    return TicketStats(**stats)


def external_ref_list(*, customer: Customer) -> QuerySet[ExternalRef]:
    """The source records of the customer and of everything it owns, tombstones included."""
    return (
        ExternalRef.objects.filter(customer=customer)
        .select_related("system")
        .order_by("system__name", "entity", "external_id")
    )


@dataclass(frozen=True)
class TimelineEvent:
    at: dt.datetime
    all_day: bool  # the source knows the date only
    kind: str  # deal, order, invoice, payment, ticket
    title: str
    amount: Decimal | None = None
    currency: str = ""
    status: str = ""  # a payment, ticket … status value, for its badge


def _day(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=timezone.get_current_timezone())


def _deal_events(live: Q, limit: int) -> list[TimelineEvent]:
    deals = Deal.objects.filter(live)
    fields = ("name", "amount", "currency", "stage", "created_at", "close_date")
    events = [
        TimelineEvent(
            d["created_at"],
            False,
            "deal",
            f"Deal created: {d['name']}",
            d["amount"],
            d["currency"],
        )
        for d in deals.order_by("-created_at").values(*fields)[:limit]
    ]
    closed = deals.filter(stage__in=CLOSED_DEAL_STAGES, close_date__isnull=False)
    events += [
        TimelineEvent(
            _day(d["close_date"]),
            True,
            "deal",
            f"Deal {Deal.Stage(d['stage']).label.lower()}: {d['name']}",
            d["amount"],
            d["currency"],
            d["stage"],
        )
        for d in closed.order_by("-close_date").values(*fields)[:limit]
    ]
    return events


def _order_events(live: Q, limit: int) -> list[TimelineEvent]:
    orders = Order.objects.filter(live, order_date__isnull=False).order_by("-order_date")
    return [
        TimelineEvent(
            _day(o["order_date"]),
            True,
            "order",
            f"Order {o['number']} placed",
            o["total"],
            o["currency"],
            o["status"],
        )
        for o in orders.values("number", "order_date", "total", "currency", "status")[:limit]
    ]


def _invoice_events(live: Q, limit: int, today: dt.date) -> list[TimelineEvent]:
    invoices = Invoice.objects.filter(live).exclude(status=Invoice.Status.DRAFT)
    fields = ("number", "amount", "amount_paid", "currency", "issue_date", "due_date")
    issued = invoices.filter(issue_date__isnull=False).order_by("-issue_date")
    events = [
        TimelineEvent(
            _day(i["issue_date"]),
            True,
            "invoice",
            f"Invoice {i['number']} issued",
            i["amount"],
            i["currency"],
        )
        for i in issued.values(*fields)[:limit]
    ]
    # Due dates that have come; a future due date is not an event yet.
    due = invoices.filter(status=Invoice.Status.ISSUED, due_date__lte=today).order_by("-due_date")
    events += [
        TimelineEvent(
            _day(i["due_date"]),
            True,
            "invoice",
            f"Invoice {i['number']} due",
            i["amount"],
            i["currency"],
            PaymentStatus.OVERDUE
            if i["due_date"] < today and i["amount_paid"] < i["amount"]
            else "",
        )
        for i in due.values(*fields)[:limit]
    ]
    return events


def _payment_events(live: Q, limit: int) -> list[TimelineEvent]:
    payments = Payment.objects.filter(live, paid_at__isnull=False).order_by("-paid_at")
    fields = ("amount", "currency", "paid_at", "status", "invoice__number")
    return [
        TimelineEvent(
            p["paid_at"],
            False,
            "payment",
            f"Payment received for invoice {p['invoice__number']}"
            if p["invoice__number"]
            else "Payment received",
            p["amount"],
            p["currency"],
            p["status"],
        )
        for p in payments.values(*fields)[:limit]
    ]


def _ticket_events(live: Q, limit: int) -> list[TimelineEvent]:
    tickets = Ticket.objects.filter(live)
    fields = ("subject", "priority", "status", "opened_at", "resolved_at")
    opened = tickets.filter(opened_at__isnull=False).order_by("-opened_at")
    events = [
        TimelineEvent(
            t["opened_at"], False, "ticket", f"Ticket opened: {t['subject']}", status=t["priority"]
        )
        for t in opened.values(*fields)[:limit]
    ]
    resolved = tickets.filter(resolved_at__isnull=False).order_by("-resolved_at")
    events += [
        TimelineEvent(
            t["resolved_at"],
            False,
            "ticket",
            f"Ticket resolved: {t['subject']}",
            status=t["status"],
        )
        for t in resolved.values(*fields)[:limit]
    ]
    return events


def customer_timeline(
    *, customer: Customer, user: AbstractBaseUser, limit: int = 100
) -> list[TimelineEvent]:
    """The newest ``limit`` events of the rows ``user`` may see, newest first.

    One query per kind of event (at most eight), each limited to ``limit`` rows: the
    newest ``limit`` events overall are among the newest ``limit`` of each kind.
    Soft-deleted rows make no events.
    """
    live = Q(customer=customer, deleted_at__isnull=True)
    events: list[TimelineEvent] = []
    if user.has_perm("customers.view_deal"):
        events += _deal_events(live, limit)
    if user.has_perm("customers.view_order"):
        events += _order_events(live, limit)
    if user.has_perm("customers.view_payment_status"):
        events += _invoice_events(live, limit, timezone.localdate())
    if user.has_perm("customers.view_payment"):
        events += _payment_events(live, limit)
    if user.has_perm("customers.view_ticket"):
        events += _ticket_events(live, limit)
    events.sort(key=lambda e: e.at, reverse=True)
    return events[:limit]
