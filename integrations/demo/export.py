"""The demo world as files: the simulators' world, exported the way each system exports it.

``build_world`` generates the population of ``integrations/simulators/generate.py`` (the
same seed gives the same people, companies, duplicates, conflicts and invoices the HTTP
simulators serve) as of midnight UTC of ``today``, and writes each system's records in
its own export format: HubSpot-like CSV for the CRM, Stripe-like JSON Lines plus ERP CSV
exports for billing, Zendesk-like JSON Lines for the help desk. The mapping files in
``mappings/`` translate them to canonical fields.

On top of the world, the files carry what only exports have: an older version of a few
records written after the newer one (``stale``) and a few malformed rows (``bad_rows``).
``truth.csv`` says which source record belongs to which real customer, and how the hub
is expected to link it; ``manifest.json`` lists every planted problem with its ids.

Same seed and same ``today`` → byte-identical files.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from customers.identity.rules import KEY_PRIORITY, customer_kind, identity_keys
from integrations.pipeline.mapping import Mapping, RecordError
from integrations.simulators.generate import (
    OWNER_NAMES,
    PARTNER_OWNER,
    Generated,
    Party,
    generate,
    stripe_id,
)

MAPPINGS_DIR = Path(__file__).resolve().parent / "mappings"
ZENDESK_HOST = "https://concord-demo.zendesk.com/api/v2"


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

# HubSpot's export writes labels where the API has internal values.
LIFECYCLE_LABELS = {
    "subscriber": "Subscriber",
    "lead": "Lead",
    "marketingqualifiedlead": "Marketing Qualified Lead",
    "salesqualifiedlead": "Sales Qualified Lead",
    "opportunity": "Opportunity",
    "customer": "Customer",
    "evangelist": "Evangelist",
    "other": "Other",
}
DEAL_STAGE_LABELS = {
    "appointmentscheduled": "Appointment Scheduled",
    "qualifiedtobuy": "Qualified To Buy",
    "presentationscheduled": "Presentation Scheduled",
    "decisionmakerboughtin": "Decision Maker Bought-In",
    "contractsent": "Contract Sent",
    "closedwon": "Closed Won",
    "closedlost": "Closed Lost",
}
# The ERP's order status codes for the billing system's order states.
ORDER_CODES = {
    "open": "OP",
    "submitted": "CF",
    "processing": "SH",
    "complete": "DL",
    "canceled": "CX",
}
KEY_LABELS = {
    "tax_id": "the same VAT id (or EIN), however it is typed",
    "national_id": "the same national id",
    "email": "the same e-mail address (case, dots and +tags aside)",
    "phone": "the same phone number in another format",
    "domain": "the same company web domain (website, e-mail)",
}
DAY_MS = 86_400_000


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
    """The simulators' world of ``seed`` as export files; pure and deterministic."""
    if customers < 20:
        raise ValueError("the demo world needs at least 20 customers")
    anchor = dt.datetime.combine(today, dt.time.min, tzinfo=dt.UTC)
    world = generate(customers=customers, seed=seed, now=anchor.timestamp())
    return _Export(world, seed=seed, customers=customers, today=today).run()


# -- formats ----------------------------------------------------------------------------


