"""The web UI: login, the customer list and search, the 360 page and its sections.

Query counts are pinned after creating many rows, so a query per row (N+1) fails the
test. Every authenticated request starts with the same four queries:

    1. the session          2. the user
    3. the user's own permissions    4. the permissions of the user's groups
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from customers.models import Customer, Deal, Entity, Invoice, Order, Ticket
from customers.templatetags import concord
from tests.factories.customers import (
    ContactFactory,
    CustomerFactory,
    DealFactory,
    ExternalRefFactory,
    FieldProvenanceFactory,
    InvoiceFactory,
    OrderFactory,
    OrderLineFactory,
    PaymentFactory,
    SourceSystemFactory,
    TicketFactory,
)

pytestmark = pytest.mark.django_db

SECTIONS = ["contacts", "deals", "orders", "invoices", "payments", "tickets", "timeline", "sources"]
ROLE_SECTIONS = {
    "sales": {"contacts", "deals", "orders", "invoices", "tickets", "timeline", "sources"},
    "service": {"contacts", "deals", "orders", "invoices", "tickets", "timeline", "sources"},
    "finance": {"contacts", "deals", "orders", "invoices", "payments", "timeline", "sources"},
    "steward": set(SECTIONS),
    "admin": set(SECTIONS),
}
HTMX = {"HX-Request": "true"}
MANY = 30


@pytest.fixture
def login(client: Client, make_user):
    """Log the test client in as a user of ``role``."""

    def login_as(role: str) -> Client:
        client.force_login(make_user(role))
        return client

    return login_as


def section_url(customer: Customer | int, name: str) -> str:
    pk = customer if isinstance(customer, int) else customer.pk
    return reverse(f"customers:{name}", args=[pk])


def html(response) -> str:
    return response.content.decode()


def text(response) -> str:
    """The response as text with tags removed and whitespace collapsed."""
    content = re.sub(r"<[^>]+>", " ", html(response))
    return " ".join(content.replace("\xa0", " ").split())


# --- Login and access ----------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["/customers/", "/customers/1/", *(f"/customers/1/{name}/" for name in SECTIONS)],
)
def test_anonymous_is_redirected_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={url}"


def test_login_page_is_a_form_and_logging_in_lands_on_customers(client, make_user):
    make_user("sales")
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert 'name="username"' in html(page) and 'name="password"' in html(page)

    response = client.post("/accounts/login/", {"username": "sales-user", "password": "pw"})
    assert response.status_code == 302
    assert response["Location"] == "/customers/"


def test_wrong_password_is_reported(client, make_user):
    make_user("sales")
    response = client.post("/accounts/login/", {"username": "sales-user", "password": "nope"})
    assert response.status_code == 200
    assert "alert-error" in html(response)


def test_header_shows_user_role_and_a_logout_post_form(login):
    client = login("sales")
    page = html(client.get("/customers/"))
    assert "sales-user" in page
    assert '<span class="who-role">sales</span>' in page
    assert re.search(r'<form method="post" action="/accounts/logout/">', page)
    assert "csrfmiddlewaretoken" in page
    assert """hx-headers='{"X-CSRFToken": """ in page

    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert client.get("/customers/").status_code == 302


def test_pages_load_vendored_htmx_and_no_cdn(login):
    page = html(login("sales").get("/customers/"))
    assert "/static/js/htmx.min.js" in page
    assert "/static/css/concord.css" in page
    assert "://" not in "".join(re.findall(r'(?:src|href)="([^"]+)"', page))


@pytest.mark.parametrize(
    "url", ["/customers/", "{detail}", *(f"{{detail}}{name}/" for name in SECTIONS)]
)
def test_partner_gets_403_that_points_to_the_api(login, url):
    customer = CustomerFactory()
    client = login("partner")
    response = client.get(url.format(detail=f"/customers/{customer.pk}/"))
    assert response.status_code == 403
    assert "Partners use the API" in html(response)
    assert "/api/v1/" in html(response)


def test_partner_gets_403_even_for_an_id_that_does_not_exist(login):
    # Web access is checked first: a partner learns nothing about which ids exist.
    assert login("partner").get("/customers/999999/").status_code == 403


@pytest.mark.parametrize(
    "url", ["/customers/999999/", *(f"/customers/999999/{n}/" for n in SECTIONS)]
)
def test_unknown_customer_is_404(login, url):
    response = login("admin").get(url)
    assert response.status_code == 404
    assert "couldn't find" in html(response)


