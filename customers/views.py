"""The web UI: the customer list with search, and the customer 360 page with its sections.

Each section of the 360 page has its own URL. htmx loads it into the page (only the
``#section`` partial is rendered); opened directly, the same URL is a page of its own.
"""

from __future__ import annotations

from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers

from customers import selectors
from customers.models import Customer
from customers.permissions import SECTIONS, access_customer, check_web_access, visible_sections

CUSTOMERS_PER_PAGE = 50
ROWS_PER_SECTION = 25
TIMELINE_LIMIT = 100
MAX_QUERY_LENGTH = 200


def _is_partial(request: HttpRequest) -> bool:
    # A history restore after a cache miss wants the whole page, not a fragment.
    return bool(request.htmx) and not request.htmx.history_restore_request


def _paginate(request: HttpRequest, rows: QuerySet, per_page: int = ROWS_PER_SECTION) -> Page:
    return Paginator(rows, per_page).get_page(request.GET.get("page"))


def customer_list(request: HttpRequest) -> HttpResponse:
    check_web_access(request.user)
    query = request.GET.get("q", "").strip()[:MAX_QUERY_LENGTH]
    customers = selectors.customer_list(user=request.user, query=query)
    context = {"page": _paginate(request, customers, CUSTOMERS_PER_PAGE), "query": query}
    template_name = "customers/list.html"
    if _is_partial(request):
        template_name += "#results"
    response = render(request, template_name, context)
    # The same URL answers a page or a fragment: caches must tell them apart.
    patch_vary_headers(response, ["HX-Request"])
    return response


def customer_detail(request: HttpRequest, pk: int) -> HttpResponse:
    customer = access_customer(request.user, pk)
    if customer.merged_into_id:
        return redirect("customers:detail", customer.merged_into_id)
    context = {
        "customer": customer,
        "golden": selectors.customer_golden_record(customer=customer),
        "kpis": selectors.customer_kpis(customer=customer, user=request.user),
        "sections": visible_sections(request.user),
    }
    return render(request, "customers/detail.html", context)


def _section(
    request: HttpRequest, customer: Customer, name: str, context: dict[str, Any]
) -> HttpResponse:
    template_name = f"customers/sections/{name}.html"
    if _is_partial(request):
        template_name += "#section"
    context = {"customer": customer, "section": SECTIONS[name], **context}
    response = render(request, template_name, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def customer_contacts(request: HttpRequest, pk: int) -> HttpResponse:
    customer = access_customer(request.user, pk, SECTIONS["contacts"].perm)
    page = _paginate(request, selectors.contact_list(customer=customer))
    return _section(request, customer, "contacts", {"page": page})


def customer_deals(request: HttpRequest, pk: int) -> HttpResponse:
    customer = access_customer(request.user, pk, SECTIONS["deals"].perm)
    page = _paginate(request, selectors.deal_list(customer=customer))
    return _section(request, customer, "deals", {"page": page})


def customer_orders(request: HttpRequest, pk: int) -> HttpResponse:
    customer = access_customer(request.user, pk, SECTIONS["orders"].perm)
    page = _paginate(request, selectors.order_list(customer=customer))
    return _section(request, customer, "orders", {"page": page})


def customer_invoices(request: HttpRequest, pk: int) -> HttpResponse:
    customer = access_customer(request.user, pk, SECTIONS["invoices"].perm)
    page = _paginate(request, selectors.invoice_list(customer=customer))
    # One "today" for the whole table: payment status and days overdue depend on it.
    context = {"page": page, "today": timezone.localdate()}
    return _section(request, customer, "invoices", context)


def customer_payments(request: HttpRequest, pk: int) -> HttpResponse:
    customer = access_customer(request.user, pk, SECTIONS["payments"].perm)
    page = _paginate(request, selectors.payment_list(customer=customer))
    return _section(request, customer, "payments", {"page": page})


def customer_tickets(request: HttpRequest, pk: int) -> HttpResponse:
    customer = access_customer(request.user, pk, SECTIONS["tickets"].perm)
    page = _paginate(request, selectors.ticket_list(customer=customer))
    context = {"page": page, "stats": selectors.ticket_stats(customer=customer)}
    return _section(request, customer, "tickets", context)


def customer_sources(request: HttpRequest, pk: int) -> HttpResponse:
    customer = access_customer(request.user, pk, SECTIONS["sources"].perm)
    page = _paginate(request, selectors.external_ref_list(customer=customer))
    return _section(request, customer, "sources", {"page": page})


def customer_timeline(request: HttpRequest, pk: int) -> HttpResponse:
    customer = access_customer(request.user, pk, SECTIONS["timeline"].perm)
    events = selectors.customer_timeline(customer=customer, user=request.user, limit=TIMELINE_LIMIT)
    return _section(request, customer, "timeline", {"events": events, "limit": TIMELINE_LIMIT})
