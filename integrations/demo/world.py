"""The demo world: what a CRM, an ERP/billing system and a help desk export about one
deterministic customer base.

``build_world`` draws about ``customers`` real customers (organizations with contacts,
and persons) from one ``random.Random(seed)`` and renders each system's view of them in
that system's own ids and column names: HubSpot-like CSV for the CRM, Stripe-like JSON
Lines plus ERP CSV exports for billing, Zendesk-like JSON Lines for the help desk. The
mapping files in ``mappings/`` translate them to canonical fields.

Planted on purpose, and listed with their ids in ``manifest.json``: the same customer in
two or three systems under e-mail, phone or tax-id variants; duplicates inside one
system; conflicting values; older updates written after newer ones; a few bad rows.
``truth.csv`` says which source record belongs to which real customer.

Same seed and same ``today`` → byte-identical files. No Faker: the small name, company
and city lists in ``reference.py`` cover six countries.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
import math
import random
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import phonenumbers
from stdnum import luhn
from stdnum.de import vat as de_vat
from stdnum.es import vat as es_vat
from stdnum.fr import tva as fr_tva
from stdnum.gb import vat as gb_vat
from stdnum.nl import btw as nl_btw

from customers.identity import normalize
from customers.management.commands.demo_users import PARTNER_OWNER

from .reference import (
    B2B_PRODUCTS,
    B2B_TICKETS,
    B2C_PRODUCTS,
    B2C_TICKETS,
    COUNTRIES,
    COUNTRY_WEIGHTS,
    DEAL_TOPICS,
    HUBSPOT_INDUSTRIES,
    HUBSPOT_STAGES,
    JOB_TITLES,
    NICKNAMES,
    PLUS_TAGS,
    SALES_REPS,
    Country,
)

MAPPINGS_DIR = Path(__file__).resolve().parent / "mappings"


@dataclass(frozen=True)
class Dataset:
    system: str
    kind: str  # SourceSystem kind of the system
    entity: str
    file: str  # path relative to the output directory
    mapping: str  # file name in MAPPINGS_DIR

    @property
    def mapping_path(self) -> Path:
        return MAPPINGS_DIR / self.mapping

    @property
    def label(self) -> str:
        return f"{self.system}/{self.entity}"


# Load order: every system's customers first, then what hangs off them (payments after
# the invoices they settle).
DATASETS: tuple[Dataset, ...] = (
    Dataset("crm", "crm", "customer", "crm/companies.csv", "crm_companies.json"),
    Dataset("crm", "crm", "customer", "crm/people.csv", "crm_people.json"),
    Dataset("erp", "billing", "customer", "erp/customers.jsonl", "erp_customers.json"),
    Dataset("helpdesk", "helpdesk", "customer", "helpdesk/users.jsonl", "helpdesk_users.json"),
    Dataset("crm", "crm", "contact", "crm/contacts.csv", "crm_contacts.json"),
    Dataset("crm", "crm", "deal", "crm/deals.csv", "crm_deals.json"),
    Dataset("erp", "billing", "order", "erp/orders.csv", "erp_orders.json"),
    Dataset("erp", "billing", "invoice", "erp/invoices.csv", "erp_invoices.json"),
    Dataset("erp", "billing", "payment", "erp/payments.jsonl", "erp_payments.json"),
    Dataset("helpdesk", "helpdesk", "ticket", "helpdesk/tickets.jsonl", "helpdesk_tickets.json"),
)

HEADERS: dict[str, list[str]] = {
    "crm/companies.csv": [
        "Record ID",
        "Company name",
        "Legal Name",
        "Company Domain Name",
        "Website URL",
        "Company Email",
        "Phone Number",
        "Street Address",
        "City",
        "State/Region",
        "Postal Code",
        "Country/Region",
        "Industry",
        "Number of Employees",
        "Lifecycle Stage",
        "Company owner",
        "VAT Number",
        "Create Date",
        "Last Modified Date",
    ],
    "crm/people.csv": [
        "Record ID",
        "First Name",
        "Last Name",
        "Email",
        "Phone Number",
        "Street Address",
        "City",
        "Postal Code",
        "Country/Region",
        "Date of Birth",
        "Lifecycle Stage",
        "Contact owner",
        "Create Date",
        "Last Modified Date",
    ],
    "crm/contacts.csv": [
        "Record ID",
        "First Name",
        "Last Name",
        "Email",
        "Phone Number",
        "Job Title",
        "Associated Company ID",
        "Create Date",
        "Last Modified Date",
    ],
    "crm/deals.csv": [
        "Record ID",
        "Deal Name",
        "Pipeline",
        "Deal Stage",
        "Amount",
        "Currency",
        "Close Date",
        "Deal owner",
        "Associated Company ID",
        "Create Date",
        "Last Modified Date",
    ],
    "erp/orders.csv": [
        "Order No",
        "Customer ID",
        "Order Date",
        "Status",
        "Currency",
        "Net Total",
        "Lines",
        "Last Changed",
    ],
    "erp/invoices.csv": [
        "Invoice ID",
        "Invoice Number",
        "Customer ID",
        "Order No",
        "Invoice Date",
        "Due Date",
        "Currency",
        "Total",
        "Amount Paid",
        "Amount Due",
        "State",
        "Last Changed",
    ],
}

LINK_LABELS = {
    "same": "the same e-mail address",
    "case": "the same e-mail address in different case",
    "plus": "the same e-mail address with a +tag",
    "dots": "the same Gmail address without its dots",
    "phone": "the same phone number in another format; another e-mail address",
    "domain": "the same company web domain (website, e-mail)",
    "tax_id": "the same VAT id, formatted differently",
}
ZENDESK_HOST = "https://concord-demo.zendesk.com/api/v2"
EIN_PREFIXES = ("12", "20", "26", "27", "45", "46", "47", "81", "84", "94")  # valid IRS campuses
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CENT = Decimal("0.01")

# -- the people and organizations -------------------------------------------------------


@dataclass
class Contact:
    first: str
    last: str
    email: str
    phone: str  # E.164
    title: str
    crm_id: str = ""
    created: dt.datetime | None = None


@dataclass
class Order:
    customer: Customer
    erp_customer_id: str
    date: dt.date
    status: str  # ERP status code
    lines: list[dict[str, Any]]
    net: Decimal
    changed: dt.datetime
    number: str = ""


@dataclass
class Payment:
    id: str
    amount: Decimal
    at: dt.datetime
    status: str  # succeeded | failed
    method: str


@dataclass
class Invoice:
    id: str
    customer: Customer
    erp_customer_id: str
    order: Order | None
    issue: dt.date
    due: dt.date
    total: Decimal
    plan: str  # paid | partial | unpaid | void | draft
    payments: list[Payment] = field(default_factory=list)
    number: str = ""
    stale: bool = False  # also written as issued (open, unpaid), after this version

    @property
    def paid(self) -> Decimal:
        return sum((p.amount for p in self.payments if p.status == "succeeded"), Decimal("0"))

    def state_on(self, today: dt.date) -> str:
        """The billing system's state: draft, open, paid, void or uncollectible."""
        if self.plan in ("void", "draft"):
            return self.plan
        if self.paid >= self.total:
            return "paid"
        if self.plan == "unpaid" and (today - self.due).days > 120:
            return "uncollectible"
        return "open"

    @property
    def changed(self) -> dt.datetime:
        times = [p.at for p in self.payments]
        issued = dt.datetime.combine(self.issue, dt.time(9, 0), tzinfo=dt.UTC)
        return max([issued, *times])


@dataclass
class Ticket:
    requester_id: str
    organization_id: int | None
    subject: str
    status: str
    priority: str | None
    channel: str
    type: str
    opened: dt.datetime
    solved: dt.datetime | None
    updated: dt.datetime
    order: Order | None = None  # mentioned in the subject
    invoice: Invoice | None = None
    stale: bool = False  # also written as opened (status open), after this version
    id: int = 0