@pytest.mark.parametrize("role", sorted(ROLE_SECTIONS))
def test_each_role_sees_exactly_its_sections(login, role):
    customer = CustomerFactory()
    client = login(role)
    page = html(client.get(customer.get_absolute_url()))
    shown = set(re.findall(rf'hx-get="/customers/{customer.pk}/(\w+)/"', page))
    assert shown == ROLE_SECTIONS[role]
    for name in SECTIONS:
        status = client.get(section_url(customer, name), headers=HTMX).status_code
        assert status == (200 if name in ROLE_SECTIONS[role] else 403), name


@pytest.mark.parametrize(
    ("role", "kpis"),
    [
        ("sales", ["Open balance", "Overdue", "Open tickets", "Deals pipeline", "Lifetime order"]),
        ("finance", ["Open balance", "Overdue", "Deals pipeline", "Lifetime order"]),
    ],
)
def test_kpi_strip_follows_permissions(login, role, kpis):
    customer = CustomerFactory()
    page = text(login(role).get(customer.get_absolute_url()))
    for label in kpis:
        assert label.upper() in page.upper()
    if role == "finance":
        assert "OPEN TICKETS" not in page.upper()


# --- The customer list and search ----------------------------------------------------


def test_list_shows_active_customers_with_their_columns(login):
    crm = SourceSystemFactory(name="crm")
    erp = SourceSystemFactory(name="erp", kind="billing")
    acme = CustomerFactory(
        name="Acme Corp",
        email="ap@acme.test",
        phone="+14155550100",
        country="US",
        lifecycle_stage=Customer.Lifecycle.OPPORTUNITY,
    )
    ExternalRefFactory(customer=acme, system=crm)
    ExternalRefFactory(customer=acme, system=erp)
    ExternalRefFactory(customer=acme, system=erp, entity=Entity.INVOICE)  # same system
    ExternalRefFactory(
        customer=acme, system=SourceSystemFactory(name="desk"), tombstoned_at=timezone.now()
    )
    survivor = CustomerFactory(name="Zeta Survivor")
    CustomerFactory(name="Merged Away", status=Customer.Status.MERGED, merged_into=survivor)
    CustomerFactory(name="Erased Person", status=Customer.Status.ERASED)

    response = login("sales").get("/customers/")
    page = text(response)
    assert "Acme Corp" in page and "Zeta Survivor" in page
    assert "Merged Away" not in page and "Erased Person" not in page
    assert "2 customers" in page
    # name, kind, e-mail, phone, country, stage, systems (crm and erp; not the tombstone)
    assert "Acme Corp Organization ap@acme.test +1 415-555-0100 US Opportunity 2 Zeta" in page
    assert f'href="/customers/{acme.pk}/"' in html(response)


def test_list_pages_by_fifty(login):
    CustomerFactory.create_batch(51)
    client = login("sales")
    first = html(client.get("/customers/"))
    assert first.count('class="row-link"') == 50
    assert "Page 1 of 2" in first
    assert 'hx-get="/customers/?page=2"' in first
    second = html(client.get("/customers/?page=2"))
    assert second.count('class="row-link"') == 1


