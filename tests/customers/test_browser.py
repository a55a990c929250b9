"""The web UI in a real browser: Playwright driving Debian's Chromium against live_server.

Needs the ``playwright`` package (dev extras) and ``/usr/bin/chromium``
(``apt-get install -y chromium``); Playwright's own browser download is never used.
A missing Chromium fails the test: CI installs it, so a skip would hide a broken setup.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from customers.models import Ticket
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

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - reported by the fixture below
    sync_playwright = None

# Playwright's sync API runs an event loop in this thread; Django's ORM would refuse to
# run next to it. The test thread only writes fixtures before the browser acts.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path("/tmp/concord-360.png")
PASSWORD = "a-long-test-password"

pytestmark = [
    pytest.mark.browser,
    # live_server needs real commits; serialized_rollback restores the role groups that
    # the migration created, which the flush after each transactional test removes.
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


@pytest.fixture
def browser() -> Iterator[Browser]:
    if sync_playwright is None:
        pytest.fail("The playwright package is missing: pip install -e '.[dev]'")
    if not CHROMIUM.exists():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: run `apt-get install -y chromium` "
            "(CI installs it; `playwright install` is not used)."
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def user_in(role: str, first_name: str) -> User:
    user = User.objects.create_user(
        username=role, password=PASSWORD, first_name=first_name, last_name="Tester"
    )
    user.groups.add(Group.objects.get(name=role))
    return user


def log_in(page: Page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/customers/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/customers/$"))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{base_url}/customers/")


@pytest.fixture
def acme_pk(live_server) -> int:
    """Customers, and a sales and a finance user; the id of the customer to open.

    Test functions list it before ``browser``: the rows are written before Playwright
    starts, because the ORM inside Playwright's sync API would open a second database
    connection that outlives the test and blocks dropping the test database.
    """
    user_in("sales", "Jim")
    user_in("finance", "Angela")
    crm = SourceSystemFactory(name="crm", label="CRM", kind="crm")
    erp = SourceSystemFactory(name="erp", label="ERP", kind="billing")
    today = timezone.localdate()
    now = timezone.now()
    acme = CustomerFactory(
        name="Acme Corporation",
        legal_name="Acme Corporation Inc.",
        email="billing@acme.test",
        phone="+14155550100",
        website="acme.test",
        tax_id="US94-1234567",
        address_line1="1 Market Street",
        postal_code="94105",
        city="San Francisco",
        owner="Dana Scully",
    )
    for field in ("name", "email", "phone", "website", "owner", "lifecycle_stage", "kind"):
        FieldProvenanceFactory(object_id=acme.pk, field=field, system=crm, record_id=1201)
    for field in ("legal_name", "tax_id", "address_line1", "city"):
        FieldProvenanceFactory(
            object_id=acme.pk,
            field=field,
            system=erp,
            record_id=877,
            source_updated_at=now - dt.timedelta(days=3),
        )
    ExternalRefFactory(customer=acme, system=crm, external_id="A-1000")
    ExternalRefFactory(customer=acme, system=erp, external_id="C5000")
    ContactFactory(customer=acme, first_name="Ava", last_name="Chen", title="CFO")
    ContactFactory(customer=acme, first_name="Liam", last_name="Patel", title="Head of IT")
    DealFactory(customer=acme, name="Renewal 2027", amount=Decimal("78000"))
    order = OrderFactory(customer=acme, number="SO-1001", total=Decimal("1300"))
    OrderLineFactory(order=order, description="Annual licence", unit_price=Decimal("600"))
    OrderLineFactory(order=order, description="Onboarding", quantity=1, unit_price=Decimal("100"))
    paid = InvoiceFactory(
        customer=acme,
        number="INV-1001",
        amount=Decimal("1300"),
        amount_paid=Decimal("1300"),
        issue_date=today - dt.timedelta(days=60),
    )
    InvoiceFactory(
        customer=acme,
        number="INV-1002",
        amount=Decimal("2400"),
        issue_date=today - dt.timedelta(days=45),
        due_date=today - dt.timedelta(days=15),
    )
    InvoiceFactory(
        customer=acme, number="INV-1003", amount=Decimal("900"), amount_paid=Decimal("300")
    )
    PaymentFactory(customer=acme, invoice=paid, amount=Decimal("1300"), method="card")
    TicketFactory(customer=acme, subject="Invoice shows wrong VAT", priority="high")
    TicketFactory(
        customer=acme,
        subject="Cannot log in",
        status=Ticket.Status.SOLVED,
        opened_at=now - dt.timedelta(days=4),
        resolved_at=now - dt.timedelta(days=4) + dt.timedelta(hours=3, minutes=20),
    )
    CustomerFactory(name="Globex", email="hello@globex.test")
    CustomerFactory(name="Initech", email="info@initech.test")
    return acme.pk


def test_sales_searches_opens_a_customer_and_finance_sees_payments(acme_pk, browser, live_server):
    base = live_server.url

    page = browser.new_page(viewport={"width": 1400, "height": 900})
    log_in(page, base, "sales")
    expect(page.locator(".who-role")).to_have_text("sales")
    expect(page.locator("#results .row-link")).to_have_count(3)

    # Search as you type: htmx swaps the results in place, the page itself stays.
    page.evaluate("window.concordMarker = 'still the same page'")
    page.locator("#customer-search").press_sequentially("acme", delay=40)
    expect(page.locator("#results .row-link")).to_have_count(1)
    expect(page.locator("#results .row-link")).to_have_text("Acme Corporation")
    expect(page).to_have_url(f"{base}/customers/?q=acme")
    assert page.evaluate("window.concordMarker") == "still the same page"

    # A source system's id finds its customer too.
    page.locator("#customer-search").fill("C5000")
    expect(page.locator("#results .row-link")).to_have_text("Acme Corporation")

    page.locator("#results .row-link").click()
    expect(page).to_have_url(f"{base}/customers/{acme_pk}/")
    expect(page.locator("h1")).to_have_text("Acme Corporation")
    expect(page.locator(".record-sub .prov")).to_contain_text("from CRM")

    # The sections arrive as htmx partials.
    expect(page.locator("#contacts tbody tr")).to_have_count(2)
    expect(page.locator("#invoices tbody tr")).to_have_count(3)
    expect(page.locator("#invoices")).to_contain_text("15 days overdue")
    expect(page.locator("#tickets tbody tr")).to_have_count(2)
    expect(page.locator("#tickets")).to_contain_text("3 h 20 min")
    expect(page.locator("#timeline .event").first).to_be_visible()
    expect(page.locator("#sources tbody tr")).to_have_count(2)
    expect(page.locator("#payments")).to_have_count(0)  # not for sales
    expect(page.locator(".loading")).to_have_count(0)

    page.locator("#orders summary").click()
    expect(page.locator("#orders details table")).to_contain_text("Onboarding")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.click("text=Log out")
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))

    # Finance: payments, and no tickets.
    log_in(page, base, "finance")
    page.goto(f"{base}/customers/{acme_pk}/")
    expect(page.locator("#payments tbody tr")).to_have_count(1)
    expect(page.locator("#payments")).to_contain_text("$1,300.00")
    expect(page.locator("#tickets")).to_have_count(0)
    expect(page.locator(".kpi-alert")).to_contain_text("$2,400.00")
    expect(page.locator(".loading")).to_have_count(0)
    # Let every request finish so no server thread still holds a database connection
    # when the test database is dropped.
    page.wait_for_load_state("networkidle")
    page.close()
