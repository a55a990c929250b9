"""Deterministic identity keys. Pure functions: values in, keys out.

Keys are listed strongest first; the resolver links on the first key type that points at
exactly one customer of the same kind.
"""

from __future__ import annotations

from typing import Any

from . import normalize

KEY_PRIORITY = ("tax_id", "national_id", "email", "phone", "domain")


def customer_kind(values: dict[str, Any]) -> str:
    if values.get("kind"):
        return values["kind"]
    personal = values.get("first_name") or values.get("last_name") or values.get("birth_date")
    corporate = values.get("legal_name") or values.get("website") or values.get("tax_id")
    return "person" if personal and not corporate else "organization"


def identity_keys(values: dict[str, Any], kind: str) -> list[tuple[str, str]]:
    """(key_type, normalized value) pairs for canonical customer values (already coerced)."""
    keys: list[tuple[str, str]] = []
    if values.get("tax_id"):
        keys.append(("tax_id", values["tax_id"]))
    if values.get("national_id") and kind == "person":
        keys.append(("national_id", values["national_id"]))
    if values.get("email"):
        keys.append(("email", normalize.email(values["email"])))
    if values.get("phone"):
        keys.append(("phone", values["phone"]))
    if kind == "organization":
        domains = {normalize.domain(values.get("website") or "")}
        domains.add(normalize.email_domain(values.get("email") or ""))
        for domain in sorted(d for d in domains if d and not normalize.is_free_mail(d)):
            keys.append(("domain", domain))
    return keys
