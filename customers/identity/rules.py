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
    """(key_type, normalized value) pairs for canonical customer values (already coerced).

    An e-mail whose record says ``email_verified`` is false is no key, and neither is the
    domain taken from it: anyone can type any address into a sign-up form. It still goes
    to the probabilistic model as evidence. True or absent keeps it a key: most sources
    never say, and linking on the e-mail is what users expect of them.
    """
    keys: list[tuple[str, str]] = []
    email = "" if values.get("email_verified") is False else values.get("email") or ""
    if values.get("tax_id"):
        keys.append(("tax_id", values["tax_id"]))
    if values.get("national_id") and kind == "person":
        keys.append(("national_id", values["national_id"]))
    if email:
        keys.append(("email", normalize.email(email)))
    if values.get("phone"):
        keys.append(("phone", values["phone"]))
    if kind == "organization":
        domains = {normalize.domain(values.get("website") or "")}
        domains.add(normalize.email_domain(email))
        for domain in sorted(d for d in domains if d and not normalize.is_free_mail(d)):
            keys.append(("domain", domain))
    return keys