@pytest.fixture
def searchable() -> dict[str, Customer]:
    desk = SourceSystemFactory(name="desk", kind="helpdesk")
    erp = SourceSystemFactory(name="erp", kind="billing")
    acme = CustomerFactory(name="Acme Corporation", email="billing@acme.test", phone="+14155550100")
    globex = CustomerFactory(name="Globex", email="hello@globex.test", phone="+442079460958")
    other = CustomerFactory(name="Initech", email="info@initech.test", phone="+4930901820")
    ticket = TicketFactory(customer=acme)
    ExternalRefFactory(
        system=desk, entity=Entity.TICKET, external_id="ZD-4711", customer=acme, object_id=ticket.pk
    )
    invoice = InvoiceFactory(customer=globex)
    ExternalRefFactory(
        system=erp,
        entity=Entity.INVOICE,
        external_id="INV-2026-0042",
        customer=globex,
        object_id=invoice.pk,
    )
    merged = CustomerFactory(name="Old Initech", status=Customer.Status.MERGED, merged_into=other)
    ExternalRefFactory(system=erp, external_id="C-OLD-1", customer=merged)
    return {"acme": acme, "globex": globex, "initech": other}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("acme", {"Acme Corporation"}),
        ("ACME corp", {"Acme Corporation"}),
        ("hello@globex.test", {"Globex"}),
        ("globex.test", {"Globex"}),
        ("+1 415 555 0100", {"Acme Corporation"}),
        ("(415) 555-0100", {"Acme Corporation"}),
        ("415.555.0100", {"Acme Corporation"}),
        ("+44 20 7946 0958", {"Globex"}),
        ("020 7946 0958", {"Globex"}),
        ("ZD-4711", {"Acme Corporation"}),  # a help-desk ticket's id
        ("INV-2026-0042", {"Globex"}),  # an ERP invoice's id
        ("C-OLD-1", {"Initech"}),  # the id of a merged customer finds the survivor
        ("ZD-47", set()),  # external ids match exactly
        ("nobody", set()),
    ],
)
def test_search(login, searchable, query, expected):
    response = login("sales").get("/customers/", {"q": query})
    found = set(re.findall(r'class="row-link"[^>]*>([^<]+)<', html(response)))
    assert found == expected


def test_search_with_htmx_renders_only_the_results(login, searchable):
    response = login("sales").get("/customers/", {"q": "acme"}, headers=HTMX)
    page = html(response)
    assert "<html" not in page and 'id="customer-search"' not in page
    assert "Acme Corporation" in page and "Globex" not in page
    assert "HX-Request" in response["Vary"]


def test_history_restore_gets_the_whole_page(login, searchable):
    headers = {**HTMX, "HX-History-Restore-Request": "true"}
    response = login("sales").get("/customers/", {"q": "acme"}, headers=headers)
    assert "<html" in html(response)


def test_search_box_is_wired_for_search_as_you_type(login):
    page = html(login("sales").get("/customers/", {"q": "acme"}))
    box = re.search(r'<input type="search".*?>', page, re.S).group(0)
    assert 'hx-get="/customers/"' in box
    assert 'hx-trigger="input changed delay:250ms, search"' in box
    assert 'hx-target="#results"' in box
    assert 'hx-push-url="true"' in box
    assert 'value="acme"' in box
    assert '<div id="results"' in page


def test_search_without_match_has_an_empty_state(login):
    page = text(login("sales").get("/customers/", {"q": "zzz"}))
    assert "No customers match “zzz”" in page


def test_empty_hub_has_an_empty_state(login):
    assert "No customers yet" in text(login("sales").get("/customers/"))


def test_list_query_count_does_not_grow_with_rows(login, django_assert_max_num_queries):
    crm, erp = SourceSystemFactory(name="crm"), SourceSystemFactory(name="erp")
    for customer in CustomerFactory.create_batch(60):
        ExternalRefFactory(customer=customer, system=crm)
        ExternalRefFactory(customer=customer, system=erp)
    client = login("sales")
    # 1-4 session, user, user and group permissions · 5 count · 6 the user's groups (header) ·
    # 7 the page of customers with the system count as a subquery
    with django_assert_max_num_queries(7):
        response = client.get("/customers/")
    assert html(response).count('class="row-link"') == 50


def test_search_query_count_does_not_grow_with_rows(login, django_assert_max_num_queries):
    for customer in CustomerFactory.create_batch(60, name="Acme Subsidiary"):
        ExternalRefFactory(customer=customer)
    client = login("sales")
    # 1-4 session, user, user and group permissions · 5 count · 6 the page of customers
    # (htmx: no header, so no groups query)
    with django_assert_max_num_queries(6):
        response = client.get("/customers/", {"q": "+1 (415) 555-0100 acme"}, headers=HTMX)
    assert response.status_code == 200
    with django_assert_max_num_queries(6):
        response = client.get("/customers/", {"q": "acme"}, headers=HTMX)
    assert html(response).count('class="row-link"') == 50


# --- The customer 360 page -----------------------------------------------------------


