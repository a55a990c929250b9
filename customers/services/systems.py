"""Source systems: the hub's names for the systems that hold parts of each customer."""

from __future__ import annotations

import re

from django.db import IntegrityError, transaction

from customers.errors import ApplicationError
from customers.models import SourceSystem, SystemKind

_KIND_HINTS = [
    (SystemKind.CRM, r"crm|hubspot|salesforce|pipedrive|dynamics|zoho"),
    (SystemKind.BILLING, r"erp|billing|stripe|chargebee|netsuite|sap|invoice|quickbooks|xero"),
    (SystemKind.HELPDESK, r"help|desk|zendesk|freshdesk|intercom|support|ticket"),
    (SystemKind.MARKETING, r"market|mailchimp|marketo|braze|klaviyo"),
    (SystemKind.PRODUCT, r"product|usage|app"),
]
_TRUST = {
    SystemKind.CRM: 70,
    SystemKind.BILLING: 80,
    SystemKind.HELPDESK: 50,
    SystemKind.MARKETING: 30,
    SystemKind.PRODUCT: 40,
}


def _label(name: str) -> str:
    """ "crm" → "CRM", "help_desk" → "Help Desk": short names are acronyms."""
    words = name.replace("-", " ").replace("_", " ").split()
    return " ".join(w.upper() if len(w) <= 3 else w.capitalize() for w in words)


def guess_kind(name: str) -> str:
    for kind, pattern in _KIND_HINTS:
        if re.search(pattern, name, re.IGNORECASE):
            return kind
    return SystemKind.OTHER


def system_get_or_create(*, name: str, kind: str | None = None) -> SourceSystem:
    """The system called ``name``, created (kind guessed from the name) if missing."""
    if not re.fullmatch(r"[-a-zA-Z0-9_]{1,64}", name):
        raise ApplicationError(
            f"{name!r} is not a valid system name (letters, digits, '-' and '_', at most 64)"
        )
    if kind is not None and kind not in SystemKind.values:
        raise ApplicationError(f"unknown system kind {kind!r}: use {', '.join(SystemKind.values)}")
    system = SourceSystem.objects.filter(name=name).first()
    if system is not None:
        return system
    kind = kind or guess_kind(name)
    try:
        with transaction.atomic():
            return SourceSystem.objects.create(
                name=name,
                label=_label(name),
                kind=kind,
                trust_rank=_TRUST.get(kind, 50),
            )
    except IntegrityError:
        return SourceSystem.objects.get(name=name)
