import pytest

from customers.identity import normalize
from customers.identity.nicknames import CANONICAL, NICKNAMES


@pytest.mark.parametrize(
    ("short", "formal"),
    [
        ("Bob", "Robert"),
        ("Bill", "William"),
        ("Kate", "Katherine"),
        ("Liz", "Elizabeth"),
        ("Jim", "James"),
        ("Peggy", "Margaret"),
        ("Hans", "Johannes"),  # German
        ("Manu", "Emmanuel"),  # French
        ("Paco", "Francisco"),  # Spanish
        ("Dr. Bob", "ROBERT"),  # titles and case do not matter
    ],
)
def test_nicknames_match_their_formal_name(short, formal):
    assert normalize.is_nickname(short, formal)
    assert normalize.is_nickname(formal, short)


def test_two_short_forms_of_one_name_match_and_unrelated_names_do_not():
    assert normalize.is_nickname("Liz", "Beth")  # both Elizabeth
    assert not normalize.is_nickname("Tom", "Robert")
    assert not normalize.is_nickname("Robert", "Robert")  # equal is not a nickname
    assert normalize.name_forms("al") >= {"albert", "alan", "alfred", "alexander"}


def test_nickname_table_has_a_few_hundred_pairs():
    pairs = sum(len(shorts) for shorts in NICKNAMES.values())
    assert pairs >= 500
    assert all(name == normalize.text_key(name) for name in CANONICAL)


def test_swapped_first_and_last_names():
    assert normalize.names_swapped("Smith", "John", "John", "Smith")
    assert normalize.names_swapped("MÜLLER", "anna", "Anna", "Müller")
    assert not normalize.names_swapped("John", "Smith", "John", "Smith")
    assert not normalize.names_swapped("Lee", "Lee", "Lee", "Lee")


def test_given_and_family_name_keys():
    assert normalize.given_name("Dr. Anna-Lena") == "anna lena"
    assert normalize.family_name("Smith Jr.") == "smith"
    assert normalize.family_name("van der Meer") == "van der meer"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Acme Inc.", "ACME Incorporated"),
        ("Acme LLC", "Acme, L.L.C."),
        ("Acme Ltd", "Acme Limited"),
        ("Müller GmbH", "MÜLLER GMBH"),
        ("Société Générale S.A.", "Societe Generale SA"),
        ("The Acme Company", "Acme"),
        ("Smith & Sons", "Smith and Sons"),
        ("Acme Intl", "Acme International"),
        ("Acme Corp", "Acme Corporation"),
        ("Acme Mfg", "Acme Manufacturing"),
        ("Acme Bros.", "Acme Brothers"),
        ("Müller und Söhne KG", "Muller & Sohne"),
    ],
)
def test_organization_keys_ignore_legal_forms_and_abbreviations(a, b):
    assert normalize.organization_key(a) == normalize.organization_key(b)


def test_organization_name_keeps_its_behaviour():
    assert normalize.organization_name("The Acme & Sons, Inc.") == "acme and sons"
    assert normalize.organization_name("Müller GmbH") == "muller"


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("12 Main St Apt 4", "12 Main Street #4"),
        ("Apt 4, 12 Main St.", "12 MAIN STREET, Suite 4"),
        ("5 Oak Ave", "5 Oak Avenue"),
        ("7 Mill Rd", "7 Mill Road"),
        ("Hauptstr. 5", "Hauptstraße 5"),
        ("Hauptstrasse 5", "Hauptstraße 5"),
    ],
)
def test_address_lines_normalize_abbreviations_and_units(a, b):
    assert normalize.address_line(a) == normalize.address_line(b)


def test_address_unit_and_saint():
    assert normalize.address_line("12 Main St Apt 4") == "12 main street unit 4"
    assert normalize.address_unit("100 N Main St Suite 200") == "200"
    assert normalize.address_line("St Albans Rd 3") == "saint albans road 3"
    assert normalize.address_line("12 Main St") != normalize.address_line("14 Main St")


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("sw1a1aa", "GB", "SW1A 1AA"),
        ("SW1A 1AA", "GB", "SW1A 1AA"),
        ("m11ae", "GB", "M1 1AE"),
        ("1234ab", "NL", "1234 AB"),
        ("NL-1234 ab", "NL", "1234 AB"),
        ("12345-6789", "US", "12345"),
        ("123456789", "US", "12345"),
        ("2134", "US", "02134"),  # a spreadsheet dropped the zero
        ("k1a0b1", "CA", "K1A 0B1"),
        ("D-10115", "DE", "10115"),
        ("75001", "FR", "75001"),
        ("", "GB", ""),
    ],
)
def test_postal_codes_per_country(raw, country, expected):
    assert normalize.postal_code(raw, country) == expected


@pytest.mark.parametrize(
    "value",
    [
        "info@acme.com",
        "Sales@Acme.com",
        "noreply@shop.de",
        "no-reply@shop.de",
        "support@x.io",
        "admin@x.io",
        "office@x.io",
        "contact@x.io",
        "hello@x.io",
        "billing@x.io",
        "accounts@x.io",
        "info+crm@acme.com",
    ],
)
def test_role_emails(value):
    assert normalize.is_role_email(value)


def test_personal_emails_are_not_role_emails():
    assert not normalize.is_role_email("jane.doe@acme.com")
    assert not normalize.is_role_email("not an email")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("first_name", "n/a"),
        ("first_name", "NA"),
        ("last_name", "none"),
        ("first_name", "Test"),
        ("last_name", "unknown"),
        ("last_name", "-"),
        ("phone", "0000000000"),
        ("phone", "+1 000 000 0000"),
        ("phone", "123456789"),
        ("tax_id", "123456789"),
        ("national_id", "000-00-0000"),
        ("email", "test@test.com"),
        ("email", "n/a"),
        ("email", "noemail@example.com"),
        ("birth_date", "1900-01-01"),
    ],
)
def test_placeholders(field, value):
    assert normalize.is_placeholder(field, value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("first_name", "Anna"),
        ("phone", "+14155550100"),
        ("email", "jane@gmail.com"),
        ("tax_id", "DE136695976"),
        ("birth_date", "1985-03-04"),
        ("first_name", ""),  # empty is missing, not a placeholder
    ],
)
def test_real_values_are_not_placeholders(field, value):
    assert not normalize.is_placeholder(field, value)


def test_birth_dates():
    assert normalize.birth_date("1985-03-04") == "1985-03-04"
    assert normalize.birth_date("04.03.1985") == "1985-03-04"
    assert normalize.birth_date("1985-02-30") == ""
    assert normalize.city("St. Louis") == normalize.city("Saint Louis")