def test_detail_shows_the_golden_record_with_provenance(login):
    crm = SourceSystemFactory(name="crm", label="CRM", kind="crm")
    erp = SourceSystemFactory(name="erp", label="ERP", kind="billing")
    customer = CustomerFactory(
        name="Acme Corporation",
        legal_name="Acme Corporation Inc.",
        email="billing@acme.test",
        phone="+14155550100",
        website="acme.test",
        tax_id="US123456789",
        address_line1="1 Market St",
        postal_code="94105",
        city="San Francisco",
        country="US",
        lifecycle_stage=Customer.Lifecycle.CUSTOMER,
        owner="Dana Scully",
    )
    source_time = timezone.now() - dt.timedelta(hours=2)
    for field in ("name", "email", "phone", "website", "owner", "lifecycle_stage"):
        FieldProvenanceFactory(
            object_id=customer.pk,
            field=field,
            system=crm,
            source_updated_at=source_time,
            record_id=4242,
        )
    for field in ("legal_name", "tax_id", "address_line1", "city"):
        FieldProvenanceFactory(
            object_id=customer.pk,
            field=field,
            system=erp,
            source_updated_at=timezone.now() - dt.timedelta(days=3),
            record_id=77,
        )
    response = login("sales").get(customer.get_absolute_url())
    page, words = html(response), text(response)
    for value in (
        "Acme Corporation Inc.",
        "billing@acme.test",
        "+1 415-555-0100",
        "acme.test",
        "US123456789",
        "1 Market St, 94105 San Francisco, US",
        "Customer",
        "Dana Scully",
        "Organization",
        "Active",
    ):
        assert value in words, value
    assert words.count("from CRM · 2 hours ago") == 6
    assert words.count("from ERP · 3 days ago") == 3  # legal name, tax id, address
    exact = timezone.localtime(source_time).strftime("%Y-%m-%d %H:%M:%S")
    assert f"record updated {exact} UTC · landing record #4242" in page
    assert 'href="mailto:billing@acme.test"' in page
    assert 'href="https://acme.test"' in page


def test_merged_customer_redirects_to_its_survivor(login):
    survivor = CustomerFactory()
    merged = CustomerFactory(status=Customer.Status.MERGED, merged_into=survivor)
    response = login("sales").get(merged.get_absolute_url())
    assert response.status_code == 302
    assert response["Location"] == survivor.get_absolute_url()


def test_kpis_add_up_per_currency(login):
    customer = CustomerFactory()
    today = timezone.localdate()
    InvoiceFactory(customer=customer, amount=Decimal("1000"), amount_paid=Decimal("250"))
    InvoiceFactory(customer=customer, amount=Decimal("500"), due_date=today - dt.timedelta(days=3))
    InvoiceFactory(customer=customer, amount=Decimal("300"), amount_paid=Decimal("300"))
    InvoiceFactory(customer=customer, amount=Decimal("900"), status=Invoice.Status.VOID)
    InvoiceFactory(customer=customer, amount=Decimal("80"), currency="EUR")
    InvoiceFactory(customer=customer, amount=Decimal("999"), deleted_at=timezone.now())
    TicketFactory.create_batch(2, customer=customer)
    TicketFactory(customer=customer, status=Ticket.Status.SOLVED)
    DealFactory(customer=customer, amount=Decimal("12000"))
    DealFactory(customer=customer, amount=Decimal("5000"), stage=Deal.Stage.CLOSED_WON)
    OrderFactory(customer=customer, total=Decimal("2400"))
    OrderFactory(customer=customer, total=Decimal("100"), status=Order.Status.CANCELLED)
    page = text(login("sales").get(customer.get_absolute_url()))
    assert "OPEN BALANCE €80.00 $1,250.00" in page.upper()
    assert "OVERDUE $500.00 1 invoice overdue".upper() in page.upper()
    assert "OPEN TICKETS 2" in page.upper()
    assert "DEALS PIPELINE $12,000.00" in page.upper()
    assert "LIFETIME ORDER VALUE $2,400.00" in page.upper()


@pytest.fixture
def rich_customer() -> Customer:
    """A customer with MANY rows of every kind, and rows of another customer around it."""
    customer = CustomerFactory(name="Rich Customer")
    other = CustomerFactory(name="Someone Else")
    crm = SourceSystemFactory(name="crm", label="CRM")
    now = timezone.now()
    for field in ("name", "email", "phone", "website", "owner"):
        FieldProvenanceFactory(object_id=customer.pk, field=field, system=crm)
    for i in range(MANY):
        ContactFactory(customer=customer)
        DealFactory(customer=customer, stage=Deal.Stage.CLOSED_WON if i % 2 else Deal.Stage.LEAD)
        order = OrderFactory(customer=customer)
        OrderLineFactory.create_batch(2, order=order)
        invoice = InvoiceFactory(
            customer=customer, issue_date=timezone.localdate() - dt.timedelta(days=40)
        )
        PaymentFactory(customer=customer, invoice=invoice, amount=Decimal("100"))
        TicketFactory(
            customer=customer,
            opened_at=now - dt.timedelta(hours=5),
            resolved_at=now,
            status=Ticket.Status.SOLVED,
        )
        ExternalRefFactory(customer=customer, entity=Entity.ORDER, object_id=order.pk)
    ContactFactory(customer=other, first_name="Hidden", last_name="Stranger")
    return customer


