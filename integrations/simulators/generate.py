"""A small deterministic population, and each system's view of it, as rows for World.from_rows.

One seed gives one population of customers (companies with their people, and some
private persons). Each system sees the part of it that system would know, in its own
formats, with what real systems have between them: duplicates inside the CRM and the
help desk, names with and without legal suffix or accents, phones in different formats,
a stale phone or a different city in billing, e-mail case, cross-system ids on some
records only. Tax ids carry valid check digits; phones are in valid number ranges
(fictional ones where the country has them).
"""

from __future__ import annotations

import hashlib
import random
import time
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from .systems import random_token, weighted_choice
from .world import iso_ms

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

# -- reference data -----------------------------------------------------------------------

COUNTRIES: dict[str, dict[str, Any]] = {
    "DE": {
        "name": "Germany",
        "currency": "eur",
        "locale": "de",
        "tz": "Europe/Berlin",
        "tld": "de",
        "cc": "49",
        "suffixes": ["GmbH", "GmbH", "AG", "GmbH & Co. KG"],
        # city, postal code, phone area code
        "cities": [
            ("Berlin", "10115", "30"),
            ("Hamburg", "20095", "40"),
            ("München", "80331", "89"),
            ("Köln", "50667", "221"),
            ("Frankfurt am Main", "60311", "69"),
        ],
        "streets": ["Hauptstraße", "Bahnhofstraße", "Schillerstraße", "Lindenallee", "Gartenweg"],
        "street_first": False,
        "first": [
            "Anna",
            "Lukas",
            "Sophie",
            "Jonas",
            "Marie",
            "Felix",
            "Lea",
            "Paul",
            "Hannah",
            "Jürgen",
            "Katrin",
            "Sabine",
            "Thomas",
            "Stefan",
            "Claudia",
        ],
        "last": [
            "Müller",
            "Schmidt",
            "Schneider",
            "Fischer",
            "Weber",
            "Meyer",
            "Wagner",
            "Becker",
            "Schulz",
            "Hoffmann",
            "Schröder",
            "Koch",
            "Richter",
            "Wolf",
        ],
        "brands": ["Nordwind", "Alpen", "Rhein", "Blaustern", "Eichen", "Hansa", "Bergquell"],
        "free_mail": ["gmx.de", "web.de", "gmail.com", "t-online.de"],
    },
    "FR": {
        "name": "France",
        "currency": "eur",
        "locale": "fr",
        "tz": "Europe/Paris",
        "tld": "fr",
        "cc": "33",
        "suffixes": ["SAS", "SARL", "SA"],
        "cities": [
            ("Paris", "75008", "1"),
            ("Lyon", "69002", "4"),
            ("Marseille", "13001", "4"),
            ("Toulouse", "31000", "5"),
            ("Lille", "59000", "3"),
        ],
        "streets": [
            "rue de la République",
            "avenue Victor Hugo",
            "boulevard Voltaire",
            "rue du Commerce",
            "place Bellecour",
        ],
        "street_first": True,
        "first": [
            "Camille",
            "Louis",
            "Léa",
            "Hugo",
            "Chloé",
            "Lucas",
            "Manon",
            "Jules",
            "Inès",
            "Gabriel",
            "Élodie",
            "Julien",
            "Aurélie",
            "Mathieu",
        ],
        "last": [
            "Martin",
            "Bernard",
            "Dubois",
            "Thomas",
            "Robert",
            "Richard",
            "Petit",
            "Durand",
            "Leroy",
            "Moreau",
            "Lefèvre",
            "Girard",
            "Fournier",
            "Mercier",
        ],
        "brands": ["Azur", "Lumière", "Étoile", "Provence", "Atlantique", "Horizon"],
        "free_mail": ["orange.fr", "gmail.com", "free.fr", "laposte.net"],
    },
    "NL": {
        "name": "Netherlands",
        "currency": "eur",
        "locale": "nl",
        "tz": "Europe/Amsterdam",
        "tld": "nl",
        "cc": "31",
        "suffixes": ["B.V.", "B.V.", "N.V."],
        "cities": [
            ("Amsterdam", "1012 AB", "20"),
            ("Rotterdam", "3011 AA", "10"),
            ("Utrecht", "3511 AA", "30"),
            ("Eindhoven", "5611 AA", "40"),
        ],
        "streets": ["Keizersgracht", "Stationsweg", "Dorpsstraat", "Kerkstraat", "Marktplein"],
        "street_first": False,
        "first": [
            "Daan",
            "Emma",
            "Sem",
            "Julia",
            "Lucas",
            "Tess",
            "Finn",
            "Sophie",
            "Bram",
            "Anouk",
            "Jeroen",
            "Sanne",
            "Pieter",
            "Maartje",
        ],
        "last": [
            "de Jong",
            "Jansen",
            "de Vries",
            "van den Berg",
            "van Dijk",
            "Bakker",
            "Visser",
            "Smit",
            "Meijer",
            "de Boer",
            "Mulder",
            "de Groot",
            "Bos",
        ],
        "brands": ["Oranje", "Polder", "Noordzee", "Tulp", "Delta", "Molen"],
        "free_mail": ["ziggo.nl", "gmail.com", "hotmail.nl", "kpnmail.nl"],
    },
    "GB": {
        "name": "United Kingdom",
        "currency": "gbp",
        "locale": "en-GB",
        "tz": "Europe/London",
        "tld": "co.uk",
        "cc": "44",
        "suffixes": ["Ltd", "Ltd", "PLC", "LLP"],
        # Ofcom's ranges for drama: 020 7946 0xxx, 0161 496 0xxx, 0117 496 0xxx ...
        "cities": [
            ("London", "EC1A 1BB", "20"),
            ("Manchester", "M1 1AE", "161"),
            ("Bristol", "BS1 4DJ", "117"),
            ("Leeds", "LS1 4AP", "113"),
        ],
        "streets": ["High Street", "Station Road", "Church Lane", "Victoria Road", "Mill Lane"],
        "street_first": True,
        "first": [
            "Oliver",
            "Amelia",
            "George",
            "Isla",
            "Harry",
            "Ava",
            "Jack",
            "Emily",
            "Charlotte",
            "James",
            "William",
            "Grace",
            "Thomas",
            "Sophie",
        ],
        "last": [
            "Smith",
            "Jones",
            "Taylor",
            "Brown",
            "Williams",
            "Wilson",
            "Johnson",
            "Davies",
            "Robinson",
            "Wright",
            "Thompson",
            "Evans",
            "Walker",
            "O'Brien",
        ],
        "brands": ["Thames", "Crown", "Albion", "Pennine", "Harbour", "Oakwood"],
        "free_mail": ["gmail.com", "hotmail.co.uk", "btinternet.com", "outlook.com"],
    },
    "US": {
        "name": "United States",
        "currency": "usd",
        "locale": "en-US",
        "tz": "America/New_York",
        "tld": "com",
        "cc": "1",
        "suffixes": ["Inc.", "LLC", "Corp."],
        "cities": [
            ("New York", "10001", "212"),
            ("San Francisco", "94105", "415"),
            ("Chicago", "60601", "312"),
            ("Austin", "78701", "512"),
            ("Boston", "02108", "617"),
        ],
        "streets": ["Main Street", "Market Street", "Broadway", "Elm Street", "Oak Avenue"],
        "street_first": True,
        "first": [
            "Liam",
            "Olivia",
            "Noah",
            "Emma",
            "James",
            "Ava",
            "Ethan",
            "Mia",
            "Michael",
            "Harper",
            "Daniel",
            "Madison",
            "Jacob",
            "Ashley",
        ],
        "last": [
            "Johnson",
            "Williams",
            "Brown",
            "Jones",
            "Garcia",
            "Miller",
            "Davis",
            "Rodriguez",
            "Martinez",
            "Lopez",
            "Wilson",
            "Anderson",
            "Nguyen",
            "Clark",
        ],
        "brands": ["Summit", "Liberty", "Pioneer", "Cascade", "Redwood", "Keystone"],
        "free_mail": ["gmail.com", "yahoo.com", "outlook.com", "icloud.com"],
    },
}
COUNTRY_WEIGHTS = [("DE", 3), ("FR", 2), ("NL", 1.5), ("GB", 2), ("US", 2.5)]