@dataclass
class Customer:
    n: int  # the real customer's number in truth.csv
    kind: str  # organization | person
    country: Country
    city: tuple[str, str, str, str]
    line1: str
    postal: str
    name: str  # trade name, or "First Last"
    created: dt.datetime
    first: str = ""
    last: str = ""
    legal_name: str = ""
    domain: str = ""
    email: str = ""  # as the primary system spells it
    phone: str = ""  # E.164; organizations: the switchboard
    tax_id: str = ""  # canonical compact form
    birth_date: dt.date | None = None
    in_crm: bool = False
    in_erp: bool = False
    in_helpdesk: bool = False
    owner: str = ""
    contacts: list[Contact] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    invoices: list[Invoice] = field(default_factory=list)
    open_deal: bool = False
    crm_id: str = ""
    erp_id: str = ""
    helpdesk_ids: list[str] = field(default_factory=list)
    crm_vat: str = ""  # VAT number as typed into the CRM, if at all
    primary_has_phone: bool = False  # the primary system's record carries ``phone``
    erp_fuzzy: bool = False  # planted: the ERP knows them under a nickname, no shared key

    @property
    def primary(self) -> str:
        return "crm" if self.in_crm else "erp" if self.in_erp else "helpdesk"


@dataclass
class World:
    """The rendered world: file contents by relative path, plus the manifest."""

    files: dict[str, str]
    manifest: dict[str, Any]

    def write(self, out_dir: str | Path) -> list[Path]:
        out = Path(out_dir)
        written = []
        for rel, text in self.files.items():
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode("utf-8"))
            written.append(path)
        return written


def build_world(*, customers: int = 2000, seed: int = 42, today: dt.date) -> World:
    """Generate the demo world for ``customers`` real customers; pure and deterministic."""
    if customers < 20:
        raise ValueError("the demo world needs at least 20 customers")
    return _Generator(customers=customers, seed=seed, today=today).run()


# -- helpers ----------------------------------------------------------------------------

_FOLD = str.maketrans(
    {"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue", "&": " "}
)


def ascii_fold(text: str) -> str:
    text = text.translate(_FOLD)
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def slug(text: str, sep: str = "-") -> str:
    return sep.join(re.findall(r"[a-z0-9]+", ascii_fold(text).lower()))


