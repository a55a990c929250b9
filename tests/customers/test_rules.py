"""Deterministic identity keys (customers/identity/rules.py): the "verified e-mail" rule.

A record whose source says its e-mail is not verified does not link on that e-mail; a
verified one does, and so does one whose source says nothing (most sources don't).
"""

from __future__ import annotations

import datetime as dt

import pytest

from customers.identity.rules import identity_keys
from customers.models import Customer, Entity, IdentityKey, SourceSystem
from customers.schema import coerce_fields
from customers.services import apply as apply_service
from customers.services.apply import ApplyItem, records_apply
from customers.services.merge import customer_fields

T1 = dt.datetime(2026, 1, 1, 10, tzinfo=dt.UTC)


# --- the rule itself (pure) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("verified", "expected"),
    [
        (None, [("email", "ann@acme.test"), ("phone", "+14155550100")]),
        (True, [("email", "ann@acme.test"), ("phone", "+14155550100")]),
        (False, [("phone", "+14155550100")]),
    ],
)
def test_an_unverified_email_is_no_key(verified, expected):
    values = {"email": "ann@acme.test", "phone": "+14155550100"}
    if verified is not None:
        values["email_verified"] = verified
    assert identity_keys(values, "person") == expected


def test_an_unverified_email_gives_an_organization_no_domain_but_its_website_does():
    values = {"email": "ap@globex.test", "website": "https://www.acme.test", "tax_id": "X1"}
    assert identity_keys(values | {"email_verified": False}, "organization") == [
        ("tax_id", "X1"),
        ("domain", "acme.test"),
    ]
    assert identity_keys(values | {"email_verified": True}, "organization") == [
        ("tax_id", "X1"),
        ("email", "ap@globex.test"),
        ("domain", "acme.test"),
        ("domain", "globex.test"),
    ]


def test_free_mail_rules_are_unchanged_for_verified_emails():
    values = {"email": "owner@gmail.com", "email_verified": True}
    assert identity_keys(values, "organization") == [("email", "owner@gmail.com")]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(True, True), (False, False), ("true", True), ("No", False), ("0", False), ("1", True)],
)
def test_email_verified_is_a_canonical_boolean(raw, expected):
    values, errors = coerce_fields(Entity.CUSTOMER, {"email": "a@b.test", "email_verified": raw})
    assert (values["email_verified"], errors) == (expected, [])


def test_email_verified_rejects_what_is_not_a_boolean():
    _, errors = coerce_fields(Entity.CUSTOMER, {"email_verified": "maybe"})
    assert errors == ["email_verified: 'maybe' is not true or false"]


def test_email_verified_is_an_input_not_a_field_a_steward_merges():
    assert "email_verified" not in customer_fields()
    assert "email" in customer_fields()


# --- the ingest path's deterministic stage ---------------------------------------------


@pytest.fixture
def existing(db) -> Customer:
    """Ann, known to the CRM, with her e-mail as an identity key."""
    crm = SourceSystem.objects.create(name="crm", kind="crm")
    records_apply(
        system=crm,
        entity=Entity.CUSTOMER,
        items=[ApplyItem("crm-1", T1, "h1", {"first_name": "Ann", "email": "ann@acme.test"})],
    )
    customer = Customer.objects.get()
    assert IdentityKey.objects.filter(key_type="email", customer=customer).exists()
    return customer


def resolve(values: dict) -> tuple[str, int | None]:
    """How the ingest path's resolver (xref, then keys, then the model) places one new
    record of another system: (matched_by, customer id)."""
    shop = SourceSystem.objects.get_or_create(name="shop", defaults={"kind": "commerce"})[0]
    batch = apply_service._Batch(
        system=shop, entity=Entity.CUSTOMER, items=[ApplyItem("shop-1", T1, "h2", values)]
    )
    batch.resolve_customers()
    target = batch.targets[0]
    return batch.matched_by[0], target.pk if target is not None else None


@pytest.mark.parametrize(
    ("verified", "links"), [(None, True), (True, True), (False, False)], ids=str
)
def test_the_ingest_path_links_on_an_email_unless_it_is_unverified(existing, verified, links):
    values = {"first_name": "Annie", "email": "ann@acme.test"}
    if verified is not None:
        values["email_verified"] = verified
    expected = ("email", existing.pk) if links else ("new", None)
    assert resolve(values) == expected


def test_an_unverified_record_applies_as_a_new_customer_without_an_email_key(existing):
    shop = SourceSystem.objects.create(name="shop", kind="commerce")
    values = {"first_name": "Annie", "email": "ann@acme.test", "email_verified": False}
    [result] = records_apply(
        system=shop, entity=Entity.CUSTOMER, items=[ApplyItem("shop-1", T1, "h2", values)]
    )
    assert (result.matched_by, result.customer_id != existing.pk) == ("new", True)
    assert not IdentityKey.objects.filter(customer_id=result.customer_id, key_type="email")