# slug, HubSpot industry, word per country
INDUSTRIES = [
    (
        "logistics",
        "LOGISTICS_AND_SUPPLY_CHAIN",
        {
            "DE": "Logistik",
            "FR": "Logistique",
            "NL": "Logistiek",
            "GB": "Logistics",
            "US": "Logistics",
        },
    ),
    (
        "software",
        "COMPUTER_SOFTWARE",
        {
            "DE": "Software",
            "FR": "Informatique",
            "NL": "Software",
            "GB": "Software",
            "US": "Software",
        },
    ),
    (
        "machinery",
        "MACHINERY",
        {
            "DE": "Maschinenbau",
            "FR": "Industrie",
            "NL": "Techniek",
            "GB": "Engineering",
            "US": "Manufacturing",
        },
    ),
    (
        "medical",
        "MEDICAL_DEVICES",
        {
            "DE": "Medizintechnik",
            "FR": "Médical",
            "NL": "Medische Techniek",
            "GB": "Medical",
            "US": "Health",
        },
    ),
    (
        "food",
        "FOOD_PRODUCTION",
        {"DE": "Lebensmittel", "FR": "Alimentaire", "NL": "Voeding", "GB": "Foods", "US": "Foods"},
    ),
    (
        "construction",
        "CONSTRUCTION",
        {"DE": "Bau", "FR": "Bâtiment", "NL": "Bouw", "GB": "Construction", "US": "Builders"},
    ),
    (
        "consulting",
        "MANAGEMENT_CONSULTING",
        {"DE": "Beratung", "FR": "Conseil", "NL": "Advies", "GB": "Consulting", "US": "Consulting"},
    ),
    (
        "energy",
        "RENEWABLES_ENVIRONMENT",
        {"DE": "Energie", "FR": "Énergie", "NL": "Energie", "GB": "Energy", "US": "Energy"},
    ),
]
JOB_TITLES = [
    "CEO",
    "CFO",
    "Head of Procurement",
    "Office Manager",
    "IT Director",
    "Operations Manager",
    "Accounts Payable",
    "Purchasing Manager",
    "Managing Director",
    "Finance Manager",
]
PRODUCTS = [
    ("Annual licence", 1_200_000),
    ("Onboarding package", 350_000),
    ("Support renewal", 480_000),
    ("Fleet expansion", 2_400_000),
    ("Pilot project", 150_000),
    ("Enterprise upgrade", 3_600_000),
    ("Training days", 90_000),
    ("Maintenance contract", 720_000),
]
HUBSPOT_OWNERS = ["71234501", "71234502", "71234503", "71234504"]
# A reseller that owns a few accounts in the CRM: the demo shares them with its partner
# user (customers.management.commands.demo_users.PARTNER_OWNER is the same name).
PARTNER_OWNER_ID = "71234599"
PARTNER_OWNER = "Northwind Partners (Benelux)"
OWNER_NAMES = {
    "71234501": "Lucía Romero",
    "71234502": "Daniel Becker",
    "71234503": "Priya Nair",
    "71234504": "Tom Fischer",
    PARTNER_OWNER_ID: PARTNER_OWNER,
}
NICKNAMES = {
    "Thomas": "Tom",
    "William": "Bill",
    "James": "Jim",
    "Michael": "Mike",
    "Daniel": "Dan",
    "Jacob": "Jake",
    "Oliver": "Ollie",
    "Charlotte": "Lottie",
    "Katrin": "Kati",
    "Stefan": "Steff",
    "Jürgen": "Jürg",
    "Gabriel": "Gabe",
    "Mathieu": "Matt",
    "Pieter": "Piet",
    "Lukas": "Luke",
    "Julien": "Jules",
}
TICKET_SUBJECTS = [
    ("question", "Invoice shows the wrong VAT number"),
    ("incident", "Cannot log in to the customer portal"),
    ("incident", "Delivery is delayed"),
    ("question", "Please send a copy of our last invoice"),
    ("task", "Change of billing address"),
    ("incident", "Product arrived damaged"),
    ("question", "Question about our contract renewal"),
    ("incident", "Password reset e-mail never arrives"),
    ("problem", "Integration with our ERP fails every night"),
    ("question", "Credit note is missing"),
    ("task", "Upgrade to the enterprise plan"),
    ("question", "Payment reminder received although we paid"),
    ("task", "Please add a new user to our account"),
    ("question", "How do we export our usage data?"),
    ("incident", "API answers 429 too often"),
    ("task", "Onboarding session request"),
]
CHANNELS = [("email", 5), ("web", 4), ("api", 1), ("chat", 2), ("voice", 1)]
AGENTS = [("Lena", "Weber"), ("Marco", "Rossi"), ("Priya", "Shah"), ("Tom", "Becker")]
AGENT_DOMAIN = "support.example.com"