def money(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def hubspot_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")


def erp_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def unix(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def ignores_plus_tags(provider: str) -> bool:
    """The hub treats name+tag@provider as name@provider (same identity key)."""
    return normalize.email(f"a+tag@{provider}") == normalize.email(f"a@{provider}")


def ignores_dots(provider: str) -> bool:
    return normalize.email(f"a.b@{provider}") == normalize.email(f"ab@{provider}")


def phone_format(e164: str, style: str) -> str:
    number = phonenumbers.parse(e164)
    if style == "national":
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    if style == "e164":
        return e164
    text = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    if style == "00":
        return "00" + text[1:]
    if style == "dashes":
        return text.replace(" ", "-")
    return text


class _Generator:
    def __init__(self, *, customers: int, seed: int, today: dt.date) -> None:
        self.rng = random.Random(seed)
        self.count = customers
        self.seed = seed
        self.today = today
        # Every source time is before the anchor, midnight UTC of ``today``.
        self.now = dt.datetime.combine(today, dt.time.min, tzinfo=dt.UTC)
        self.taken: set[str] = set()  # ids, normalized e-mails, phones, domains, tax ids
        self.customers: list[Customer] = []
        self.rows: dict[str, list[Any]] = {d.file: [] for d in DATASETS}
        self.late: dict[str, list[Any]] = defaultdict(list)  # appended after the rest
        self.truth: list[tuple[int, str, str, str, str, str]] = []
        self.planted: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.link_examples: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.expected_extra = 0  # planted records no deterministic key can link
        self.orders: list[Order] = []
        self.invoices: list[Invoice] = []
        self.tickets: list[Ticket] = []

    # -- small random helpers -----------------------------------------------------------

    def claim(self, key: str) -> bool:
        if key in self.taken:
            return False
        self.taken.add(key)
        return True

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, options: tuple | list) -> Any:
        return options[self.rng.randrange(len(options))]

    def weighted(self, pairs: tuple | list) -> Any:
        values = [v for v, _ in pairs]
        weights = [w for _, w in pairs]
        return self.rng.choices(values, weights=weights)[0]

    def ago(self, min_days: float, max_days: float) -> dt.datetime:
        seconds = self.rng.uniform(min_days * 86400, max_days * 86400)
        return self.now - dt.timedelta(seconds=int(seconds) + 1)

    def between(self, start: dt.datetime, end: dt.datetime) -> dt.datetime:
        span = max(int((end - start).total_seconds()), 1)
        return start + dt.timedelta(seconds=self.rng.randrange(span))

    def number_id(self, digits: int) -> str:
        while True:
            value = str(self.rng.randrange(10 ** (digits - 1), 10**digits))
            if self.claim(f"id:{value}"):
                return value

    def stripe_id(self, prefix: str, length: int = 14) -> str:
        while True:
            value = prefix + "".join(self.pick(BASE62) for _ in range(length))
            if self.claim(f"id:{value}"):
                return value

    def digits(self, count: int) -> str:
        return "".join(str(self.rng.randrange(10)) for _ in range(count))

    def pattern(self, text: str) -> str:
        return "".join(
            str(self.rng.randrange(10))
            if ch == "#"
            else self.pick("ABDEFGHJLNPQRSTUWXYZ")
            if ch == "?"
            else ch
            for ch in text
        )

    def new_phone(self, country: Country, *, mobile: bool, city_prefix: str = "") -> str:
        """A valid, unused phone number of the country, as E.164."""
        region = country.code
        while True:
            if mobile:
                prefix, length = self.pick(country.mobile_prefixes), country.mobile_digits
            else:
                prefix, length = city_prefix, country.landline_digits
            national = prefix + self.digits(length - len(prefix))
            number = phonenumbers.parse(national, region)
            if not phonenumbers.is_valid_number(number):
                continue
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            if self.claim(f"phone:{e164}"):
                return e164

    def new_email(self, local_options: list[str], domain: str) -> str:
        numbered = (f"{local_options[0]}{n}" for n in range(2, 999))
        for local in itertools.chain(local_options, numbered):
            email = f"{local}@{domain}"
            if self.claim(f"email:{normalize.email(email)}"):
                return email
        raise RuntimeError("no free e-mail address")  # pragma: no cover

    def person_email(self, first: str, last: str, country: Country, *, year: int = 0) -> str:
        f, ln = slug(first, ""), slug(last, "")
        yy = str(year % 100).zfill(2) if year else self.digits(2)
        options = self.pick(
            (
                [f"{f}.{ln}", f"{f}.{ln}{yy}"],
                [f"{f}{ln}", f"{f}{ln}{yy}"],
                [f"{f[0]}.{ln}", f"{f[0]}{ln}{yy}"],
                [f"{f}_{ln}", f"{f}.{ln}.{yy}"],
                [f"{f}{ln[0]}{yy}", f"{f}.{ln}{self.digits(3)}"],
            )
        )
        return self.new_email(options, self.pick(country.free_mail))

    def vat_id(self, country: Country) -> str:
        """A tax id that passes the country's checksum (US: an EIN)."""
        while True:
            if country.code == "US":
                value = f"{self.pick(EIN_PREFIXES)}-{self.digits(7)}"
                key = value.replace("-", "")
            elif country.code == "DE":
                value = key = "DE" + str(self.rng.randrange(1, 10)) + self.digits(8)
                if not de_vat.is_valid(value):
                    continue
            elif country.code == "GB":
                value = key = "GB" + str(self.rng.randrange(1, 10)) + self.digits(8)
                if not gb_vat.is_valid(value):
                    continue
            elif country.code == "FR":
                siren = str(self.rng.randrange(1, 10)) + self.digits(7)
                siren += luhn.calc_check_digit(siren)
                key_digits = (12 + 3 * (int(siren) % 97)) % 97
                value = key = f"FR{key_digits:02d}{siren}"
                if not fr_tva.is_valid(value):
                    continue
            elif country.code == "NL":
                value = key = "NL" + str(self.rng.randrange(1, 10)) + self.digits(8) + "B01"
                if not nl_btw.is_valid(value):
                    continue
            else:
                value = key = "ES" + self.pick("ABB") + self.digits(8)
                if not es_vat.is_valid(value):
                    continue
            if self.claim(f"tax:{key}"):
                return value

    # -- the world ----------------------------------------------------------------------

    def run(self) -> World:
        for n in range(1, self.count + 1):
            self.customers.append(self.new_customer(n))
        self.plan_partner_territory()
        for c in self.customers:
            if c.in_erp:
                self.erp_history(c)
        self.ensure_invoice_mix()
        # A few consumers the ERP knows under a nickname and another e-mail.
        fuzzy = [c for c in self.customers if c.kind == "person" and c.in_crm and c.in_erp]
        for c in fuzzy[: max(1, round(self.count / 500))]:
            c.erp_fuzzy = True
        for c in self.customers:
            self.render_crm(c)
        for c in self.customers:
            self.render_erp(c)
        for c in self.customers:
            self.render_helpdesk(c)
        self.plant_within_system_duplicates()
        self.plant_stale_versions()
        self.plant_bad_rows()
        return self.serialize()

    def new_customer(self, n: int) -> Customer:
        country = COUNTRIES[self.weighted(COUNTRY_WEIGHTS)]
        city = self.pick(country.cities)
        street, number = self.pick(country.streets), self.rng.randrange(1, 250)
        line1 = f"{number} {street}" if country.number_first else f"{street} {number}"
        if country.code == "ES":
            line1 = f"{street}, {number}"
        created = self.ago(120, 2400)
        is_org = self.chance(0.4)
        if is_org:
            c = self.new_organization(n, country, city, line1, created)
        else:
            c = self.new_person(n, country, city, line1, created)
        c.owner = self.pick(SALES_REPS)
        return c

    def new_organization(self, n, country, city, line1, created) -> Customer:
        while True:
            head = self.pick(country.brands) if self.chance(0.4) else self.pick(country.last_names)
            industry = self.pick(country.industries)
            name = f"{industry} {head}" if country.industry_first else f"{head} {industry}"
            base = slug(name, self.pick(("-", "")))
            domain = f"{base}.{country.tld}"
            if self.claim(f"domain:{domain}") and self.claim(f"name:{name}"):
                break
        legal = f"{name} {self.pick(country.legal_forms)}"
        c = Customer(
            n=n,
            kind="organization",
            country=country,
            city=city,
            line1=line1,
            postal=self.pattern(city[2]),
            name=name,
            created=created,
            legal_name=legal,
            domain=domain,
        )
        c.email = self.new_email([self.pick(country.info_boxes), "info", "office"], domain)
        c.phone = self.new_phone(country, mobile=False, city_prefix=city[3])
        c.tax_id = self.vat_id(country)
        c.in_crm = True  # every B2B account lives in the CRM
        c.in_erp = self.chance(0.62)
        c.in_helpdesk = self.chance(0.55 if c.in_erp else 0.1)
        for _ in range(self.weighted(((1, 3), (2, 4), (3, 2), (4, 1)))):
            first, last = self.pick(country.first_names), self.pick(country.last_names)
            email = self.new_email(
                [
                    f"{slug(first, '')}.{slug(last, '')}",
                    f"{slug(first, '')[0]}.{slug(last, '')}",
                    f"{slug(first, '')}",
                ],
                domain,
            )
            c.contacts.append(
                Contact(
                    first, last, email, self.new_phone(country, mobile=True), self.pick(JOB_TITLES)
                )
            )
        return c

    def new_person(self, n, country, city, line1, created) -> Customer:
        first = self.pick(country.first_names)
        last = self.pick(country.last_names)
        birth = dt.date(
            self.rng.randrange(1950, 2004), self.rng.randrange(1, 13), self.rng.randrange(1, 29)
        )
        c = Customer(
            n=n,
            kind="person",
            country=country,
            city=city,
            line1=line1,
            postal=self.pattern(city[2]),
            name=f"{first} {last}",
            created=created,
            first=first,
            last=last,
            birth_date=birth,
        )
        c.email = self.person_email(
            first, last, country, year=birth.year if self.chance(0.3) else 0
        )
        c.phone = self.new_phone(country, mobile=True)
        c.in_erp = self.chance(0.7)  # bought something
        c.in_crm = self.chance(0.5 if c.in_erp else 0.85)
        c.in_helpdesk = self.chance(0.4 if c.in_erp else 0.15)
        if not (c.in_crm or c.in_erp):
            c.in_helpdesk = True  # a prospect who only ever wrote to support
        return c

    def plan_partner_territory(self) -> None:
        """A few companies, Dutch first, whose CRM owner is the partner (see demo_users)."""
        wanted = max(3, round(self.count / 80))
        orgs = [c for c in self.customers if c.kind == "organization"]
        ordered = [c for c in orgs if c.country.code == "NL"]
        ordered += [c for c in orgs if c.country.code != "NL"]
        for c in ordered[:wanted]:
            c.owner = PARTNER_OWNER

    # -- ERP history: orders, invoices, payments -----------------------------------------

    def erp_history(self, c: Customer) -> None:
        c.erp_id = self.stripe_id("cus_")
        b2b = c.kind == "organization"
        count = self.weighted(((0, 1), (1, 5), (2, 5), (3, 4), (4, 3), (6, 2), (8, 1)))
        start = max(c.created, self.now - dt.timedelta(days=730))
        dates = sorted(
            self.between(start, self.now - dt.timedelta(days=1)).date() for _ in range(count)
        )
        if self.chance(0.3):  # a recent order, so open and partly paid invoices exist
            dates.append((self.now - dt.timedelta(days=self.rng.randrange(2, 25))).date())
        for day in dates:
            self.add_order(c, c.erp_id, day, b2b)

    def add_order(self, c: Customer, erp_id: str, day: dt.date, b2b: bool) -> Order:
        products = B2B_PRODUCTS if b2b else B2C_PRODUCTS
        lines = []
        for sku, description, price in self.rng.sample(products, self.rng.randrange(1, 4)):
            # Seats and consumables by the dozen, workshops and support plans one or two.
            most = 3 if Decimal(price) >= 1000 else 25 if b2b else 3
            quantity = self.rng.randrange(1, most)
            lines.append(
                {"sku": sku, "description": description, "quantity": quantity, "unit_price": price}
            )
        net = sum((Decimal(line["unit_price"]) * line["quantity"] for line in lines), Decimal(0))
        age = (self.today - day).days
        if age > 14:
            status = self.weighted((("DL", 92), ("CX", 5), ("SH", 3)))
        elif age > 3:
            status = self.weighted((("SH", 50), ("DL", 40), ("CF", 10)))
        else:
            status = self.weighted((("OP", 40), ("CF", 60)))
        placed = dt.datetime.combine(day, dt.time(8), tzinfo=dt.UTC)
        changed = placed + dt.timedelta(hours=self.rng.randrange(1, 24 * min(age, 10) + 2))
        changed = min(changed, self.now - dt.timedelta(minutes=5))
        order = Order(c, erp_id, day, status, lines, net, changed)
        c.orders.append(order)
        self.orders.append(order)
        if status not in ("CX", "OP"):
            self.add_invoice(c, erp_id, order, b2b)
        return order

    def add_invoice(
        self, c: Customer, erp_id: str, order: Order | None, b2b: bool, total: Decimal | None = None
    ) -> Invoice:
        day = order.date if order else (self.now - dt.timedelta(days=40)).date()
        issue = min(
            day + dt.timedelta(days=self.rng.randrange(0, 3)), self.today - dt.timedelta(days=1)
        )
        terms = self.weighted(((30, 6), (14, 2), (45, 1), (60, 1))) if b2b else 14
        due = issue + dt.timedelta(days=terms)
        if total is None:
            total = (order.net * (1 + c.country.vat_rate)).quantize(CENT, ROUND_HALF_UP)
        days_to_due = (due - self.today).days
        if (self.today - issue).days <= 3 and self.chance(0.25):
            plan = "draft"
        elif days_to_due < -60:
            plan = self.weighted((("paid", 86), ("partial", 5), ("unpaid", 5), ("void", 4)))
        elif days_to_due < 0:
            plan = self.weighted((("paid", 60), ("partial", 15), ("unpaid", 22), ("void", 3)))
        else:
            plan = self.weighted((("paid", 35), ("partial", 25), ("unpaid", 40)))
        if not b2b and plan in ("unpaid", "partial") and self.chance(0.6):
            plan = "paid"  # consumers mostly pay by card at checkout
        invoice = Invoice(self.stripe_id("in_", 24), c, erp_id, order, issue, due, total, plan)
        self.settle(invoice, b2b)
        c.invoices.append(invoice)
        self.invoices.append(invoice)
        return invoice

    def settle(self, invoice: Invoice, b2b: bool) -> None:
        """(Re)draw the payments of an invoice according to its plan."""
        invoice.payments = []
        if invoice.plan in ("void", "draft", "unpaid"):
            return
        issued = dt.datetime.combine(invoice.issue, dt.time(9), tzinfo=dt.UTC)
        latest = min(
            self.now - dt.timedelta(hours=1),
            dt.datetime.combine(invoice.due, dt.time(18), tzinfo=dt.UTC) + dt.timedelta(days=25),
        )
        latest = max(latest, issued + dt.timedelta(hours=1))
        method = (
            self.weighted((("bank_transfer", 5), ("sepa_debit", 3), ("card", 2)))
            if b2b
            else self.weighted((("card", 7), ("ideal", 1), ("sepa_debit", 1)))
        )
        if invoice.customer.country.code == "US" and method in ("sepa_debit", "ideal"):
            method = "ach_debit" if b2b else "card"
        if self.chance(0.04):
            invoice.payments.append(
                Payment(
                    self.stripe_id("ch_", 24),
                    invoice.total,
                    self.between(issued, latest),
                    "failed",
                    "card",
                )
            )
        if invoice.plan == "partial":
            share = Decimal(self.rng.randrange(20, 71)) / 100
            amount = (invoice.total * share).quantize(CENT, ROUND_HALF_UP)
            invoice.payments.append(
                Payment(
                    self.stripe_id("ch_", 24),
                    amount,
                    self.between(issued, latest),
                    "succeeded",
                    method,
                )
            )
            return
        parts = 2 if b2b and invoice.total > 2000 and self.chance(0.3) else 1
        first = (invoice.total / parts).quantize(CENT, ROUND_HALF_UP)
        amounts = [first] * (parts - 1) + [invoice.total - first * (parts - 1)]
        moments = sorted(self.between(issued, latest) for _ in amounts)
        for amount, moment in zip(amounts, moments, strict=True):
            invoice.payments.append(
                Payment(self.stripe_id("ch_", 24), amount, moment, "succeeded", method)
            )

    def payment_status(self, invoice: Invoice) -> str:
        """As Invoice.payment_status_on(today) will derive it in the hub."""
        if invoice.plan in ("void", "draft"):
            return invoice.plan
        if invoice.paid >= invoice.total:
            return "paid"
        if invoice.due < self.today:
            return "overdue"
        return "partially_paid" if invoice.paid > 0 else "open"

    def ensure_invoice_mix(self) -> None:
        """Even a small world has overdue and partly paid (not yet due) invoices."""
        want = max(2, len(self.invoices) // 40)
        counts = Counter(self.payment_status(i) for i in self.invoices)
        future = [
            i
            for i in self.invoices
            if self.payment_status(i) in ("paid", "open") and i.due >= self.today
        ]
        past = [i for i in self.invoices if self.payment_status(i) == "paid"]
        for invoice in future[: max(0, want - counts["partially_paid"])]:
            invoice.plan = "partial"
            self.settle(invoice, invoice.customer.kind == "organization")
        for invoice in past[: max(0, want - counts["overdue"])]:
            invoice.plan = "unpaid"
            self.settle(invoice, invoice.customer.kind == "organization")
        if not any(self.payment_status(i) == "partially_paid" for i in self.invoices):
            # Nothing falls due in the future: give one ERP customer a recent order.
            c = next(c for c in self.customers if c.in_erp)
            b2b = c.kind == "organization"
            self.add_order(c, c.erp_id, self.today - dt.timedelta(days=6), b2b)
            invoice = c.invoices[-1]  # an order six days old is always invoiced
            invoice.plan = "partial"
            self.settle(invoice, b2b)

    # -- CRM ----------------------------------------------------------------------------

    def record_truth(self, c: Customer, system: str, external_id: str, role: str) -> None:
        self.truth.append((c.n, c.kind, system, "customer", external_id, role))

    def link_variant(self, c: Customer) -> str:
        """How a secondary system's record of person ``c`` links to the primary record."""
        if c.primary_has_phone and self.chance(0.25):
            return "phone"
        local, _, provider = c.email.partition("@")
        options = ["case", "same"]
        if ignores_plus_tags(provider):
            options += ["plus", "plus"]
        if "." in local and ignores_dots(provider):
            options.append("dots")
        return self.pick(options)

    def email_variant(self, email: str, variant: str) -> str:
        local, _, domain = email.partition("@")
        if variant == "case":
            return f"{local.title()}@{domain.capitalize()}"
        if variant == "plus":
            return f"{local}+{self.pick(PLUS_TAGS)}@{domain}"
        if variant == "dots":
            return f"{local.replace('.', '')}@{domain}"
        if variant == "upper":
            return email.upper()
        return email

    def note_link(self, c: Customer, how: str, refs: dict[str, str]) -> None:
        examples = self.link_examples[how]
        if len(examples) < 3:
            examples.append({"how": LINK_LABELS[how], "refs": refs, "name": c.name})

    def lifecycle(self, c: Customer) -> str:
        recent = any((self.today - o.date).days < 365 for o in c.orders)
        if c.orders:
            return "Customer" if recent or self.chance(0.6) else "Former Customer"
        if c.kind == "organization" and c.open_deal:
            return self.pick(("Opportunity", "Sales Qualified Lead"))
        return self.weighted(
            (("Lead", 4), ("Marketing Qualified Lead", 2), ("Subscriber", 3), ("Other", 1))
        )

    def render_crm(self, c: Customer) -> None:
        deals = self.draw_deals(c) if c.kind == "organization" else []
        if not c.in_crm:
            return
        c.crm_id = self.number_id(10 if c.kind == "organization" else 11)
        self.record_truth(c, "crm", c.crm_id, "primary")
        modified = self.between(max(c.created, self.now - dt.timedelta(days=400)), self.now)
        if c.kind == "person":
            c.primary_has_phone = self.chance(0.8)
            self.rows["crm/people.csv"].append(
                self.crm_person_row(c, c.crm_id, modified, phone=c.primary_has_phone)
            )
            return
        c.primary_has_phone = True
        if c.country.code != "US" and self.chance(0.3):
            c.crm_vat = self.crm_vat_text(c.tax_id)
        legal = ""
        if self.chance(0.2):
            legal = f"{c.name} {self.pick(c.country.legal_forms)}"
            if c.in_erp and legal != c.legal_name and len(self.planted["conflicts"]) < 12:
                self.planted["conflicts"].append(
                    {
                        "field": "legal_name",
                        "crm_record": c.crm_id,
                        "crm": legal,
                        "erp": c.legal_name,
                        "expected": "erp (billing owns legal_name)",
                    }
                )
        style = self.pick(("international", "international", "national"))
        self.rows["crm/companies.csv"].append(
            self.crm_company_row(c, c.crm_id, c.name, legal, modified, style)
        )
        for contact in c.contacts:
            self.rows["crm/contacts.csv"].append(self.crm_contact_row(c, contact))
        for deal in deals:
            deal["Record ID"] = self.number_id(11)
            deal["Associated Company ID"] = c.crm_id
            self.rows["crm/deals.csv"].append(deal)

    def crm_vat_text(self, tax_id: str) -> str:
        prefix, digits = tax_id[:2], tax_id[2:]
        grouped = " ".join(digits[i : i + 3] for i in range(0, len(digits), 3))
        return self.pick((f"{prefix} {grouped}", f"{prefix}{digits}", f"{prefix}-{digits}"))

    def crm_company_row(
        self,
        c: Customer,
        record_id: str,
        name: str,
        legal: str,
        modified: dt.datetime,
        phone_style: str,
    ) -> dict[str, Any]:
        country = c.country.label if self.chance(0.85) else c.country.code
        return {
            "Record ID": record_id,
            "Company name": name,
            "Legal Name": legal,
            "Company Domain Name": c.domain,
            "Website URL": f"https://www.{c.domain}",
            "Company Email": c.email,
            "Phone Number": phone_format(c.phone, phone_style),
            "Street Address": c.line1,
            "City": c.city[0],
            "State/Region": c.city[1],
            "Postal Code": c.postal,
            "Country/Region": country,
            "Industry": self.pick(HUBSPOT_INDUSTRIES),
            "Number of Employees": self.pick(("8", "25", "60", "140", "400", "1200")),
            "Lifecycle Stage": self.lifecycle(c),
            "Company owner": c.owner,
            "VAT Number": c.crm_vat,
            "Create Date": hubspot_time(c.created),
            "Last Modified Date": hubspot_time(modified),
        }

    def crm_person_row(
        self,
        c: Customer,
        record_id: str,
        modified: dt.datetime,
        *,
        phone: bool,
        first: str = "",
        email: str = "",
    ) -> dict[str, Any]:
        style = self.pick(("national", "national", "international"))
        return {
            "Record ID": record_id,
            "First Name": first or c.first,
            "Last Name": c.last,
            "Email": email or c.email,
            "Phone Number": phone_format(c.phone, style) if phone else "",
            "Street Address": c.line1 if self.chance(0.5) else "",
            "City": c.city[0],
            "Postal Code": c.postal if self.chance(0.5) else "",
            "Country/Region": c.country.label,
            "Date of Birth": c.birth_date.isoformat() if c.birth_date and self.chance(0.4) else "",
            "Lifecycle Stage": self.lifecycle(c),
            "Contact owner": c.owner,
            "Create Date": hubspot_time(c.created),
            "Last Modified Date": hubspot_time(modified),
        }

    def crm_contact_row(self, c: Customer, contact: Contact) -> dict[str, Any]:
        contact.crm_id = self.number_id(11)
        contact.created = self.between(c.created, self.now - dt.timedelta(days=1))
        return {
            "Record ID": contact.crm_id,
            "First Name": contact.first,
            "Last Name": contact.last,
            "Email": contact.email if self.chance(0.95) else "",
            # Contacts have no country of their own: the CRM keeps them international.
            "Phone Number": phone_format(contact.phone, "international")
            if self.chance(0.7)
            else "",
            "Job Title": contact.title,
            "Associated Company ID": c.crm_id,
            "Create Date": hubspot_time(contact.created),
            "Last Modified Date": hubspot_time(self.between(contact.created, self.now)),
        }

    def draw_deals(self, c: Customer) -> list[dict[str, Any]]:
        """Drawn before the company row, whose lifecycle stage follows its open deals."""
        deals = []
        for _ in range(self.weighted(((0, 2), (1, 4), (2, 3), (3, 2), (4, 1)))):
            created = self.between(
                max(c.created, self.now - dt.timedelta(days=700)), self.now - dt.timedelta(days=2)
            )
            if self.chance(0.65):
                close = self.between(created, self.now - dt.timedelta(days=1))
                won = self.chance(0.7 if c.orders else 0.3)
                stage = "Closed Won" if won else "Closed Lost"
            else:
                close = self.now + dt.timedelta(days=self.rng.randrange(5, 120))
                stage = self.weighted(HUBSPOT_STAGES)
                c.open_deal = True
            deals.append(
                {
                    "Record ID": "",
                    "Deal Name": f"{c.name} - {self.pick(DEAL_TOPICS)}",
                    "Pipeline": "Sales Pipeline",
                    "Deal Stage": stage,
                    "Amount": money(Decimal(self.rng.randrange(20, 1500) * 100)),
                    "Currency": c.country.currency,
                    "Close Date": close.strftime("%Y-%m-%d 00:00"),
                    "Deal owner": c.owner if self.chance(0.8) else self.pick(SALES_REPS),
                    "Associated Company ID": "",
                    "Create Date": hubspot_time(created),
                    "Last Modified Date": hubspot_time(self.between(created, min(close, self.now))),
                }
            )
        return deals

    # -- ERP ----------------------------------------------------------------------------

    def render_erp(self, c: Customer) -> None:
        if not c.in_erp:
            return
        if c.primary == "erp":
            c.primary_has_phone = self.chance(0.6)
            phone = c.phone if c.primary_has_phone else ""
            self.record_truth(c, "erp", c.erp_id, "primary")
            self.rows["erp/customers.jsonl"].append(
                self.stripe_customer(c, c.erp_id, c.email, phone, "e164")
            )
            return
        name, phone, style = "", c.phone if self.chance(0.6) else "", "e164"
        if c.kind == "organization":
            mode = self.weighted((("domain", 75), ("tax", 12), ("phone", 13)))
            if mode == "tax" and c.country.code == "US":
                mode = "phone"  # the CRM keeps no EIN
            if mode == "tax" and not c.crm_vat:
                c.crm_vat = self.crm_vat_text(c.tax_id)
                self.set_crm_vat(c)
            if mode == "domain":
                email = self.new_email([self.pick(c.country.billing_boxes), "billing"], c.domain)
            else:  # a free-mail address: neither the e-mail nor its domain links
                email = self.new_email(
                    [f"{slug(c.name, '')}.{self.pick(('ap', 'finance'))}"],
                    self.pick(c.country.free_mail),
                )
                phone = c.phone if mode == "phone" else ""
                style = self.pick(("e164", "national", "00"))
            # The strongest key decides how the resolver links it.
            variant = "tax_id" if c.crm_vat else mode
        elif c.erp_fuzzy:
            nickname = NICKNAMES.get(c.first) or f"{c.first[0]}."
            name = f"{nickname} {c.last}"
            email, phone = self.person_email(nickname.rstrip("."), c.last, c.country), ""
            variant = "fuzzy"
            self.expected_extra += 1
            self.planted["unlinked_across_systems"].append(
                {
                    "refs": {"crm": c.crm_id, "erp": c.erp_id},
                    "how": f"{c.name} in the CRM; {name}, another e-mail, no phone in the ERP",
                    "expected": "two customers (no deterministic key; for probabilistic matching)",
                }
            )
        else:
            variant = self.link_variant(c)
            if variant == "phone":
                email = self.person_email(c.first, c.last, c.country)
                phone, style = c.phone, self.pick(("national", "00", "dashes"))
            else:
                email = self.email_variant(c.email, variant)
        if variant != "fuzzy":
            self.note_link(c, variant, {"crm": c.crm_id, "erp": c.erp_id})
        self.record_truth(
            c, "erp", c.erp_id, "unlinked:fuzzy" if variant == "fuzzy" else f"linked:{variant}"
        )
        self.rows["erp/customers.jsonl"].append(
            self.stripe_customer(c, c.erp_id, email, phone, style, name=name)
        )

    def set_crm_vat(self, c: Customer) -> None:
        """The CRM row is already drawn: give it the VAT number it should carry."""
        for row in self.rows["crm/companies.csv"]:
            if row["Record ID"] == c.crm_id:
                row["VAT Number"] = c.crm_vat

    def stripe_customer(
        self,
        c: Customer,
        erp_id: str,
        email: str,
        phone: str,
        phone_style: str,
        *,
        name: str = "",
        tax_text: str = "",
        created: dt.datetime | None = None,
    ) -> dict[str, Any]:
        b2b = c.kind == "organization"
        created = created or self.between(c.created, self.now - dt.timedelta(days=30))
        updated = self.between(created, self.now - dt.timedelta(hours=1))
        address = {
            "line1": c.line1,
            "line2": None,
            "city": c.city[0],
            "postal_code": c.postal,
            "state": c.city[1],
            "country": c.country.code,
        }
        if b2b and self.chance(0.3):
            address["line2"] = (
                self.pick(("Suite", "Floor", "Unit")) + f" {self.rng.randrange(2, 40)}"
            )
        shipping = None
        if b2b and self.chance(0.2):
            city = self.pick(c.country.cities)
            shipping = {
                "name": f"{c.name} Warehouse",
                "address": {
                    "line1": self.pick(c.country.streets) + f" {self.rng.randrange(1, 300)}",
                    "city": city[0],
                    "postal_code": self.pattern(city[2]),
                    "country": c.country.code,
                },
            }
        tax_ids = []
        if b2b:
            kind = (
                "us_ein"
                if c.country.code == "US"
                else ("gb_vat" if c.country.code == "GB" else "eu_vat")
            )
            tax_ids.append(
                {
                    "id": self.stripe_id("txi_"),
                    "type": kind,
                    "value": tax_text or c.tax_id,
                    "country": c.country.code,
                }
            )
        return {
            "id": erp_id,
            "object": "customer",
            "name": name or (c.legal_name if b2b else c.name),
            "email": email,
            "phone": phone_format(phone, phone_style) if phone else None,
            "address": address,
            "shipping": shipping,
            "tax_ids": {"object": "list", "data": tax_ids},
            "currency": c.country.currency.lower(),
            "preferred_locales": [c.country.locale],
            "metadata": {"customer_type": "business" if b2b else "individual"},
            "created": unix(created),
            "updated": unix(updated),
        }

    # -- help desk ----------------------------------------------------------------------

    def render_helpdesk(self, c: Customer) -> None:
        if not c.in_helpdesk:
            return
        if c.kind == "organization":
            org_id = int(self.number_id(12))
            requesters = self.rng.sample(c.contacts, min(len(c.contacts), self.rng.randrange(1, 3)))
            for contact in requesters:
                user_id = self.number_id(13)
                c.helpdesk_ids.append(user_id)
                email = (
                    contact.email if self.chance(0.7) else self.email_variant(contact.email, "case")
                )
                self.record_truth(c, "helpdesk", user_id, "linked:domain")
                self.note_link(c, "domain", {"crm": c.crm_id, "helpdesk": user_id})
                user = self.zendesk_user(
                    c,
                    user_id,
                    f"{contact.first} {contact.last}",
                    email,
                    contact.phone,
                    "international",
                    org_id,
                )
                self.rows["helpdesk/users.jsonl"].append(user)
                if c.crm_id and len(self.planted["conflicts"]) < 24 and self.chance(0.2):
                    self.planted["conflicts"].append(
                        {
                            "field": "phone",
                            "crm_record": c.crm_id,
                            "crm": c.phone,
                            "helpdesk_record": user_id,
                            "helpdesk": contact.phone,
                            "expected": "crm (the CRM owns customer fields)",
                        }
                    )
                self.add_tickets(c, user_id, org_id)
            return
        user_id = self.number_id(13)
        c.helpdesk_ids.append(user_id)
        email, phone, style = c.email, c.phone if self.chance(0.5) else "", "international"
        role = "primary"
        if c.primary != "helpdesk":
            variant = self.link_variant(c)
            if variant == "phone":
                email = self.person_email(c.first, c.last, c.country)
                phone, style = c.phone, self.pick(("00", "national", "dashes"))
            else:
                email = self.email_variant(c.email, "upper" if variant == "case" else variant)
                if phone and self.chance(0.2):
                    phone = self.new_phone(c.country, mobile=True)  # a new mobile
                    if c.in_crm and c.primary_has_phone and len(self.planted["conflicts"]) < 36:
                        self.planted["conflicts"].append(
                            {
                                "field": "phone",
                                "crm_record": c.crm_id,
                                "crm": c.phone,
                                "helpdesk_record": user_id,
                                "helpdesk": phone,
                                "expected": "crm (the CRM owns customer fields)",
                            }
                        )
            role = f"linked:{variant}"
            primary_id = c.crm_id if c.in_crm else c.erp_id
            self.note_link(c, variant, {c.primary: primary_id, "helpdesk": user_id})
        self.record_truth(c, "helpdesk", user_id, role)
        name = c.name if self.chance(0.8) else c.first
        self.rows["helpdesk/users.jsonl"].append(
            self.zendesk_user(c, user_id, name, email, phone, style, None)
        )
        self.add_tickets(c, user_id, None)

    def zendesk_user(
        self,
        c: Customer,
        user_id: str,
        name: str,
        email: str,
        phone: str,
        style: str,
        org_id: int | None,
    ) -> dict[str, Any]:
        created = self.between(
            max(c.created, self.now - dt.timedelta(days=900)), self.now - dt.timedelta(days=3)
        )
        return {
            "id": int(user_id),
            "url": f"{ZENDESK_HOST}/users/{user_id}.json",
            "name": name,
            "email": email or None,
            "phone": phone_format(phone, style) if phone else None,
            "role": "end-user",
            "verified": True,
            "locale": c.country.locale,
            "time_zone": c.country.time_zone,
            "organization": {"id": org_id, "name": c.legal_name if self.chance(0.3) else c.name}
            if org_id
            else None,
            "user_fields": {
                "account_type": "business" if org_id else "consumer",
                "country": c.country.code,
            },
            "tags": [],
            "created_at": iso(created),
            "updated_at": iso(self.between(created, self.now - dt.timedelta(hours=1))),
        }

    def add_tickets(self, c: Customer, user_id: str, org_id: int | None) -> None:
        count = self.weighted(((0, 2), (1, 4), (2, 3), (3, 2), (5, 1), (8, 1)))
        templates = B2B_TICKETS if org_id else B2C_TICKETS
        for _ in range(count):
            opened = self.ago(0.2, 540)
            priority = self.weighted((("low", 20), ("normal", 55), ("high", 18), ("urgent", 7)))
            median_hours = {"urgent": 3, "high": 10, "normal": 26, "low": 60}[priority]
            hours = max(0.1, median_hours * math.exp(self.rng.gauss(0, 0.8)))
            solved = opened + dt.timedelta(seconds=int(hours * 3600))
            subject = self.pick(templates)
            order = self.pick(c.orders) if c.orders else None
            invoice = self.pick(c.invoices) if c.invoices else None
            if ("{order}" in subject and order is None) or ("{invoice}" in subject and not invoice):
                subject = "Question about my account"
            if solved < self.now - dt.timedelta(hours=1) and self.chance(0.95):
                closed = solved + dt.timedelta(days=4)
                status = "closed" if closed < self.now else "solved"
                updated = closed if status == "closed" else solved
            else:
                solved = None
                status = self.weighted((("new", 2), ("open", 5), ("pending", 3), ("hold", 1)))
                updated = self.between(opened, self.now - dt.timedelta(minutes=5))
            self.tickets.append(
                Ticket(
                    user_id,
                    org_id,
                    subject,
                    status,
                    priority if self.chance(0.9) else None,
                    self.weighted(
                        (("email", 5), ("web", 3), ("voice", 1), ("chat", 2), ("api", 1))
                    ),
                    self.weighted((("question", 4), ("incident", 3), ("problem", 1), ("task", 1))),
                    opened,
                    solved,
                    updated,
                    order,
                    invoice,
                )
            )

    # -- planted problems ---------------------------------------------------------------

    def plant_within_system_duplicates(self) -> None:
        k = max(1, round(self.count / 500))
        orgs = [c for c in self.customers if c.kind == "organization" and c.in_crm]
        persons_crm = [
            c for c in self.customers if c.kind == "person" and c.in_crm and not c.in_helpdesk
        ]
        # CRM: the same company entered twice, with its legal form; same web domain.
        for c in self.rng.sample(orgs, min(k, len(orgs))):
            dup_id = self.number_id(10)
            row = self.crm_company_row(
                c, dup_id, c.legal_name, "", self.between(c.created, self.now), "national"
            )
            row["Company Email"] = ""
            row["VAT Number"] = ""
            self.late["crm/companies.csv"].append(row)
            self.record_truth(c, "crm", dup_id, "duplicate:domain")
            self.planted["duplicates_within_system"].append(
                {
                    "system": "crm",
                    "entity": "customer",
                    "refs": [c.crm_id, dup_id],
                    "how": "the same company entered twice; same web domain",
                    "expected": "linked to one customer",
                }
            )
        # CRM: a person entered twice under a nickname and another e-mail; no shared key.
        for c in self.rng.sample(persons_crm, min(k, len(persons_crm))):
            dup_id = self.number_id(11)
            nickname = NICKNAMES.get(c.first) or f"{c.first[0]}."
            email = self.person_email(nickname.rstrip("."), c.last, c.country)
            self.late["crm/people.csv"].append(
                self.crm_person_row(
                    c,
                    dup_id,
                    self.between(c.created, self.now),
                    first=nickname,
                    email=email,
                    phone=False,
                )
            )
            self.record_truth(c, "crm", dup_id, "unlinked:fuzzy")
            self.expected_extra += 1
            self.planted["duplicates_within_system"].append(
                {
                    "system": "crm",
                    "entity": "customer",
                    "refs": [c.crm_id, dup_id],
                    "how": f"{c.first} / {nickname} {c.last}: nickname, another e-mail, no phone",
                    "expected": "two customers (no deterministic key; for probabilistic matching)",
                }
            )
        # ERP: a second billing account for a company, same VAT id typed differently.
        erp_orgs = [
            c
            for c in self.customers
            if c.kind == "organization" and c.in_erp and c.country.code != "US"
        ]
        for c in self.rng.sample(erp_orgs, min(k, len(erp_orgs))):
            dup_id = self.stripe_id("cus_")
            email = self.new_email([f"{slug(c.name, '')}.billing"], self.pick(c.country.free_mail))
            tax_text = f"{c.tax_id[:2].lower()} {c.tax_id[2:]}"
            self.late["erp/customers.jsonl"].append(
                self.stripe_customer(
                    c, dup_id, email, "", "e164", tax_text=tax_text, created=self.ago(20, 60)
                )
            )
            self.add_invoice(c, dup_id, None, True, total=Decimal(self.rng.randrange(200, 4000)))
            self.record_truth(c, "erp", dup_id, "duplicate:tax_id")
            self.planted["duplicates_within_system"].append(
                {
                    "system": "erp",
                    "entity": "customer",
                    "refs": [c.erp_id, dup_id],
                    "how": f"a second billing account; VAT id typed as {tax_text!r}",
                    "expected": "linked to one customer",
                }
            )
        # Help desk: the same consumer signed up twice, with a plus-tag e-mail.
        persons_hd = [
            c
            for c in self.customers
            if c.kind == "person"
            and c.in_helpdesk
            and ignores_plus_tags(c.email.rpartition("@")[2])
        ]
        for c in self.rng.sample(persons_hd, min(k, len(persons_hd))):
            dup_id = self.number_id(13)
            c.helpdesk_ids.append(dup_id)
            email = self.email_variant(c.email, "plus")
            self.late["helpdesk/users.jsonl"].append(
                self.zendesk_user(c, dup_id, c.first, email, "", "e164", None)
            )
            self.add_tickets(c, dup_id, None)
            self.record_truth(c, "helpdesk", dup_id, "duplicate:email")
            self.planted["duplicates_within_system"].append(
                {
                    "system": "helpdesk",
                    "entity": "customer",
                    "refs": [c.helpdesk_ids[0], dup_id],
                    "how": f"signed up again as {email}",
                    "expected": "linked to one customer",
                }
            )

    def plant_stale_versions(self) -> None:
        """Newer version first, the older one later in the same file: the older is stale."""
        k = max(2, round(self.count / 250))
        rows = self.rows["crm/companies.csv"]
        companies = [r for r in rows if r["Lifecycle Stage"] == "Customer"]
        companies += [r for r in rows if r["Lifecycle Stage"] not in ("Customer", "Subscriber")]
        for row in companies[:k]:
            older = dict(row)
            newer_time = dt.datetime.strptime(row["Last Modified Date"], "%Y-%m-%d %H:%M")
            older["Last Modified Date"] = (newer_time - dt.timedelta(days=30)).strftime(
                "%Y-%m-%d %H:%M"
            )
            older["Lifecycle Stage"] = "Subscriber"
            self.late["crm/companies.csv"].append(older)
            self.planted["stale"].append(
                {
                    "system": "crm",
                    "entity": "customer",
                    "file": "crm/companies.csv",
                    "external_id": row["Record ID"],
                    "how": f"the older version (Subscriber) after the newer one "
                    f"({row['Lifecycle Stage']})",
                }
            )
        solved = [t for t in self.tickets if t.status in ("solved", "closed")][:k]
        for ticket in solved:
            ticket.stale = True
        paid = [i for i in self.invoices if i.state_on(self.today) == "paid" and i.payments]
        for invoice in paid[: max(1, k // 2)]:
            invoice.stale = True

    def plant_bad_rows(self) -> None:
        year = self.today.year
        erp_customer = next(c for c in self.customers if c.in_erp)
        crm_company = next(c for c in self.customers if c.kind == "organization")
        bad_person = {
            "Record ID": self.number_id(11),
            "First Name": "María",
            "Last Name": "Ortega",
            "Email": "maria.ortega@gmail,com",
            "Phone Number": "",
            "Street Address": "",
            "City": "Madrid",
            "Postal Code": "",
            "Country/Region": "Spain",
            "Date of Birth": "",
            "Lifecycle Stage": "Lead",
            "Contact owner": "Lucía Romero",
            "Create Date": hubspot_time(self.ago(3, 9)),
            "Last Modified Date": hubspot_time(self.ago(1, 2)),
        }
        self.late["crm/people.csv"].append(bad_person)
        contact_id = self.number_id(11)
        # An unquoted comma in the job title: one cell too many.
        self.late["crm/contacts.csv"].append(
            [
                contact_id,
                "Pieter",
                "Bakker",
                "pieter.bakker@" + crm_company.domain,
                "",
                "Head of Sales",
                "Benelux",
                crm_company.crm_id,
                hubspot_time(self.ago(30, 60)),
                hubspot_time(self.ago(1, 20)),
            ]
        )
        bad_invoice_id = self.stripe_id("in_", 24)
        unknown_customer = self.stripe_id("cus_")
        bad_order = f"SO-{year}-00000"  # numbering starts at 1: never a real order
        unknown_user = self.number_id(13)
        helpdesk_bad_user = self.number_id(13)
        self.bad_rows = [
            (
                "crm",
                "customer",
                "crm/people.csv",
                bad_person["Record ID"],
                "an invalid e-mail address",
                "not a valid e-mail address",
            ),
            (
                "crm",
                "contact",
                "crm/contacts.csv",
                contact_id,
                "a malformed CSV row (an unquoted comma)",
                "cells, the header has",
            ),
            (
                "erp",
                "invoice",
                "erp/invoices.csv",
                bad_invoice_id,
                f"an impossible date ({year}-02-30)",
                "is not a date",
            ),
            (
                "erp",
                "order",
                "erp/orders.csv",
                bad_order,
                "an order for a customer the ERP export does not contain",
                "is not known in erp",
            ),
            (
                "helpdesk",
                "customer",
                "helpdesk/users.jsonl",
                helpdesk_bad_user,
                "an invalid phone number",
                "not a valid phone number",
            ),
            (
                "helpdesk",
                "ticket",
                "helpdesk/tickets.jsonl",
                "",
                "a ticket whose requester was deleted from the export",
                "is not known in helpdesk",
            ),
        ]
        self.bad_invoice = (bad_invoice_id, erp_customer)
        self.bad_order = (bad_order, unknown_customer)
        self.bad_user = helpdesk_bad_user
        self.unknown_user = unknown_user

    # -- serialization ------------------------------------------------------------------

    def serialize(self) -> World:
        files: dict[str, str] = {}
        # Orders, invoices and tickets are numbered in date order, as the systems would.
        for seq, order in enumerate(sorted(self.orders, key=lambda o: (o.date, o.changed)), 1):
            order.number = f"SO-{order.date.year}-{seq:05d}"
        for seq, inv in enumerate(sorted(self.invoices, key=lambda i: (i.issue, i.id)), 1):
            inv.number = f"INV-{inv.issue.year}-{seq:06d}"
        first_ticket = 10000 + self.rng.randrange(1000)
        for seq, ticket in enumerate(sorted(self.tickets, key=lambda t: t.opened)):
            ticket.id = first_ticket + seq

        orders = self.rows["erp/orders.csv"]
        for order in sorted(self.orders, key=lambda o: o.number):
            orders.append(self.order_row(order))
        bad_order, unknown_customer = self.bad_order
        orders.append(
            {
                "Order No": bad_order,
                "Customer ID": unknown_customer,
                "Order Date": (self.today - dt.timedelta(days=3)).isoformat(),
                "Status": "CF",
                "Currency": "EUR",
                "Net Total": "59.00",
                "Lines": json.dumps(
                    [
                        {
                            "sku": "HW-SCN-MINI",
                            "description": "Pocket scanner Mini",
                            "quantity": 1,
                            "unit_price": "59.00",
                        }
                    ]
                ),
                "Last Changed": erp_time(self.ago(1, 3)),
            }
        )

        invoices, payments = self.rows["erp/invoices.csv"], self.rows["erp/payments.jsonl"]
        charges = []
        for inv in sorted(self.invoices, key=lambda i: i.number):
            invoices.append(self.invoice_row(inv))
            if inv.stale:
                older = {
                    **self.invoice_row(inv),
                    "Amount Paid": "0.00",
                    "Amount Due": money(inv.total),
                    "State": "open",
                    # Before issuing (09:00) and every payment: strictly older.
                    "Last Changed": erp_time(
                        dt.datetime.combine(inv.issue, dt.time(8), tzinfo=dt.UTC)
                    ),
                }
                self.late["erp/invoices.csv"].append(older)
                self.planted["stale"].append(
                    {
                        "system": "erp",
                        "entity": "invoice",
                        "file": "erp/invoices.csv",
                        "external_id": inv.id,
                        "how": "the invoice as issued (open, nothing paid) after its paid version",
                    }
                )
            for payment in inv.payments:
                charges.append((payment.at, payment.id, self.charge(inv, payment)))
        bad_invoice_id, c = self.bad_invoice
        year = self.today.year
        invoices.append(
            {
                "Invoice ID": bad_invoice_id,
                "Invoice Number": f"INV-{year}-000000",
                "Customer ID": c.erp_id,
                "Order No": "",
                "Invoice Date": f"{year}-02-30",
                "Due Date": f"{year}-03-30",
                "Currency": c.country.currency,
                "Total": "120.00",
                "Amount Paid": "0.00",
                "Amount Due": "120.00",
                "State": "open",
                "Last Changed": erp_time(self.ago(1, 5)),
            }
        )
        payments.extend(row for _, _, row in sorted(charges, key=lambda t: (t[0], t[1])))

        tickets = self.rows["helpdesk/tickets.jsonl"]
        for ticket in sorted(self.tickets, key=lambda t: t.id):
            tickets.append(self.ticket_row(ticket))
            if ticket.stale:
                older = self.ticket_row(ticket)
                older["status"] = "open"
                # Halfway to the newer update (solved or closed): strictly older.
                older["updated_at"] = iso(ticket.opened + (ticket.updated - ticket.opened) / 2)
                older["metric_set"] = {
                    **older["metric_set"],
                    "solved_at": None,
                    "full_resolution_time_in_minutes": {"calendar": None},
                }
                self.late["helpdesk/tickets.jsonl"].append(older)
                self.planted["stale"].append(
                    {
                        "system": "helpdesk",
                        "entity": "ticket",
                        "file": "helpdesk/tickets.jsonl",
                        "external_id": str(ticket.id),
                        "how": f"the ticket as opened (open) after its {ticket.status} version",
                    }
                )
        orphan = self.ticket_row(self.tickets[0]) if self.tickets else None
        if orphan is not None:
            orphan["id"] = first_ticket + len(self.tickets) + 7
            orphan["url"] = f"{ZENDESK_HOST}/tickets/{orphan['id']}.json"
            orphan["requester_id"] = int(self.unknown_user)
            orphan["submitter_id"] = int(self.unknown_user)
            orphan["organization_id"] = None
            tickets.append(orphan)
            self.bad_rows = [
                (*b[:3], str(orphan["id"]), *b[4:]) if b[1] == "ticket" else b
                for b in self.bad_rows
            ]
        hd_user = next((c for c in self.customers if c.kind == "person"), self.customers[0])
        bad_user = self.zendesk_user(hd_user, self.bad_user, "Test User", "", "", "e164", None)
        bad_user["phone"] = "+49 30 12"
        bad_user["email"] = None
        self.late["helpdesk/users.jsonl"].append(bad_user)

        for dataset in DATASETS:
            rows = self.rows[dataset.file] + self.late.get(dataset.file, [])
            self.rows[dataset.file] = rows
            if dataset.file.endswith(".csv"):
                files[dataset.file] = _csv_text(HEADERS[dataset.file], rows)
            else:
                files[dataset.file] = "".join(
                    json.dumps(row, ensure_ascii=False) + "\n" for row in rows
                )
        files["truth.csv"] = _csv_text(
            ["true_customer", "kind", "system", "entity", "external_id", "role"],
            [list(t) for t in sorted(self.truth, key=lambda t: (t[0], t[2], t[4]))],
        )
        files["manifest.json"] = json.dumps(self.manifest(), indent=2, ensure_ascii=False) + "\n"
        return World(files=files, manifest=self.manifest())

    def order_row(self, order: Order) -> dict[str, Any]:
        return {
            "Order No": order.number,
            "Customer ID": order.erp_customer_id,
            "Order Date": order.date.isoformat(),
            "Status": order.status,
            "Currency": order.customer.country.currency,
            "Net Total": money(order.net),
            "Lines": json.dumps(order.lines, ensure_ascii=False, separators=(",", ":")),
            "Last Changed": erp_time(order.changed),
        }

    def invoice_row(self, inv: Invoice) -> dict[str, Any]:
        return {
            "Invoice ID": inv.id,
            "Invoice Number": inv.number,
            "Customer ID": inv.erp_customer_id,
            "Order No": inv.order.number if inv.order else "",
            "Invoice Date": inv.issue.isoformat(),
            "Due Date": inv.due.isoformat(),
            "Currency": inv.customer.country.currency,
            "Total": money(inv.total),
            "Amount Paid": money(inv.paid),
            "Amount Due": money(max(inv.total - inv.paid, 0)),
            "State": inv.state_on(self.today),
            "Last Changed": erp_time(inv.changed),
        }

    def charge(self, inv: Invoice, payment: Payment) -> dict[str, Any]:
        failed = payment.status == "failed"
        return {
            "id": payment.id,
            "object": "charge",
            "amount": money(payment.amount),
            "amount_refunded": "0.00",
            "currency": inv.customer.country.currency.lower(),
            "customer": inv.erp_customer_id,
            "invoice": inv.id,
            "created": unix(payment.at),
            "status": payment.status,
            "paid": not failed,
            "payment_method_details": {"type": payment.method},
            "outcome": {"type": "issuer_declined" if failed else "authorized"},
            "failure_message": "Your card was declined." if failed else None,
            "metadata": {"invoice_number": inv.number},
        }

    def ticket_row(self, ticket: Ticket) -> dict[str, Any]:
        subject = ticket.subject.format(
            order=ticket.order.number if ticket.order else "",
            invoice=ticket.invoice.number if ticket.invoice else "",
        )
        minutes = (
            int((ticket.solved - ticket.opened).total_seconds() // 60) if ticket.solved else None
        )
        return {
            "id": ticket.id,
            "url": f"{ZENDESK_HOST}/tickets/{ticket.id}.json",
            "type": ticket.type,
            "subject": subject,
            "status": ticket.status,
            "priority": ticket.priority,
            "via": {"channel": ticket.channel},
            "requester_id": int(ticket.requester_id),
            "submitter_id": int(ticket.requester_id),
            "organization_id": ticket.organization_id,
            "tags": [],
            "created_at": iso(ticket.opened),
            "updated_at": iso(ticket.updated),
            "metric_set": {
                "solved_at": iso(ticket.solved) if ticket.solved else None,
                "full_resolution_time_in_minutes": {"calendar": minutes},
            },
        }

    def manifest(self) -> dict[str, Any]:
        rows = {d.file: len(self.rows[d.file]) for d in DATASETS}
        partner = [c.crm_id for c in self.customers if c.owner == PARTNER_OWNER]
        return {
            "seed": self.seed,
            "customers": self.count,
            "today": self.today.isoformat(),
            "datasets": [
                {
                    "system": d.system,
                    "kind": d.kind,
                    "entity": d.entity,
                    "file": d.file,
                    "mapping": d.mapping,
                    "rows": rows[d.file],
                }
                for d in DATASETS
            ],
            "expected": {
                "customers": self.count + self.expected_extra,
                "organizations": sum(c.kind == "organization" for c in self.customers),
                "persons": sum(c.kind == "person" for c in self.customers),
            },
            "planted": {
                "cross_system_examples": [
                    e for how in sorted(self.link_examples) for e in self.link_examples[how]
                ],
                "duplicates_within_system": self.planted["duplicates_within_system"],
                "unlinked_across_systems": self.planted["unlinked_across_systems"],
                "conflicts": self.planted["conflicts"],
                "stale": self.planted["stale"],
                "bad_rows": [
                    {
                        "system": s,
                        "entity": e,
                        "file": f,
                        "external_id": x,
                        "problem": p,
                        "error_contains": m,
                    }
                    for s, e, f, x, p, m in self.bad_rows
                ],
                "partner_territory": {"owner": PARTNER_OWNER, "crm_records": partner},
            },
        }


def _csv_text(header: list[str], rows: list[Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(row if isinstance(row, list) else [row.get(h, "") for h in header])
    return buffer.getvalue()