def _moment(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def hubspot_time(ms: int) -> str:
    return _moment(ms).strftime("%Y-%m-%d %H:%M")


def erp_time(ms: int) -> str:
    return _moment(ms).strftime("%Y-%m-%d %H:%M:%S")


def iso(ms: int) -> str:
    return _moment(ms).strftime("%Y-%m-%dT%H:%M:%SZ")


def day(ms: int) -> str:
    return _moment(ms).date().isoformat()


def money(minor: int) -> str:
    return str((Decimal(minor) / 100).quantize(Decimal("0.01")))


def _csv_text(header: list[str], rows: list[Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(row if isinstance(row, list) else [row.get(h, "") for h in header])
    return buffer.getvalue()


def _jsonl_text(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _blank(value: Any) -> Any:
    return "" if value is None else value


# -- the export -------------------------------------------------------------------------


class _Export:
    def __init__(self, world: Generated, *, seed: int, customers: int, today: dt.date) -> None:
        self.world = world
        self.seed = seed
        self.count = customers
        self.today = today
        self.rng = random.Random(f"{seed}:export")
        self.crm, self.erp, self.hd = (world.rows[s] for s in ("crm", "erp", "helpdesk"))
        self.rows: dict[str, list[Any]] = {d.file: [] for d in DATASETS}
        self.late: dict[str, list[Any]] = defaultdict(list)  # written after the rest
        self.stale: list[dict[str, Any]] = []
        self.bad_rows: list[dict[str, Any]] = []
        # (system, external id as the hub stores it) → the party it belongs to
        self.owner: dict[tuple[str, str], Party] = {
            ref: party for party in world.parties for ref in _customer_refs(party)
        }

    def run(self) -> World:
        self.render_crm()
        self.render_erp()
        self.render_helpdesk()
        self.plant_bad_rows()
        files: dict[str, str] = {}
        for dataset in DATASETS:
            rows = self.rows[dataset.file] + self.late.get(dataset.file, [])
            self.rows[dataset.file] = rows
            if dataset.file.endswith(".csv"):
                files[dataset.file] = _csv_text(HEADERS[dataset.file], rows)
            else:
                files[dataset.file] = _jsonl_text(rows)
        truth = _Truth(self, files)
        files["truth.csv"] = _csv_text(
            ["true_customer", "kind", "system", "entity", "external_id", "role"],
            [list(t) for t in sorted(truth.rows, key=lambda t: (t[0], t[2], t[4]))],
        )
        manifest = self.manifest(truth)
        files["manifest.json"] = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
        return World(files=files, manifest=manifest)

    def pick(self, rows: list[Any], share: float) -> list[Any]:
        """A few of ``rows`` (at least one when there are any), in their order."""
        chosen = self.rng.sample(
            range(len(rows)), min(len(rows), max(1, round(share * self.count)))
        )
        return [rows[i] for i in sorted(chosen)]

    # -- CRM ----------------------------------------------------------------------------

    def render_crm(self) -> None:
        companies = self.rows["crm/companies.csv"]
        for company in self.crm["companies"]:
            companies.append(self.company_row(company))
        # An older version of a few companies (lifecycle "Subscriber", 30 days earlier),
        # exported after the newer one.
        for row in self.pick(companies, 1 / 250):
            older = {
                **row,
                "Lifecycle Stage": "Subscriber",
                "Last Modified Date": hubspot_time(
                    self._ms(row["Last Modified Date"]) - 30 * DAY_MS
                ),
            }
            self.late["crm/companies.csv"].append(older)
            self.stale.append(
                {
                    "system": "crm",
                    "entity": "customer",
                    "file": "crm/companies.csv",
                    "external_id": f"company:{row['Record ID']}",
                    "how": "the company as it was 30 days earlier (Subscriber), after the newer",
                }
            )
        for contact in self.crm["contacts"]:
            if contact.get("associatedcompanyid"):
                self.rows["crm/contacts.csv"].append(self.contact_row(contact))
            else:
                self.rows["crm/people.csv"].append(self.person_row(contact))
        for deal in self.crm["deals"]:
            self.rows["crm/deals.csv"].append(self.deal_row(deal))

    @staticmethod
    def _ms(text: str) -> int:
        moment = dt.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=dt.UTC)
        return int(moment.timestamp() * 1000)

    def company_row(self, c: dict[str, Any]) -> dict[str, Any]:
        return {
            "Record ID": c["id"],
            "Company name": c["name"],
            "Legal Name": _blank(c.get("legal_name")),
            "Company Domain Name": _blank(c.get("domain")),
            "Website URL": _blank(c.get("website")),
            "Company Email": "",
            "Phone Number": _blank(c.get("phone")),
            "Street Address": _blank(c.get("address")),
            "City": _blank(c.get("city")),
            "State/Region": "",
            "Postal Code": _blank(c.get("zip")),
            "Country/Region": _blank(c.get("country")),
            "Industry": _blank(c.get("industry")),
            "Number of Employees": _blank(c.get("numberofemployees")),
            "Lifecycle Stage": LIFECYCLE_LABELS.get(c.get("lifecyclestage") or "", ""),
            "Company owner": OWNER_NAMES.get(c.get("hubspot_owner_id") or "", ""),
            "VAT Number": _blank(c.get("vat_number")),
            "Create Date": hubspot_time(c["created_at"]),
            "Last Modified Date": hubspot_time(c["updated_at"]),
        }

    def person_row(self, c: dict[str, Any]) -> dict[str, Any]:
        return {
            "Record ID": c["id"],
            "First Name": c["firstname"],
            "Last Name": c["lastname"],
            "Email": _blank(c.get("email")),
            "Phone Number": _blank(c.get("phone")),
            "Street Address": _blank(c.get("address")),
            "City": _blank(c.get("city")),
            "Postal Code": _blank(c.get("zip")),
            "Country/Region": _blank(c.get("country")),
            "Date of Birth": "",
            "Lifecycle Stage": LIFECYCLE_LABELS.get(c.get("lifecyclestage") or "", ""),
            "Contact owner": OWNER_NAMES.get(c.get("hubspot_owner_id") or "", ""),
            "Create Date": hubspot_time(c["created_at"]),
            "Last Modified Date": hubspot_time(c["updated_at"]),
        }

    def contact_row(self, c: dict[str, Any]) -> dict[str, Any]:
        return {
            "Record ID": c["id"],
            "First Name": c["firstname"],
            "Last Name": c["lastname"],
            "Email": _blank(c.get("email")),
            "Phone Number": _blank(c.get("phone")),
            "Job Title": _blank(c.get("jobtitle")),
            "Associated Company ID": c["associatedcompanyid"],
            "Create Date": hubspot_time(c["created_at"]),
            "Last Modified Date": hubspot_time(c["updated_at"]),
        }

    def deal_row(self, d: dict[str, Any]) -> dict[str, Any]:
        return {
            "Record ID": d["id"],
            "Deal Name": d["dealname"],
            "Pipeline": "Sales Pipeline",
            "Deal Stage": DEAL_STAGE_LABELS[d["dealstage"]],
            "Amount": f"{Decimal(d['amount']):.2f}",
            "Currency": d["deal_currency_code"],
            "Close Date": d["closedate"][:10] + " 00:00",
            "Deal owner": OWNER_NAMES.get(d.get("hubspot_owner_id") or "", ""),
            "Associated Company ID": d["associations"]["companies"][0],
            "Create Date": hubspot_time(d["created_at"]),
            "Last Modified Date": hubspot_time(d["updated_at"]),
        }

    # -- ERP ----------------------------------------------------------------------------

    def render_erp(self) -> None:
        for customer in self.erp["customers"]:
            self.rows["erp/customers.jsonl"].append(self.stripe_customer(customer))
        for order in sorted(self.erp["orders"], key=lambda o: (o["created"], o["id"])):
            self.rows["erp/orders.csv"].append(self.order_row(order))
        orders = {o["id"] for o in self.erp["orders"]}
        invoices = sorted(self.erp["invoices"], key=lambda i: (i["created"], i["id"]))
        rows = self.rows["erp/invoices.csv"]
        for invoice in invoices:
            rows.append(self.invoice_row(invoice, orders))
        # The invoice as issued (open, nothing paid) after its paid version.
        paid = [r for r in rows if r["State"] == "paid"]
        for row in self.pick(paid, 1 / 500):
            issued = dt.datetime.fromisoformat(row["Invoice Date"]).replace(tzinfo=dt.UTC)
            older = {
                **row,
                "Amount Paid": "0.00",
                "Amount Due": row["Total"],
                "State": "open",
                "Last Changed": erp_time(int(issued.timestamp() * 1000) - 3_600_000),
            }
            self.late["erp/invoices.csv"].append(older)
            self.stale.append(
                {
                    "system": "erp",
                    "entity": "invoice",
                    "file": "erp/invoices.csv",
                    "external_id": row["Invoice ID"],
                    "how": "the invoice as issued (open, nothing paid) after its paid version",
                }
            )
        numbers = {i["id"]: i["number"] for i in self.erp["invoices"]}
        for charge in sorted(self.erp["charges"], key=lambda c: (c["created"], c["id"])):
            self.rows["erp/payments.jsonl"].append(self.charge_row(charge, numbers))

    def stripe_customer(self, c: dict[str, Any]) -> dict[str, Any]:
        country = c["address"]["country"]
        tax_type = {"GB": "gb_vat", "US": "us_ein"}.get(country, "eu_vat")
        return {
            "id": c["id"],
            "object": "customer",
            "name": c["name"],
            "email": c["email"],
            "phone": c["phone"],
            "address": c["address"],
            "shipping": None,
            "tax_ids": {
                "object": "list",
                "data": [
                    {
                        "id": stripe_id("txi_", c["id"], t["value"]),
                        "type": t.get("type", tax_type),
                        "value": t["value"],
                        "country": country,
                    }
                    for t in c["tax_ids"]
                ],
            },
            "currency": c["currency"],
            "preferred_locales": c["preferred_locales"],
            "invoice_prefix": c["invoice_prefix"],
            "metadata": c["metadata"],
            "created": c["created"] // 1000,
            "updated": c["created"] // 1000,  # a billing account changes through events
        }

    @staticmethod
    def _lines(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            {
                "sku": stripe_id("prod_", li["description"] or ""),
                "description": li["description"],
                "quantity": li["quantity"],
                "unit_price": money(li["unit_amount"]),
            }
            for li in items
        ]

    def order_row(self, o: dict[str, Any]) -> dict[str, Any]:
        lines = self._lines(o["line_items"])
        net = sum(li["quantity"] * li["unit_amount"] for li in o["line_items"])
        return {
            "Order No": o["id"],
            "Customer ID": o["customer"],
            "Order Date": day(o["created"]),
            "Status": ORDER_CODES[o["status"]],
            "Currency": o["currency"].upper(),
            "Net Total": money(net),
            "Lines": json.dumps(lines, ensure_ascii=False, separators=(",", ":")),
            "Last Changed": erp_time(o["updated_at"]),
        }

    def invoice_row(self, i: dict[str, Any], orders: set[str]) -> dict[str, Any]:
        order = (i.get("metadata") or {}).get("order", "")
        return {
            "Invoice ID": i["id"],
            "Invoice Number": i["number"],
            "Customer ID": i["customer"],
            "Order No": order if order in orders else "",
            "Invoice Date": day(i["created"]),
            "Due Date": day(i["due_date"] * 1000),
            "Currency": i["currency"].upper(),
            "Total": money(i["amount_due"]),
            "Amount Paid": money(i["amount_paid"]),
            "Amount Due": money(max(i["amount_due"] - i["amount_paid"], 0)),
            "State": i["status"],
            "Last Changed": erp_time(i["updated_at"]),
        }

    @staticmethod
    def charge_row(c: dict[str, Any], numbers: dict[str, str]) -> dict[str, Any]:
        return {
            "id": c["id"],
            "object": "charge",
            "amount": money(c["amount"]),
            "amount_refunded": "0.00",
            "currency": c["currency"],
            "customer": c["customer"],
            "invoice": c["invoice"],
            "created": c["created"] // 1000,
            "status": c["status"],
            "paid": c["status"] == "succeeded",
            "payment_method_details": c["payment_method_details"],
            "outcome": {"type": "authorized"},
            "failure_message": None,
            "metadata": {"invoice_number": numbers.get(c["invoice"], "")},
        }

    # -- help desk ----------------------------------------------------------------------

    def render_helpdesk(self) -> None:
        organizations = {o["id"]: o for o in self.hd["organizations"]}
        for user in self.hd["users"]:
            if user["role"] == "end-user":
                party = self.owner[("helpdesk", f"user:{user['id']}")]
                org = organizations.get(user["organization_id"])
                self.rows["helpdesk/users.jsonl"].append(self.zendesk_user(user, org, party))
        tickets = self.rows["helpdesk/tickets.jsonl"]
        for ticket in self.hd["tickets"]:
            tickets.append(self.ticket_row(ticket))
        # The ticket as opened (status open) after its solved or closed version.
        done = [t for t in tickets if t["status"] in ("solved", "closed")]
        for row in self.pick(done, 1 / 250):
            opened, updated = (
                dt.datetime.fromisoformat(row[k].replace("Z", "+00:00"))
                for k in ("created_at", "updated_at")
            )
            older = {
                **row,
                "status": "open",
                "updated_at": (opened + (updated - opened) / 2).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "metric_set": {
                    "solved_at": None,
                    "full_resolution_time_in_minutes": {"calendar": None},
                },
            }
            self.late["helpdesk/tickets.jsonl"].append(older)
            self.stale.append(
                {
                    "system": "helpdesk",
                    "entity": "ticket",
                    "file": "helpdesk/tickets.jsonl",
                    "external_id": str(row["id"]),
                    "how": f"the ticket as opened (open) after its {row['status']} version",
                }
            )

    def zendesk_user(self, u: dict[str, Any], org: dict | None, party: Party) -> dict[str, Any]:
        return {
            "id": u["id"],
            "url": f"{ZENDESK_HOST}/users/{u['id']}.json",
            "name": u["name"],
            "email": u["email"],
            "phone": u["phone"],
            "role": "end-user",
            "verified": True,
            "locale": u["locale"],
            "time_zone": u["time_zone"],
            "organization": {"id": org["id"], "name": org["name"]} if org else None,
            "user_fields": {
                "account_type": "business" if org else "consumer",
                "country": party.country,
            },
            "tags": [],
            "created_at": iso(u["created_at"]),
            "updated_at": iso(u["updated_at"]),
        }

    @staticmethod
    def ticket_row(t: dict[str, Any]) -> dict[str, Any]:
        solved = t.get("solved_at")
        minutes = (solved - t["created_at"]) // 60_000 if solved else None
        return {
            "id": t["id"],
            "url": f"{ZENDESK_HOST}/tickets/{t['id']}.json",
            "type": t["type"],
            "subject": t["subject"],
            "status": t["status"],
            "priority": t["priority"],
            "via": t["via"],
            "requester_id": t["requester_id"],
            "submitter_id": t["submitter_id"],
            "organization_id": t["organization_id"],
            "tags": t["tags"],
            "created_at": iso(t["created_at"]),
            "updated_at": iso(t["updated_at"]),
            "metric_set": {
                "solved_at": iso(solved) if solved else None,
                "full_resolution_time_in_minutes": {"calendar": minutes},
            },
        }

    # -- bad rows -----------------------------------------------------------------------

    def plant_bad_rows(self) -> None:
        """One malformed row per kind of problem, each a dead letter after the load."""
        year = self.today.year
        people = self.rows["crm/people.csv"]
        template = people[0] if people else None
        person_id = str(max(int(c["id"]) for c in self.crm["contacts"]) + 1000)
        if template:
            self.late["crm/people.csv"].append(
                {**template, "Record ID": person_id, "Email": "maria.ortega@gmail,com"}
            )
            self.bad(
                "crm",
                "customer",
                "crm/people.csv",
                f"contact:{person_id}",
                "an invalid e-mail address",
                "not a valid e-mail address",
            )
        company = self.rows["crm/companies.csv"][0]
        contact_id = str(int(person_id) + 1)
        # An unquoted comma in the job title: one cell too many.
        self.late["crm/contacts.csv"].append(
            [
                contact_id,
                "Pieter",
                "Bakker",
                f"pieter.bakker@{company['Company Domain Name'] or 'example.com'}",
                "",
                "Head of Sales",
                "Benelux",
                company["Record ID"],
                company["Create Date"],
                company["Last Modified Date"],
            ]
        )
        self.bad(
            "crm",
            "contact",
            "crm/contacts.csv",
            f"contact:{contact_id}",
            "a malformed CSV row (an unquoted comma)",
            "cells, the header has",
        )
        invoice = self.rows["erp/invoices.csv"][0]
        bad_invoice = stripe_id("in_", self.seed, "bad")
        self.late["erp/invoices.csv"].append(
            {
                **invoice,
                "Invoice ID": bad_invoice,
                "Invoice Number": f"INV-{year}-000000",
                "Order No": "",
                "Invoice Date": f"{year}-02-30",
                "Due Date": f"{year}-03-30",
                "Amount Paid": "0.00",
                "Amount Due": invoice["Total"],
                "State": "open",
            }
        )
        self.bad(
            "erp",
            "invoice",
            "erp/invoices.csv",
            bad_invoice,
            f"an impossible date ({year}-02-30)",
            "is not a date",
        )
        order = self.rows["erp/orders.csv"][0]
        bad_order = stripe_id("order_", self.seed, "bad")
        self.late["erp/orders.csv"].append(
            {**order, "Order No": bad_order, "Customer ID": stripe_id("cus_", self.seed, "gone")}
        )
        self.bad(
            "erp",
            "order",
            "erp/orders.csv",
            bad_order,
            "an order for a customer the ERP export does not contain",
            "is not known in erp",
        )
        users = self.rows["helpdesk/users.jsonl"]
        bad_user = max(u["id"] for u in self.hd["users"]) + 1000
        self.late["helpdesk/users.jsonl"].append(
            {
                **users[0],
                "id": bad_user,
                "name": "Test User",
                "email": None,
                "phone": "+49 30 12",
                "url": f"{ZENDESK_HOST}/users/{bad_user}.json",
                "organization": None,
                "user_fields": {"account_type": "consumer", "country": "DE"},
            }
        )
        self.bad(
            "helpdesk",
            "customer",
            "helpdesk/users.jsonl",
            f"user:{bad_user}",
            "an invalid phone number",
            "not a valid phone number",
        )
        tickets = self.rows["helpdesk/tickets.jsonl"]
        orphan_id = max(t["id"] for t in self.hd["tickets"]) + 1000
        self.rows["helpdesk/tickets.jsonl"].append(
            {
                **tickets[0],
                "id": orphan_id,
                "url": f"{ZENDESK_HOST}/tickets/{orphan_id}.json",
                "requester_id": bad_user + 1,
                "submitter_id": bad_user + 1,
            }
        )
        self.bad(
            "helpdesk",
            "ticket",
            "helpdesk/tickets.jsonl",
            str(orphan_id),
            "a ticket whose requester was deleted from the export",
            "is not known in helpdesk",
        )

    def bad(self, system: str, entity: str, file: str, xid: str, problem: str, error: str) -> None:
        self.bad_rows.append(
            {
                "system": system,
                "entity": entity,
                "file": file,
                "external_id": xid,
                "problem": problem,
                "error_contains": error,
            }
        )

    # -- manifest -----------------------------------------------------------------------

    def manifest(self, truth: _Truth) -> dict[str, Any]:
        parties = self.world.parties
        partner = [f"company:{p.crm_id}" for p in parties if p.owner_id and p.crm_id]
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
                    "rows": len(self.rows[d.file]),
                }
                for d in DATASETS
            ],
            "expected": truth.expected(),
            "planted": {
                "cross_system_examples": truth.examples(),
                "duplicates_within_system": truth.duplicates(),
                "unlinked_across_systems": truth.unlinked(),
                "conflicts": truth.conflicts(),
                "stale": self.stale,
                "bad_rows": self.bad_rows,
                "partner_territory": {"owner": PARTNER_OWNER, "crm_records": partner},
            },
        }