_FOLD = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "ß": "ss"})


def ascii_fold(text: str) -> str:
    """Müller -> Mueller, Lefèvre -> Lefevre: how systems without accents store names."""
    text = text.translate(_FOLD)
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def slug(text: str) -> str:
    out = []
    for ch in ascii_fold(text).lower():
        if ch.isalnum():
            out.append(ch)
        elif out and out[-1] != "-":
            out.append("-")
    return "".join(out).strip("-")


# -- phones and tax ids -------------------------------------------------------------------


@dataclass(frozen=True)
class Phone:
    country: str
    area: str
    number: str  # subscriber digits

    @property
    def cc(self) -> str:
        return COUNTRIES[self.country]["cc"]

    @property
    def e164(self) -> str:
        return f"+{self.cc}{self.area}{self.number}"

    def _groups(self) -> str:
        n = self.number
        if self.country == "FR":
            return " ".join(n[i : i + 2] for i in range(0, len(n), 2))
        if self.country == "NL":
            return f"{n[:3]} {n[3:]}"
        if self.country == "GB":
            return f"{n[:-4]} {n[-4:]}"
        if self.country == "US":
            return f"{n[:3]}-{n[3:]}"
        return n

    def format(self, style: str = "international") -> str:
        """``e164`` (+4930123456), ``international`` (+49 30 123456) or ``national``."""
        if style == "e164":
            return self.e164
        if style == "national":
            if self.country == "US":
                return f"({self.area}) {self._groups()}"
            return f"0{self.area} {self._groups()}"
        if self.country == "US":
            return f"+1 {self.area}-{self._groups()}"
        return f"+{self.cc} {self.area} {self._groups()}"


def new_phone(
    rng: random.Random, country: str, area: str | None = None, taken: set[str] | None = None
) -> Phone:
    """A phone number in a valid range; with ``taken``, one no other party has.

    The UK's ranges for drama hold 1,000 numbers per area: once they are crowded, UK
    numbers come from the wider ordinary ranges."""
    for attempt in range(10_000):
        phone = _draw_phone(rng, country, area, wide=attempt >= 50)
        if taken is None or f"phone:{phone.e164}" not in taken:
            if taken is not None:
                taken.add(f"phone:{phone.e164}")
            return phone
    raise RuntimeError(f"no free phone number left in {country} {area or ''}")


def _draw_phone(rng: random.Random, country: str, area: str | None, wide: bool) -> Phone:
    info = COUNTRIES[country]
    area = area or rng.choice(info["cities"])[2]
    digits = "0123456789"
    if country == "DE":
        number = str(rng.randint(2, 9)) + "".join(
            rng.choice(digits) for _ in range(6 + rng.randint(0, 1))
        )
    elif country == "FR":
        number = str(rng.randint(1, 8)) + "".join(rng.choice(digits) for _ in range(7))
    elif country == "NL":
        number = str(rng.randint(2, 9)) + "".join(rng.choice(digits) for _ in range(6))
    elif country == "GB" and wide:
        number = (rng.choice("378") if area == "20" else rng.choice("234")) + "".join(
            rng.choice(digits) for _ in range(7 if area == "20" else 6)
        )
    elif country == "GB":
        tail = f"{rng.randint(0, 999):03d}"
        number = ("79460" if area == "20" else "4960") + tail
    else:
        while True:
            exchange = f"{rng.randint(2, 9)}{rng.randint(0, 9)}{rng.randint(0, 9)}"
            if exchange[1:] != "11" and exchange != "555":
                break
        number = exchange + f"{rng.randint(0, 9999):04d}"
    return Phone(country, area, number)


def _mod11_10(digits: str) -> str:
    """ISO 7064 MOD 11,10 check digit (German USt-IdNr.)."""
    product = 10
    for ch in digits:
        total = (int(ch) + product) % 10 or 10
        product = (2 * total) % 11
    return str((11 - product) % 10)