def test_detail_query_count_does_not_grow_with_rows(
    login, rich_customer, django_assert_max_num_queries
):
    client = login("sales")
    # 1-4 session, user, user and group permissions · 5 customer · 6 field provenance ·
    # 7 invoice totals · 8 open tickets · 9 pipeline · 10 order totals ·
    # 11 the user's groups (header)
    with django_assert_max_num_queries(11):
        response = client.get(rich_customer.get_absolute_url())
    assert response.status_code == 200


def test_detail_loads_each_section_with_htmx(login, rich_customer):
    page = html(login("steward").get(rich_customer.get_absolute_url()))
    for name in SECTIONS:
        url = section_url(rich_customer, name)
        pattern = rf'<section class="card section" id="{name}"\s+hx-get="{url}" hx-trigger="load">'
        assert re.search(pattern, page), name


# --- Sections ------------------------------------------------------------------------

# Per section: a role that may see it, and its queries. After the four of every request
# (session, user, user permissions, group permissions), each section runs:
SECTION_QUERIES = {
    # 5 customer · 6 count · 7 page of contacts
    "contacts": ("sales", 7),
    # 5 customer · 6 count · 7 page of deals
    "deals": ("sales", 7),
    # 5 customer · 6 count · 7 page of orders with line count and lines total · 8 their lines
    "orders": ("sales", 8),
    # 5 customer · 6 count · 7 page of invoices
    "invoices": ("sales", 7),
    # 5 customer · 6 count · 7 page of payments joined to their invoices
    "payments": ("finance", 7),
    # 5 customer · 6 count · 7 open, resolved and average resolution · 8 page of tickets
    "tickets": ("sales", 8),
    # 5 customer · 6 count · 7 page of source records joined to their systems
    "sources": ("sales", 7),
    # 5 customer · 6 deals created · 7 deals closed · 8 orders placed · 9 invoices issued ·
    # 10 invoices due · 11 payments · 12 tickets opened · 13 tickets resolved
    "timeline": ("steward", 13),
}


@pytest.mark.parametrize("name", sorted(SECTION_QUERIES))
def test_section_query_count_does_not_grow_with_rows(
    login, rich_customer, django_assert_max_num_queries, name
):
    role, queries = SECTION_QUERIES[name]
    client = login(role)
    # The queries are named above, in SECTION_QUERIES.
    with django_assert_max_num_queries(queries):
        response = client.get(section_url(rich_customer, name), headers=HTMX)
    assert response.status_code == 200
    assert "<html" not in html(response)
    assert "Hidden Stranger" not in html(response)


@pytest.mark.parametrize("name", [n for n in SECTIONS if n != "timeline"])
def test_sections_page_by_twenty_five(login, rich_customer, name):
    client = login("steward")
    first = html(client.get(section_url(rich_customer, name), headers=HTMX))
    assert "Page 1 of 2" in first
    next_url = f"{section_url(rich_customer, name)}?page=2"
    assert f'hx-get="{next_url}" hx-target="closest .section"' in first
    assert client.get(next_url, headers=HTMX).status_code == 200


@pytest.mark.parametrize(
    ("name", "empty"),
    [
        ("contacts", "No contacts yet"),
        ("deals", "No deals yet"),
        ("orders", "No orders yet"),
        ("invoices", "No invoices yet"),
        ("payments", "No payments yet"),
        ("tickets", "No tickets yet"),
        ("sources", "No source records"),
        ("timeline", "Nothing has happened yet"),
    ],
)
def test_every_section_has_an_empty_state(login, name, empty):
    customer = CustomerFactory()
    response = login("steward").get(section_url(customer, name), headers=HTMX)
    assert empty in text(response)