class _Truth:
    """Which real customer each customer record belongs to, and how the hub will link it.

    The files' customer records are read with their mappings, in load order, and linked
    the way the resolver links (customers/services/apply.py): an existing cross-reference,
    else the first key type (tax id, national id, e-mail, phone, domain) that points at
    exactly one customer of the same kind with no other tax id; else a new customer. The
    party a record came from is the ground truth; the link it gets is its role.
    """

    def __init__(self, export: _Export, files: dict[str, str]) -> None:
        self.export = export
        self.rows: list[tuple[int, str, str, str, str, str]] = []
        self.cluster_of: dict[tuple[str, str], int] = {}
        self.cluster_kind: list[str] = []
        hard: list[dict[str, set[str]]] = []
        owners: dict[tuple[str, str, str], set[int]] = defaultdict(set)
        first_cluster: dict[int, int] = {}  # party index → the cluster of its first record
        self.roles: dict[tuple[str, str], str] = {}
        for dataset in DATASETS:
            if dataset.entity != "customer":
                continue
            mapping = Mapping.load(dataset.mapping_path, entity="customer")
            for payload in _records(files[dataset.file], dataset.file):
                try:
                    mapped = mapping.map(payload)
                except RecordError:
                    continue  # a planted bad row: a dead letter, nobody's record
                key = (dataset.system, mapped.external_id)
                if key in self.cluster_of:
                    continue  # another version of a record already read
                party = export.owner[key]
                kind = customer_kind(mapped.values)
                keys = identity_keys(mapped.values, kind)
                mine = {t: v for t, v in keys if t in ("tax_id", "national_id")}
                chosen, how = None, ""
                for key_type in KEY_PRIORITY:
                    found = {
                        c
                        for t, v in keys
                        if t == key_type
                        for c in owners.get((t, v, kind), ())
                        if not any(
                            value and hard[c].get(t2) and value not in hard[c][t2]
                            for t2, value in mine.items()
                        )
                    }
                    if len(found) == 1:
                        chosen, how = found.pop(), key_type
                        break
                if chosen is None:
                    chosen = len(hard)
                    hard.append(defaultdict(set))
                    self.cluster_kind.append(kind)
                for t, v in keys:
                    owners[(t, v, kind)].add(chosen)
                    if t in ("tax_id", "national_id"):
                        hard[chosen][t].add(v)
                self.cluster_of[key] = chosen
                primary = first_cluster.setdefault(party.index, chosen)
                if not how and chosen == primary:
                    role = "primary"
                elif chosen != primary:
                    role = (
                        "unlinked:fuzzy" if "erp_nickname" in party.planted else "unlinked:no_key"
                    )
                elif key in self._planted_duplicates(party):
                    role = f"duplicate:{how}"
                else:
                    role = f"linked:{how}"
                self.roles[key] = role
                self.rows.append(
                    (party.index + 1, party.kind, dataset.system, "customer", key[1], role)
                )

    @staticmethod
    def _planted_duplicates(party: Party) -> set[tuple[str, str]]:
        return {
            ("crm", f"company:{party.crm_duplicate_id}"),
            ("erp", party.erp_duplicate_id or ""),
            ("helpdesk", f"user:{party.hd_duplicate_id}"),
        }

    def expected(self) -> dict[str, int]:
        return {
            "customers": len(self.cluster_kind),
            "organizations": self.cluster_kind.count("organization"),
            "persons": self.cluster_kind.count("person"),
        }

    def examples(self) -> list[dict[str, Any]]:
        """Up to three records per kind of evidence that link across systems."""
        primary = {
            n: (system, xid) for n, _, system, _, xid, role in self.rows if role == "primary"
        }
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for n, _, system, _, xid, role in self.rows:
            if not role.startswith("linked:"):
                continue
            how = role.split(":", 1)[1]
            if primary[n][0] != system and len(found[how]) < 3:
                first_system, first_xid = primary[n]
                found[how].append(
                    {"how": KEY_LABELS[how], "refs": {first_system: first_xid, system: xid}}
                )
        return [e for how in sorted(found) for e in found[how]]

    def duplicates(self) -> list[dict[str, Any]]:
        out = []
        for party in self.export.world.parties:
            for system, original, duplicate, how in (
                (
                    "crm",
                    f"company:{party.crm_id}",
                    f"company:{party.crm_duplicate_id}",
                    "the company entered again (upper-case or legal name), the same web domain",
                ),
                (
                    "erp",
                    party.erp_id,
                    party.erp_duplicate_id,
                    "a second billing account: free-mail address, no phone, VAT id typed apart",
                ),
                (
                    "helpdesk",
                    f"user:{party.hd_user_ids[0]}" if party.hd_user_ids else "",
                    f"user:{party.hd_duplicate_id}",
                    "signed up again with another address; the same phone, written nationally",
                ),
            ):
                refs = [original, duplicate]
                if not all((system, r) in self.cluster_of for r in refs):
                    continue
                same = self.cluster_of[(system, original)] == self.cluster_of[(system, duplicate)]
                out.append(
                    {
                        "system": system,
                        "refs": refs,
                        "how": how,
                        "expected": f"linked ({self.roles[(system, duplicate)]}): one customer"
                        if same
                        else "two customers (no deterministic key)",
                    }
                )
        return out

    def unlinked(self) -> list[dict[str, Any]]:
        out = []
        for party in self.export.world.parties:
            if "erp_nickname" not in party.planted:
                continue
            crm, erp = ("crm", f"contact:{party.crm_id}"), ("erp", party.erp_id)
            if self.cluster_of.get(crm) is None or self.cluster_of.get(crm) == self.cluster_of.get(
                erp
            ):
                continue
            person = party.people[0]
            out.append(
                {
                    "refs": {"crm": crm[1], "erp": erp[1]},
                    "how": f"{person.name} in the CRM; a nickname, another e-mail and no phone "
                    "in the ERP",
                    "expected": "two customers (no deterministic key; for probabilistic "
                    "matching and the steward)",
                }
            )
        return out

    def conflicts(self) -> list[dict[str, Any]]:
        out = []
        erp_names = {c["id"]: c["name"] for c in self.export.erp["customers"]}
        legal = {c["id"]: c.get("legal_name") for c in self.export.crm["companies"]}
        for party in self.export.world.parties:
            crm = (
                "crm",
                f"{'company' if party.kind == 'organization' else 'contact'}:{party.crm_id}",
            )
            home = self.cluster_of.get(crm)
            if home is None:
                continue
            if legal.get(party.crm_id) and self.cluster_of.get(("erp", party.erp_id)) == home:
                out.append(
                    {
                        "field": "legal_name",
                        "crm_record": crm[1],
                        "crm": legal[party.crm_id],
                        "erp": erp_names[party.erp_id],
                        "expected": "erp (billing owns legal_name)",
                    }
                )
            user = ("helpdesk", f"user:{party.hd_user_ids[0]}") if party.hd_user_ids else None
            if party.conflict_phone and user and self.cluster_of.get(user) == home:
                out.append(
                    {
                        "field": "phone",
                        "crm_record": crm[1],
                        "crm": party.people[0].phone.e164,
                        "helpdesk_record": user[1],
                        "helpdesk": party.conflict_phone.e164,
                        "expected": "crm (the CRM owns customer fields)",
                    }
                )
        return out


def _customer_refs(party: Party) -> list[tuple[str, str]]:
    """The (system, external id) of every customer record the files hold for ``party``."""
    crm = "company" if party.kind == "organization" else "contact"
    refs = [
        ("crm", f"{crm}:{party.crm_id}" if party.crm_id else None),
        ("crm", f"company:{party.crm_duplicate_id}" if party.crm_duplicate_id else None),
        ("erp", party.erp_id),
        ("erp", party.erp_duplicate_id),
        *(("helpdesk", f"user:{u}") for u in party.hd_user_ids),
        ("helpdesk", f"user:{party.hd_duplicate_id}" if party.hd_duplicate_id else None),
    ]
    return [(system, xid) for system, xid in refs if xid]


def _records(text: str, name: str) -> list[dict[str, Any]]:
    """The rows of one exported file as the file connector reads them (bad rows dropped)."""
    if name.endswith(".jsonl"):
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    return [dict(zip(header, row, strict=True)) for row in reader if len(row) == len(header)]
