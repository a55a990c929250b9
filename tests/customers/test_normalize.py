import pytest

from customers.identity import normalize
from customers.identity.rules import customer_kind, identity_keys


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Info@Acme.COM", "info@acme.com"),
        ("Jane.Doe+news@gmail.com", "janedoe@gmail.com"),
        ("jane.doe@googlemail.com", "janedoe@gmail.com"),
        ("bob+crm@outlook.com", "bob@outlook.com"),
        ("first.last+tag@acme.com", "first.last+tag@acme.com"),  # company servers may not
    ],
)
def test_email(raw, expected):
    assert normalize.email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("(415) 555-0100", "US", "+14155550100"),
        ("+1 415 555 0100", "", "+14155550100"),
        ("0044 20 7946 0018", "", "+442079460018"),
        ("030 1234567", "DE", "+49301234567"),
        ("12", "US", ""),
        ("not a phone", "US", ""),
    ],
)
def test_phone(raw, country, expected):
    assert normalize.phone(raw, country) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("https://www.Acme.com/about", "acme.com"), ("acme.co.uk", "acme.co.uk"), ("localhost", "")],
)
def test_domain(raw, expected):
    assert normalize.domain(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("US", "US"),
        ("uk", "GB"),
        ("Deutschland", "DE"),
        ("United States", "US"),
        ("XX", ""),
        ("Atlantis", ""),
    ],
)
def test_country(raw, expected):
    assert normalize.country(raw) == expected


def test_tax_id_compacts_with_country_prefix():
    assert normalize.tax_id("DE 136.695.976", "DE") == "DE136695976"
    assert normalize.tax_id("de136695976", "DE") == "DE136695976"
    assert normalize.tax_id("12-3456789", "US") == "123456789"


def test_organization_name_drops_legal_suffixes():
    assert normalize.organization_name("The Acme & Sons, Inc.") == "acme and sons"
    assert normalize.organization_name("Müller GmbH") == "muller"


def test_free_mail_domain_is_never_an_organization_key():
    keys = identity_keys({"email": "owner@gmail.com", "website": "gmail.com"}, "organization")
    assert ("domain", "gmail.com") not in keys
    assert ("email", "owner@gmail.com") in keys
    org = identity_keys({"email": "ap@acme.com"}, "organization")
    assert ("domain", "acme.com") in org
    person = identity_keys({"email": "jane@acme.com"}, "person")
    assert all(t != "domain" for t, _ in person)


def test_customer_kind_inference():
    assert customer_kind({"first_name": "Jane", "last_name": "Doe"}) == "person"
    assert customer_kind({"name": "Acme", "website": "acme.com"}) == "organization"
    assert customer_kind({"kind": "person", "name": "X"}) == "person"