@pytest.mark.parametrize("name", SECTIONS)
def test_a_section_opened_directly_is_a_whole_page(login, name):
    customer = CustomerFactory(name="Acme Corporation")
    response = login("steward").get(section_url(customer, name))
    page = html(response)
    assert "<html" in page and 'class="crumbs"' in page
    assert f'href="{customer.get_absolute_url()}">Acme Corporation</a>' in page


def test_soft_deleted_rows_are_hidden_everywhere(login):
    customer = CustomerFactory()
    gone = timezone.now()
    ContactFactory(customer=customer, first_name="Deleted", last_name="Contact", deleted_at=gone)
    DealFactory(customer=customer, name="Deleted deal", deleted_at=gone)
    OrderFactory(customer=customer, number="SO-DELETED", deleted_at=gone)
    InvoiceFactory(customer=customer, number="INV-DELETED", deleted_at=gone)
    PaymentFactory(customer=customer, method="deleted_method", deleted_at=gone)
    TicketFactory(customer=customer, subject="Deleted ticket", deleted_at=gone)
    client = login("steward")
    for name in SECTIONS:
        page = text(client.get(section_url(customer, name), headers=HTMX))
        assert "eleted" not in page, name


def test_deals_show_stage_amount_and_close_date(login):
    customer = CustomerFactory()
    DealFactory(
        customer=customer,
        name="Renewal 2027",
        stage=Deal.Stage.CLOSED_WON,
        amount=Decimal("78000"),
        close_date=dt.date(2026, 10, 3),
    )
    response = login("sales").get(section_url(customer, "deals"), headers=HTMX)
    assert "Renewal 2027 Closed won $78,000.00 Oct 3, 2026" in text(response)
    assert "badge-green" in html(response)


def test_orders_show_line_count_total_and_the_lines(login):
    customer = CustomerFactory()
    order = OrderFactory(customer=customer, number="SO-1001", total=Decimal("1300"))
    OrderLineFactory(order=order, sku="LIC", quantity=Decimal("2"), unit_price=Decimal("600"))
    OrderLineFactory(order=order, sku="SUP", quantity=Decimal("1"), unit_price=Decimal("100"))
    OrderFactory(customer=customer, number="SO-EMPTY")
    response = login("sales").get(section_url(customer, "orders"), headers=HTMX)
    page = text(response)
    assert "<details" in html(response)
    assert "SO-1001" in page and " 2 $1,300.00" in page
    assert "LIC" in page and "$1,200.00" in page
    assert "Lines total $1,300.00" in page


def test_invoices_show_payment_status_open_balance_and_days_overdue(login):
    customer = CustomerFactory()
    today = timezone.localdate()
    InvoiceFactory(customer=customer, number="I-PAID", amount_paid=Decimal("1000"))
    InvoiceFactory(customer=customer, number="I-PART", amount_paid=Decimal("400"))
    InvoiceFactory(customer=customer, number="I-OPEN")
    InvoiceFactory(customer=customer, number="I-LATE", due_date=today - dt.timedelta(days=12))
    InvoiceFactory(customer=customer, number="I-VOID", status=Invoice.Status.VOID)
    response = login("sales").get(section_url(customer, "invoices"), headers=HTMX)
    page = text(response)
    assert re.search(r"I-PAID .*? \$1,000\.00 — Paid", page)
    assert re.search(r"I-PART .*? \$600\.00 Partially paid", page)
    assert re.search(r"I-OPEN .*? \$1,000\.00 Open", page)
    assert re.search(r"I-LATE .*? \$1,000\.00 Overdue 12 days overdue", page)
    assert re.search(r"I-VOID .*? — Void", page)
    assert 'class="row-alert"' in html(response)


def test_payments_are_for_finance(login):
    customer = CustomerFactory()
    invoice = InvoiceFactory(customer=customer, number="INV-7")
    PaymentFactory(customer=customer, invoice=invoice, amount=Decimal("250"), method="card")
    response = login("finance").get(section_url(customer, "payments"), headers=HTMX)
    page = text(response)
    assert "$250.00 Card INV-7 Succeeded" in page