def _luhn(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def new_tax_id(rng: random.Random, country: str) -> tuple[str, str]:
    """(Stripe tax id type, value) with valid check digits."""
    digits = "0123456789"
    if country == "DE":
        body = str(rng.randint(1, 9)) + "".join(rng.choice(digits) for _ in range(7))
        return "eu_vat", f"DE{body}{_mod11_10(body)}"
    if country == "FR":
        siren = str(rng.randint(1, 9)) + "".join(rng.choice(digits) for _ in range(7))
        siren += _luhn(siren)
        return "eu_vat", f"FR{(12 + 3 * (int(siren) % 97)) % 97:02d}{siren}"
    if country == "NL":
        while True:
            body = str(rng.randint(1, 9)) + "".join(rng.choice(digits) for _ in range(7))
            check = sum(int(c) * (9 - i) for i, c in enumerate(body)) % 11
            if check < 10:
                return "eu_vat", f"NL{body}{check}B01"
    if country == "GB":
        body = str(rng.randint(1, 9)) + "".join(rng.choice(digits) for _ in range(6))
        total = sum(int(c) * w for c, w in zip(body, range(8, 1, -1), strict=True))
        return "gb_vat", f"GB{body}{(-total) % 97:02d}"
    prefix = rng.choice(["12", "20", "27", "30", "45", "46", "81", "82", "94"])
    return "us_ein", f"{prefix}-{rng.randint(0, 9_999_999):07d}"


# -- people and companies -----------------------------------------------------------------


@dataclass
class Person:
    first: str
    last: str
    email: str
    phone: Phone
    title: str

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


def new_person(
    rng: random.Random, country: str, domain: str | None, taken: set[str] | None = None
) -> Person:
    info = COUNTRIES[country]
    first, last = rng.choice(info["first"]), rng.choice(info["last"])
    f, lst = slug(first).replace("-", ""), slug(last).replace("-", "")
    if domain is None or rng.random() < 0.08:  # some people use private addresses at work
        local = weighted_choice(rng, [(f"{f}.{lst}", 3), (f"{f}{lst}{rng.randint(1, 99)}", 2)])
        host = rng.choice(info["free_mail"])
    else:
        local = weighted_choice(rng, [(f"{f}.{lst}", 5), (f"{f[0]}.{lst}", 2), (f, 1)])
        host = domain
    email = unique_email(local, host, taken)
    return Person(first, last, email, new_phone(rng, country, None, taken), rng.choice(JOB_TITLES))


def email_key(email: str) -> str:
    """An address as loosely as any system compares it (case, dots, +tags): two parties
    never share one, so no identity key of one real customer points at another."""
    local, _, host = email.lower().partition("@")
    return f"email:{local.split('+')[0].replace('.', '')}@{host}"


def unique_email(local: str, host: str, taken: set[str] | None) -> str:
    """``local@host``, numbered when taken (``taken`` holds addresses and their keys)."""
    email, n = f"{local}@{host}", 2
    while taken is not None and (email in taken or email_key(email) in taken):
        email, n = f"{local}{n}@{host}", n + 1
    if taken is not None:
        taken.update((email, email_key(email)))
    return email


def address_line(rng: random.Random, country: str) -> str:
    info = COUNTRIES[country]
    street, number = rng.choice(info["streets"]), rng.randint(1, 180)
    return f"{number} {street}" if info["street_first"] else f"{street} {number}"


@dataclass
class Party:
    """One real customer as the world knows it."""

    index: int
    kind: str  # organization | person
    country: str
    brand: str  # what people call it
    legal_name: str
    domain: str | None
    street: str
    city: str
    postcode: str
    phone: Phone
    tax: tuple[str, str] | None
    industry: int
    created: int  # ms
    people: list[Person]
    in_crm: bool
    in_erp: bool
    in_helpdesk: bool
    planted: set[str] = field(default_factory=set)
    crm_id: str | None = None
    crm_contact_ids: list[str] = field(default_factory=list)
    erp_id: str | None = None
    hd_org_id: str | None = None
    stale_phone: Phone | None = None  # what billing still has when "erp_stale_phone"
    other_city: tuple[str, str, str] | None = None  # billing address when "erp_other_city"
    owner_id: str | None = None  # the CRM owner (the partner's id in its territory)
    # Ids the systems gave this party's customer records (and planted second ones).
    crm_duplicate_id: str | None = None
    erp_duplicate_id: str | None = None
    hd_user_ids: list[str] = field(default_factory=list)
    hd_duplicate_id: str | None = None
    conflict_phone: Phone | None = None  # the help desk's other number ("hd_new_phone")


def new_company_name(rng: random.Random, country: str, industry: int) -> tuple[str, str]:
    """(brand, legal name)."""
    info = COUNTRIES[country]
    word = INDUSTRIES[industry][2][country]
    pattern = rng.randint(0, 2)
    if pattern == 0:
        brand = f"{rng.choice(info['last'])} {word}"
    elif pattern == 1:
        brand = f"{rng.choice(info['brands'])} {word}"
    else:
        a, b = rng.sample(info["last"], 2)
        brand = f"{a} & {b}"
    return brand, f"{brand} {rng.choice(info['suffixes'])}"


def population(customers: int, seed: int, now: int, taken: set[str] | None = None) -> list[Party]:
    """The same list of parties for every system generated with this seed.

    ``taken`` collects every e-mail (and its loose key), phone and tax id handed out, so
    that no two parties share an identity key and later draws stay unique too.
    """
    rng = random.Random(f"{seed}:population")
    parties: list[Party] = []
    domains: set[str] = set()
    taken = set() if taken is None else taken
    for index in range(max(0, customers)):
        country = weighted_choice(rng, COUNTRY_WEIGHTS)
        info = COUNTRIES[country]
        city, postcode, area = rng.choice(info["cities"])
        created = now - int(rng.uniform(20, 900) * DAY_MS)
        industry = rng.randrange(len(INDUSTRIES))
        if rng.random() < 0.35:
            person = new_person(rng, country, None, taken)
            party = Party(
                index=index,
                kind="person",
                country=country,
                brand=person.name,
                legal_name=person.name,
                domain=None,
                street=address_line(rng, country),
                city=city,
                postcode=postcode,
                phone=person.phone,
                tax=None,
                industry=industry,
                created=created,
                people=[person],
                in_crm=rng.random() < 0.7,
                in_erp=True,
                in_helpdesk=rng.random() < 0.5,
            )
        else:
            brand, legal = new_company_name(rng, country, industry)
            domain = f"{slug(brand)}.{info['tld']}"
            n = 2
            while domain in domains:
                domain = f"{slug(brand)}{n}.{info['tld']}"
                n += 1
            domains.add(domain)
            people = [new_person(rng, country, domain, taken) for _ in range(rng.randint(1, 4))]
            paying = rng.random() < 0.75
            party = Party(
                index=index,
                kind="organization",
                country=country,
                brand=brand,
                legal_name=legal,
                domain=domain,
                street=address_line(rng, country),
                city=city,
                postcode=postcode,
                phone=new_phone(rng, country, area, taken),
                tax=_unique_tax_id(rng, country, taken),
                industry=industry,
                created=created,
                people=people,
                in_crm=rng.random() < 0.95,
                in_erp=paying,
                in_helpdesk=rng.random() < (0.8 if paying else 0.3),
            )
        for name, chance in (
            ("erp_stale_phone", 0.12),
            ("erp_other_city", 0.05),
            ("erp_no_tax_id", 0.15),
            ("hd_email_case", 0.1),
            ("erp_crm_ref", 0.5),
            ("hd_crm_ref", 0.3),
            ("crm_legal_name", 0.35),
        ):
            if rng.random() < chance:
                party.planted.add(name)
        accented = any(ch != ascii_fold(ch) for ch in party.brand)
        if party.kind == "organization" and accented and rng.random() < 0.6:
            party.planted.add("hd_ascii_name")
        party.stale_phone = new_phone(rng, country, area, taken)
        party.other_city = rng.choice(info["cities"])
        parties.append(party)
    _plant(parties, random.Random(f"{seed}:planted"), taken)
    _assign_ids(parties, seed)
    return parties


def _unique_tax_id(rng: random.Random, country: str, taken: set[str]) -> tuple[str, str]:
    while True:
        tax = new_tax_id(rng, country)
        if f"tax:{tax[1]}" not in taken:
            taken.add(f"tax:{tax[1]}")
            return tax


def _plant(parties: list[Party], rng: random.Random, taken: set[str]) -> None:
    """Problems planted a fixed number of times (1 % of the parties each, at least
    once where the world has a candidate), so even a small world shows every one:

    * ``crm_duplicate``: the company entered again in the CRM (same web domain);
    * ``erp_duplicate``: a second billing account, the VAT id typed differently;
    * ``erp_nickname``: a person billing knows under a nickname, another e-mail, no phone
      (no deterministic key links it: for the probabilistic matcher and the steward);
    * ``hd_duplicate_user``: a person who signed up twice in the help desk;
    * ``hd_new_phone``: the help desk has another phone than the CRM (the CRM owns it);
    * ``crm_legal_name_conflict``: the CRM's legal name disagrees with billing's;
    * the partner territory: a few companies, Dutch first, owned by the reseller.
    """
    k = max(1, round(len(parties) / 100))

    def pick(name: str, eligible: list[Party]) -> None:
        for party in rng.sample(eligible, min(k, len(eligible))):
            party.planted.add(name)

    companies = [p for p in parties if p.kind == "organization" and p.in_crm]
    persons = [p for p in parties if p.kind == "person"]
    pick("crm_duplicate", companies)
    pick(
        "erp_duplicate",
        [
            p
            for p in parties
            if p.kind == "organization" and p.in_erp and p.tax and "erp_no_tax_id" not in p.planted
        ],
    )
    pick("erp_nickname", [p for p in persons if p.in_crm and p.in_erp])
    pick("hd_duplicate_user", [p for p in persons if p.in_helpdesk])
    pick("hd_new_phone", [p for p in persons if p.in_crm and p.in_helpdesk])
    pick("crm_legal_name_conflict", [p for p in companies if p.in_erp])
    territory = sorted(companies, key=lambda p: (p.country != "NL", p.index))
    for party in territory[: max(1, round(len(parties) / 80))]:
        party.owner_id = PARTNER_OWNER_ID
    for party in parties:
        if "hd_new_phone" in party.planted:
            party.conflict_phone = new_phone(rng, party.country, None, taken)


def stripe_id(prefix: str, *parts: Any) -> str:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return prefix + "".join(alphabet[b % 62] for b in digest[:14])


def _assign_ids(parties: list[Party], seed: int) -> None:
    company, contact, org = 10_000_000_000, 50_000, 360_100_000_000
    for party in parties:
        if party.in_crm:
            if party.kind == "organization":
                company += 1
                party.crm_id = str(company)
            for _ in party.people:
                contact += 1
                party.crm_contact_ids.append(str(contact))
            if party.kind == "person":
                party.crm_id = party.crm_contact_ids[0]
        if party.in_erp:
            party.erp_id = stripe_id("cus_", seed, party.index)
        if party.in_helpdesk and party.kind == "organization":
            org += 1
            party.hd_org_id = str(org)


@dataclass
class Generated:
    """One seed's world: each system's rows, and the parties they describe (the ground
    truth: which record belongs to which real customer, and what was planted)."""

    rows: dict[str, dict[str, list[dict[str, Any]]]]
    parties: list[Party]
    now: int  # ms; every generated time is at or before it


def generate(*, customers: int = 30, seed: int = 0, now: float | None = None) -> Generated:
    """The three systems' rows of the population of ``seed``, as of ``now`` (unix s)."""
    now_ms = int((now if now is not None else time.time()) * 1000)
    taken: set[str] = set()
    parties = population(customers, seed, now_ms, taken)
    rows = {
        system: build(parties, random.Random(f"{seed}:{system}:rows"), now_ms, seed, taken)
        for system, build in (("crm", crm_rows), ("erp", erp_rows), ("helpdesk", helpdesk_rows))
    }
    return Generated(rows, parties, now_ms)


def generate_rows(
    system: str, *, customers: int = 30, seed: int = 0, now: float | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Rows for World.from_rows: one system's view of the population of ``seed``."""
    from .systems import canonical_system

    return generate(customers=customers, seed=seed, now=now).rows[canonical_system(system)]


def _between(rng: random.Random, start: int, end: int) -> int:
    return start if end <= start else rng.randint(start, end)


# -- CRM (HubSpot) ------------------------------------------------------------------------


def crm_rows(
    parties: list[Party], rng: random.Random, now: int, seed: int, taken: set[str] | None = None
) -> dict[str, list]:
    companies: list[dict] = []
    contacts: list[dict] = []
    deals: list[dict] = []
    deal_id = 7_000_000_000
    recent = now - HOUR_MS
    for party in parties:
        if not party.in_crm:
            continue
        info = COUNTRIES[party.country]
        if party.kind == "organization":
            updated = _between(rng, party.created, recent)
            won = party.in_erp
            companies.append(
                {
                    "id": party.crm_id,
                    "name": party.legal_name if "crm_legal_name" in party.planted else party.brand,
                    "domain": party.domain,
                    "website": f"https://www.{party.domain}",
                    "phone": party.phone.format("international"),
                    "address": party.street,
                    "city": party.city,
                    "zip": party.postcode,
                    "country": info["name"],
                    "industry": INDUSTRIES[party.industry][1],
                    "lifecyclestage": "customer"
                    if won
                    else rng.choice(
                        ["lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity"]
                    ),
                    "numberofemployees": str(rng.choice([8, 25, 60, 140, 420, 1200])),
                    "annualrevenue": str(rng.choice([500_000, 2_000_000, 9_000_000, 40_000_000])),
                    "vat_number": party.tax[1] if party.tax and rng.random() < 0.5 else None,
                    "legal_name": _other_legal_name(rng, party)
                    if "crm_legal_name_conflict" in party.planted
                    else None,
                    "hubspot_owner_id": party.owner_id or rng.choice(HUBSPOT_OWNERS),
                    "created_at": party.created,
                    "updated_at": updated,
                }
            )
            for _ in range(weighted_choice(rng, [(0, 2), (1, 4), (2, 3), (3, 1)]) + int(won)):
                deal_id += 1
                deals.append(_deal_row(rng, party, str(deal_id), now, won=won))
                won = False  # one guaranteed closed-won deal for paying customers
        for person, cid in zip(party.people, party.crm_contact_ids, strict=True):
            created = _between(rng, party.created, recent)
            contacts.append(
                {
                    "id": cid,
                    "firstname": person.first,
                    "lastname": person.last,
                    "email": person.email,
                    "phone": person.phone.format(rng.choice(["international", "national"])),
                    "jobtitle": person.title if party.kind == "organization" else None,
                    "company": party.brand if party.kind == "organization" else None,
                    "associatedcompanyid": party.crm_id if party.kind == "organization" else None,
                    "lifecyclestage": "customer" if party.in_erp else "lead",
                    "country": info["name"],
                    "created_at": created,
                    "updated_at": _between(rng, created, recent),
                }
                | (
                    {
                        "address": party.street,
                        "city": party.city,
                        "zip": party.postcode,
                        "hubspot_owner_id": rng.choice(HUBSPOT_OWNERS),
                    }
                    if party.kind == "person"
                    else {}
                )
            )
    # Planted duplicates: the same company entered again by another rep, later.
    company_id = max([int(c["id"]) for c in companies] or [10_000_000_000])
    contact_id = max([int(c["id"]) for c in contacts] or [50_000])
    for party in parties:
        if not (party.in_crm and party.kind == "organization" and "crm_duplicate" in party.planted):
            continue
        company_id += 1
        party.crm_duplicate_id = str(company_id)
        created = _between(rng, party.created + DAY_MS, recent)
        name = party.brand.upper() if rng.random() < 0.5 else party.legal_name
        companies.append(
            {
                "id": str(company_id),
                "name": name,
                "domain": party.domain,  # what makes it the same company; no phone yet
                "phone": None,
                "city": party.city,
                "country": COUNTRIES[party.country]["name"],
                "lifecyclestage": "lead",
                "hubspot_owner_id": party.owner_id or rng.choice(HUBSPOT_OWNERS),
                "created_at": created,
                "updated_at": _between(rng, created, recent),
            }
        )
        person = party.people[0]
        contact_id += 1
        free = rng.choice(COUNTRIES[party.country]["free_mail"])
        contacts.append(
            {
                "id": str(contact_id),
                "firstname": person.first,
                "lastname": person.last,
                "email": unique_email(
                    f"{slug(person.first)}.{slug(person.last)}{rng.randint(1, 99)}", free, taken
                ),
                "phone": person.phone.format("e164"),
                "company": name,
                "associatedcompanyid": str(company_id),
                "lifecyclestage": "lead",
                "created_at": created,
                "updated_at": created,
            }
        )
    return {"companies": companies, "contacts": contacts, "deals": deals}


def _other_legal_name(rng: random.Random, party: Party) -> str:
    """A legal name the CRM holds that is not billing's (another legal form)."""
    suffixes = [s for s in COUNTRIES[party.country]["suffixes"] if s not in party.legal_name]
    return f"{party.brand} {rng.choice(suffixes or ['Holding'])}"


DEAL_STAGES_OPEN = [
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
]


def _deal_row(rng: random.Random, party: Party, did: str, now: int, *, won: bool) -> dict:
    product, base = rng.choice(PRODUCTS)
    amount = round(base * rng.uniform(0.6, 1.8) / 100_000) * 1000  # whole thousands
    created = _between(rng, party.created, now - 2 * DAY_MS)
    stage = (
        "closedwon"
        if won
        else weighted_choice(
            rng, [("closedwon", 3), ("closedlost", 2)] + [(s, 1) for s in DEAL_STAGES_OPEN]
        )
    )
    if stage.startswith("closed"):
        close = _between(rng, created, now - DAY_MS)
        updated = close
    else:
        close = now + int(rng.uniform(5, 120) * DAY_MS)
        updated = _between(rng, created, now - HOUR_MS)
    return {
        "id": did,
        "dealname": f"{party.brand} - {product}",
        "amount": str(amount),
        "deal_currency_code": COUNTRIES[party.country]["currency"].upper(),
        "dealstage": stage,
        "pipeline": "default",
        "closedate": iso_ms(close),
        "hubspot_owner_id": rng.choice(HUBSPOT_OWNERS),
        "associations": {"companies": [party.crm_id], "contacts": party.crm_contact_ids[:1]},
        "created_at": created,
        "updated_at": updated,
    }


# -- ERP / billing (Stripe) ---------------------------------------------------------------


def erp_rows(
    parties: list[Party], rng: random.Random, now: int, seed: int, taken: set[str] | None = None
) -> dict[str, list]:
    customers: list[dict] = []
    invoices: list[dict] = []
    charges: list[dict] = []
    orders: list[dict] = []
    for party in parties:
        if not party.in_erp:
            continue
        info = COUNTRIES[party.country]
        created = _between(rng, party.created, now - 30 * DAY_MS)
        city, postcode = party.city, party.postcode
        if "erp_other_city" in party.planted:
            city, postcode, _ = party.other_city or (city, postcode, "")
        phone = party.phone
        if "erp_stale_phone" in party.planted and party.stale_phone:
            phone = party.stale_phone
        if party.kind == "organization":
            email = weighted_choice(
                rng,
                [
                    (f"accounts@{party.domain}", 3),
                    (f"invoices@{party.domain}", 2),
                    (party.people[0].email, 2),
                ],
            )
        else:
            email = party.people[0].email
        name = party.legal_name
        phone_text = phone.format("national") if rng.random() < 0.7 else phone.format("e164")
        if "erp_nickname" in party.planted:
            # Billing knows them under a nickname, another address and no phone.
            person = party.people[0]
            nickname = NICKNAMES.get(person.first) or f"{person.first[0]}."
            name = f"{nickname} {person.last}"
            local = f"{slug(nickname).replace('-', '')}.{slug(person.last).replace('-', '')}"
            email = unique_email(local, rng.choice(info["free_mail"]), taken)
            phone_text = None
        prefix = random_token(rng, 8).upper()
        tax_ids = []
        if party.tax and "erp_no_tax_id" not in party.planted:
            tax_ids = [{"type": party.tax[0], "value": party.tax[1]}]
        metadata = {"customer_type": "business" if party.kind == "organization" else "individual"}
        if party.crm_id and party.kind == "organization" and "erp_crm_ref" in party.planted:
            metadata["hubspot_company_id"] = party.crm_id
        customers.append(
            {
                "id": party.erp_id,
                "name": name,
                "email": email,
                "phone": phone_text,
                "address": {
                    "line1": party.street,
                    "line2": None,
                    "city": city,
                    "postal_code": postcode,
                    "state": None,
                    "country": party.country,
                },
                "currency": info["currency"],
                "preferred_locales": [info["locale"]],
                "invoice_prefix": prefix,
                "tax_ids": tax_ids,
                "metadata": metadata,
                "created": created,
            }
        )
        invoice_count = weighted_choice(rng, [(1, 2), (2, 3), (3, 3), (5, 2), (8, 1)])
        for seq in range(1, invoice_count + 1):
            issued = _between(rng, created, now - 2 * DAY_MS)
            lines = []
            for _line in range(rng.randint(1, 3)):
                product, base = rng.choice(PRODUCTS)
                quantity = rng.choice([1, 1, 1, 2, 5, 10])
                unit = max(5_000, round(base * rng.uniform(0.05, 0.4) / quantity / 100) * 100)
                lines.append({"description": product, "quantity": quantity, "unit_amount": unit})
            total = sum(li["quantity"] * li["unit_amount"] for li in lines)
            due = issued + 30 * DAY_MS
            overdue = due < now
            status = weighted_choice(
                rng,
                [("paid", 80), ("open", 12), ("uncollectible", 3), ("void", 5)]
                if overdue
                else [("paid", 40), ("open", 60)],
            )
            paid = total if status == "paid" else 0
            if status == "open" and rng.random() < 0.15:
                paid = round(total * rng.uniform(0.2, 0.7) / 100) * 100  # partially paid
            inv_id = stripe_id("in_", seed, party.index, seq)
            row = {
                "id": inv_id,
                "customer": party.erp_id,
                "number": f"{prefix}-{seq:04d}",
                "status": status,
                "currency": info["currency"],
                "amount_due": total,
                "amount_paid": paid,
                "lines": lines,
                "due_date": due // 1000,
                "collection_method": "send_invoice",
                "metadata": {},
                "created": issued,
                "finalized_at": issued,
            }
            paid_at = None
            if paid:
                late = rng.random() < 0.2 and due < now - HOUR_MS  # never paid in the future
                paid_at = (
                    _between(rng, due, min(now - HOUR_MS, due + 20 * DAY_MS))
                    if late
                    else _between(rng, issued + HOUR_MS, min(due, now - HOUR_MS))
                )
                if status == "paid":
                    row["paid_at"] = paid_at
                charges.append(
                    {
                        "id": stripe_id("ch_", seed, party.index, seq),
                        "amount": paid,
                        "currency": info["currency"],
                        "customer": party.erp_id,
                        "invoice": inv_id,
                        "status": "succeeded",
                        "description": f"Payment for invoice {row['number']}",
                        "payment_method_details": {
                            "type": rng.choice(["card", "sepa_debit", "customer_balance"])
                        },
                        "receipt_email": email,
                        "created": paid_at,
                    }
                )
            if status in ("void", "uncollectible"):
                row[f"{'voided' if status == 'void' else 'marked_uncollectible'}_at"] = _between(
                    rng, due, now - HOUR_MS
                )
            row["updated_at"] = max(
                issued, paid_at or 0, row.get("voided_at", 0), row.get("marked_uncollectible_at", 0)
            )
            if rng.random() < 0.35:
                order_id = stripe_id("order_", seed, party.index, seq)
                row["metadata"] = {"order": order_id}
                orders.append(
                    {
                        "id": order_id,
                        "customer": party.erp_id,
                        "status": "complete",
                        "currency": info["currency"],
                        "line_items": lines,
                        "invoice": inv_id,
                        "metadata": {},
                        "created": issued - int(rng.uniform(1, 5) * DAY_MS),
                        "updated_at": issued,
                    }
                )
            invoices.append(row)
        if "erp_duplicate" in party.planted and party.tax:
            customers.append(_erp_duplicate(rng, party, customers[-1], seed, now, taken))
    _ensure_invoice_mix(invoices, charges, orders, rng, now)
    return {"customers": customers, "invoices": invoices, "charges": charges, "orders": orders}


def _erp_duplicate(
    rng: random.Random, party: Party, first: dict, seed: int, now: int, taken: set[str] | None
) -> dict:
    """A second billing account of the company, opened later by someone in accounts
    payable: a free-mail address, no phone, the VAT id typed in another way."""
    kind, value = party.tax
    typed = value.replace("-", "") if kind == "us_ein" else f"{value[:2].lower()} {value[2:]}"
    party.erp_duplicate_id = stripe_id("cus_", seed, party.index, "second")
    local = f"{slug(party.brand).replace('-', '')}.ap"
    return {
        **first,
        "id": party.erp_duplicate_id,
        "email": unique_email(local, rng.choice(COUNTRIES[party.country]["free_mail"]), taken),
        "phone": None,
        "invoice_prefix": random_token(rng, 8).upper(),
        "tax_ids": [{"type": kind, "value": typed}],
        "metadata": {"customer_type": "business"},
        "created": _between(rng, first["created"] + DAY_MS, now - DAY_MS),
    }


def _ensure_invoice_mix(
    invoices: list[dict], charges: list[dict], orders: list[dict], rng: random.Random, now: int
) -> None:
    """Even a small world has an overdue invoice and a partly paid one not yet due."""

    def due_ms(row: dict) -> int:
        return row["due_date"] * 1000

    def open_balance(row: dict) -> bool:
        return row["status"] == "open" and row["amount_paid"] < row["amount_due"]

    if invoices and not any(open_balance(i) and due_ms(i) < now for i in invoices):
        paid = [i for i in invoices if i["status"] == "paid" and due_ms(i) < now]
        if paid:
            row = paid[0]  # the reminder went out; the payment never came
            row.update(status="open", amount_paid=0, updated_at=row["created"])
            row.pop("paid_at", None)
            charges[:] = [c for c in charges if c["invoice"] != row["id"]]
    if invoices and not any(
        open_balance(i) and i["amount_paid"] > 0 and due_ms(i) >= now for i in invoices
    ):
        row = max(invoices, key=lambda i: (i["created"], i["id"]))
        issued = min(row["created"], now - 5 * DAY_MS)
        part = max(100, round(row["amount_due"] * 0.4 / 100) * 100)
        paid_at = _between(rng, issued + HOUR_MS, now - HOUR_MS)
        row.update(
            status="open",
            amount_paid=part,
            created=issued,
            finalized_at=issued,
            due_date=(issued + 30 * DAY_MS) // 1000,
            updated_at=paid_at,
        )
        for key in ("paid_at", "voided_at", "marked_uncollectible_at"):
            row.pop(key, None)
        for order in orders:
            if order["invoice"] == row["id"]:
                order.update(created=issued - DAY_MS, updated_at=issued)
        charges[:] = [c for c in charges if c["invoice"] != row["id"]]
        charges.append(
            {
                "id": stripe_id("ch_", row["id"], "part"),
                "amount": part,
                "currency": row["currency"],
                "customer": row["customer"],
                "invoice": row["id"],
                "status": "succeeded",
                "description": f"Payment for invoice {row['number']}",
                "payment_method_details": {"type": "sepa_debit"},
                "receipt_email": None,
                "created": paid_at,
            }
        )


# -- Help desk (Zendesk) ------------------------------------------------------------------


def helpdesk_rows(
    parties: list[Party], rng: random.Random, now: int, seed: int, taken: set[str] | None = None
) -> dict[str, list]:
    organizations: list[dict] = []
    users: list[dict] = []
    tickets: list[dict] = []
    user_id, ticket_id = 360_000_000_000, 1000
    start = now - 400 * DAY_MS
    agent_ids = []
    for first, last in AGENTS:
        user_id += 1
        agent_ids.append(user_id)
        users.append(
            {
                "id": user_id,
                "name": f"{first} {last}",
                "role": "agent",
                "email": f"{first.lower()}.{last.lower()}@{AGENT_DOMAIN}",
                "phone": None,
                "organization_id": None,
                "time_zone": "Europe/Berlin",
                "locale": "en-US",
                "created_at": start,
                "updated_at": start,
            }
        )
    recent = now - HOUR_MS
    for party in parties:
        if not party.in_helpdesk:
            continue
        info = COUNTRIES[party.country]
        org_id = int(party.hd_org_id) if party.hd_org_id else None
        if org_id:
            created = _between(rng, party.created, now - 10 * DAY_MS)
            name = party.brand
            if "hd_ascii_name" in party.planted:
                name = ascii_fold(name)
            organizations.append(
                {
                    "id": org_id,
                    "name": name,
                    "domain_names": [party.domain],
                    "details": f"{party.street}, {party.postcode} {party.city}, {info['name']}",
                    "notes": "",
                    "external_id": f"hubspot-{party.crm_id}"
                    if party.crm_id and "hd_crm_ref" in party.planted
                    else None,
                    "tags": [INDUSTRIES[party.industry][0]],
                    "organization_fields": {},
                    "created_at": created,
                    "updated_at": _between(rng, created, recent),
                }
            )
        requesters = []
        for i, person in enumerate(party.people):
            if i > 0 and rng.random() < 0.3:
                continue  # not everyone ever wrote to support
            user_id += 1
            requesters.append(user_id)
            party.hd_user_ids.append(str(user_id))
            created = _between(rng, party.created, now - 5 * DAY_MS)
            email = person.email
            if "hd_email_case" in party.planted:
                local, host = email.split("@")
                email = f"{local.title()}@{host}"
            phone = person.phone.format("e164") if rng.random() < 0.7 else None
            if party.conflict_phone and i == 0:
                phone = party.conflict_phone.format("e164")  # a new mobile, not in the CRM
            users.append(
                {
                    "id": user_id,
                    "name": person.name,
                    "role": "end-user",
                    "email": email,
                    "phone": phone,
                    "organization_id": org_id,
                    "time_zone": info["tz"],
                    "locale": info["locale"],
                    "created_at": created,
                    "updated_at": _between(rng, created, recent),
                }
            )
        if "hd_duplicate_user" in party.planted and party.people:
            # Signed up again with another address; the same phone, written nationally.
            person = party.people[0]
            user_id += 1
            party.hd_duplicate_id = str(user_id)
            free = rng.choice(info["free_mail"])
            created = _between(rng, party.created, now - 5 * DAY_MS)
            local = f"{slug(person.first)}{slug(person.last)}{rng.randint(1, 99)}".replace("-", "")
            users.append(
                {
                    "id": user_id,
                    "name": person.name,
                    "role": "end-user",
                    "email": unique_email(local, free, taken),
                    "phone": person.phone.format("national"),
                    "organization_id": None,
                    "time_zone": info["tz"],
                    "locale": info["locale"],
                    "created_at": created,
                    "updated_at": created,
                }
            )
        for _ in range(weighted_choice(rng, [(0, 2), (1, 3), (2, 3), (3, 2), (5, 1), (7, 1)])):
            if not requesters:
                break
            ticket_id += 1
            tickets.append(
                _ticket_row(
                    rng,
                    ticket_id,
                    rng.choice(requesters),
                    org_id,
                    agent_ids,
                    max(party.created, now - 200 * DAY_MS),
                    now,
                )
            )
    return {"organizations": organizations, "users": users, "tickets": tickets}


def _ticket_row(
    rng: random.Random,
    tid: int,
    requester: int,
    org_id: int | None,
    agents: list[int],
    earliest: int,
    now: int,
) -> dict:
    kind, subject = rng.choice(TICKET_SUBJECTS)
    created = _between(rng, earliest, now - 2 * HOUR_MS)
    hours = min(rng.lognormvariate(2.5, 1.2), 30 * 24)
    solved = created + int(hours * HOUR_MS)
    row: dict[str, Any] = {
        "id": tid,
        "subject": subject,
        "description": f"{subject}. Could you please have a look? Thanks.",
        "type": kind,
        "priority": weighted_choice(rng, [("low", 2), ("normal", 6), ("high", 2), ("urgent", 1)]),
        "requester_id": requester,
        "submitter_id": requester,
        "organization_id": org_id,
        "via": {"channel": weighted_choice(rng, CHANNELS)},
        "tags": [],
        "created_at": created,
    }
    if solved < now - HOUR_MS and rng.random() < 0.9:  # some wait on the customer or on us
        closed = solved + 4 * DAY_MS < now - HOUR_MS and rng.random() < 0.8
        row.update(
            status="closed" if closed else "solved",
            solved_at=solved,
            assignee_id=rng.choice(agents),
            updated_at=solved + 4 * DAY_MS if closed else solved,
        )
    else:
        status = weighted_choice(rng, [("new", 2), ("open", 5), ("pending", 3), ("hold", 1)])
        row.update(
            status=status,
            assignee_id=None if status == "new" else rng.choice(agents),
            updated_at=_between(rng, created, now - HOUR_MS),
        )
    return row
