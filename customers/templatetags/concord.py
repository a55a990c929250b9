"""Presentation helpers for Concord's templates: money, badges, durations, phone numbers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import phonenumbers
from django import template
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from customers.models import Invoice

register = template.Library()

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}

# Badge colour per status value; anything else is neutral grey.
TONES = {
    # good
    "paid": "green",
    "active": "green",
    "customer": "green",
    "closed_won": "green",
    "delivered": "green",
    "succeeded": "green",
    "solved": "green",
    "shipped": "green",
    # in progress
    "partially_paid": "amber",
    "pending": "amber",
    "negotiation": "amber",
    "proposal": "amber",
    "high": "amber",
    "opportunity": "amber",
    # needs attention
    "overdue": "red",
    "urgent": "red",
    "closed_lost": "red",
    "failed": "red",
    "churned": "red",
    "erased": "red",
    # open / new
    "open": "blue",
    "new": "blue",
    "confirmed": "blue",
    "qualified": "blue",
    "lead": "blue",
    "issued": "blue",
    "organization": "violet",
    "person": "teal",
}


@register.filter
def money(amount: Decimal | int | float | None, currency: str = "") -> str:
    """1234.5, "EUR" → "€1,234.50"; an unknown currency is written after the amount."""
    if amount is None or amount == "":
        return "—"
    value = Decimal(amount)
    sign = "-" if value < 0 else ""
    number = f"{abs(value):,.2f}"
    code = (currency or "").upper()
    if code in CURRENCY_SYMBOLS:
        return f"{sign}{CURRENCY_SYMBOLS[code]}{number}"
    return f"{sign}{number} {code}".strip()


@register.filter
def tone(value: str | None) -> str:
    """The badge colour class for a status value."""
    return f"badge-{TONES.get(str(value or ''), 'grey')}"


@register.filter
def label(value: str | None) -> str:
    """A stored choice value as words: "partially_paid" → "Partially paid"."""
    text = str(value or "").replace("_", " ").strip()
    return text[:1].upper() + text[1:]


@register.filter
def duration(value: dt.timedelta | None) -> str:
    """A resolution time, short: "3 h 20 min", "2 d 4 h", "45 min", "< 1 min"."""
    if value is None:
        return "—"
    minutes = int(value.total_seconds() // 60)
    if minutes < 1:
        return "< 1 min"
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"


@register.filter
def phone(value: str | None) -> str:
    """An E.164 number in international format for reading: "+1 415-555-0100"."""
    if not value:
        return ""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return value
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


@register.filter
def website_url(value: str | None) -> str:
    if not value:
        return ""
    return value if "://" in value else f"https://{value}"


@register.filter
def payment_status(invoice: Invoice, today: dt.date) -> str:
    return invoice.payment_status_on(today)


@register.filter
def days_overdue(invoice: Invoice, today: dt.date) -> int:
    if invoice.payment_status_on(today) != "overdue":
        return 0
    return (today - invoice.due_date).days


@register.filter
def role(user: AbstractBaseUser | AnonymousUser) -> str:
    """The user's role groups, for the header (one query)."""
    names = [g.name for g in user.groups.all()] if user.is_authenticated else []
    if not names and getattr(user, "is_superuser", False):
        return "admin"
    return ", ".join(names)