def test_tickets_show_resolution_times_and_their_average(login):
    customer = CustomerFactory()
    opened = timezone.now() - dt.timedelta(days=2)
    TicketFactory(
        customer=customer,
        subject="Login broken",
        opened_at=opened,
        resolved_at=opened + dt.timedelta(hours=3, minutes=20),
        status=Ticket.Status.SOLVED,
        priority=Ticket.Priority.URGENT,
    )
    TicketFactory(
        customer=customer,
        subject="Export fails",
        opened_at=opened,
        resolved_at=opened + dt.timedelta(hours=1, minutes=40),
        status=Ticket.Status.CLOSED,
    )
    TicketFactory(customer=customer, subject="Add seats")
    page = text(login("service").get(section_url(customer, "tickets"), headers=HTMX))
    assert "1 open" in page
    assert "Avg. resolution 2 h 30 min (2 resolved)" in page
    assert "Login broken via email Solved Urgent 2 days ago 3 h 20 min" in page
    assert "Add seats via email Open Normal 2 hours ago open" in page


def test_timeline_merges_events_newest_first(login):
    customer = CustomerFactory()
    now = timezone.now()
    today = timezone.localdate()
    TicketFactory(
        customer=customer,
        subject="Printer on fire",
        opened_at=now - dt.timedelta(hours=3),
        resolved_at=now - dt.timedelta(hours=1),
        status=Ticket.Status.SOLVED,
    )
    invoice = InvoiceFactory(
        customer=customer,
        number="INV-9",
        issue_date=today - dt.timedelta(days=40),
        due_date=today - dt.timedelta(days=10),
    )
    PaymentFactory(customer=customer, invoice=invoice, paid_at=now - dt.timedelta(days=5))
    OrderFactory(customer=customer, number="SO-9", order_date=today - dt.timedelta(days=41))
    DealFactory(
        customer=customer,
        name="Big deal",
        stage=Deal.Stage.CLOSED_WON,
        close_date=today - dt.timedelta(days=42),
    )
    page = text(login("steward").get(section_url(customer, "timeline"), headers=HTMX))
    order = [
        "Deal created: Big deal",  # created in the hub just now
        "Ticket resolved: Printer on fire",
        "Ticket opened: Printer on fire",
        "Payment received for invoice INV-9",
        "Invoice INV-9 due",
        "Invoice INV-9 issued",
        "Order SO-9 placed",
        "Deal closed won: Big deal",
    ]
    positions = [page.index(title) for title in order]
    assert positions == sorted(positions)


def test_timeline_only_has_events_the_user_may_see(login):
    customer = CustomerFactory()
    TicketFactory(customer=customer, subject="Secret ticket")
    PaymentFactory(customer=customer)
    InvoiceFactory(customer=customer, number="INV-SEEN")
    finance = text(login("finance").get(section_url(customer, "timeline"), headers=HTMX))
    assert "Secret ticket" not in finance
    assert "Payment received" in finance and "INV-SEEN" in finance


def test_sources_show_systems_ids_and_tombstones(login):
    customer = CustomerFactory()
    desk = SourceSystemFactory(name="desk", label="Help desk")
    ExternalRefFactory(customer=customer, external_id="A-1000")
    ExternalRefFactory(
        customer=customer,
        system=desk,
        entity=Entity.TICKET,
        external_id="T-7",
        tombstoned_at=timezone.make_aware(dt.datetime(2026, 3, 4, 12, 0)),
    )
    page = text(login("sales").get(section_url(customer, "sources"), headers=HTMX))
    assert "CRM Customer A-1000 2 hours ago Live" in page
    assert "Help desk Ticket T-7 2 hours ago Deleted Mar 4, 2026" in page


# --- Presentation helpers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "—"),
        (dt.timedelta(seconds=30), "< 1 min"),
        (dt.timedelta(minutes=45), "45 min"),
        (dt.timedelta(hours=3), "3 h"),
        (dt.timedelta(hours=3, minutes=20), "3 h 20 min"),
        (dt.timedelta(days=2, hours=4, minutes=10), "2 d 4 h"),
        (dt.timedelta(days=1), "1 d"),
    ],
)
def test_duration_is_short_and_readable(value, expected):
    assert concord.duration(value) == expected


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        (Decimal("1234.5"), "USD", "$1,234.50"),
        (Decimal("-20"), "EUR", "-€20.00"),
        (Decimal("99"), "sek", "99.00 SEK"),
        (0, "", "0.00"),
        (None, "USD", "—"),
    ],
)
def test_money(amount, currency, expected):
    assert concord.money(amount, currency) == expected
