"""Who may see what in the web UI: the access helper and the sections of the 360 page.

The web UI works with global model permissions given by the role groups (migration
0002). Partners have none of them: they use the REST API, where django-guardian
decides object by object.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import Http404

from customers.models import Customer

VIEW_CUSTOMER = "customers.view_customer"
NO_WEB_ACCESS = "The Concord web app is for staff roles; partners use the REST API."

User = AbstractBaseUser | AnonymousUser


@dataclass(frozen=True)
class Section:
    """One htmx-loaded section of the customer 360 page."""

    name: str
    title: str
    perm: str
    empty: str
    # "main" sections stack in the wide column; "side" ones sit beside them.
    column: str = "main"

    @property
    def url_name(self) -> str:
        return f"customers:{self.name}"


# In page order. Invoices need only "payment status": every rep may see whether a
# customer pays; the payments themselves are for finance.
SECTIONS: dict[str, Section] = {
    s.name: s
    for s in [
        Section("contacts", "Contacts", "customers.view_contact", "No contacts yet"),
        Section("deals", "Deals", "customers.view_deal", "No deals yet"),
        Section("orders", "Orders", "customers.view_order", "No orders yet"),
        Section("invoices", "Invoices", "customers.view_payment_status", "No invoices yet"),
        Section("payments", "Payments", "customers.view_payment", "No payments yet"),
        Section("tickets", "Tickets", "customers.view_ticket", "No tickets yet"),
        Section("sources", "Source records", "customers.view_externalref", "No source records"),
        Section("timeline", "Timeline", VIEW_CUSTOMER, "Nothing has happened yet", "side"),
    ]
}


def check_web_access(user: User) -> None:
    """Raise PermissionDenied unless ``user`` may use the web UI at all."""
    if not user.has_perm(VIEW_CUSTOMER):
        raise PermissionDenied(NO_WEB_ACCESS)


def access_customer(user: User, pk: int, perm: str = VIEW_CUSTOMER) -> Customer:
    """The customer ``pk`` for ``user``, who also needs ``perm`` (a global model permission).

    Web access is checked before the lookup, so a user without it learns nothing about
    which ids exist (403 for everything). Otherwise: 404 when the customer does not
    exist, 403 when it does but ``perm`` is missing. Merged customers are returned as
    they are; the caller decides whether to redirect to the survivor.
    """
    check_web_access(user)
    customer = Customer.objects.filter(pk=pk).first()
    if customer is None:
        raise Http404("No such customer")
    if not user.has_perm(perm):
        raise PermissionDenied("You may not see this part of the customer record.")
    return customer


def visible_sections(user: User) -> list[Section]:
    """The sections of the 360 page ``user`` may see, in page order."""
    return [s for s in SECTIONS.values() if user.has_perm(s.perm)]
