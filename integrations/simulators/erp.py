"""The ERP / billing simulator, shaped like Stripe (customers, invoices, charges, events).

Stripe has no sales orders, so an ERP-style ``/v1/orders`` resource in Stripe's style is
added: a closed-won CRM deal is pushed here as an order (order-to-cash), the simulated
ERP fulfils it over time and raises an invoice for it.

Auth: ``Authorization: Bearer sk_test_...`` (or HTTP Basic with the key as user name).
Lists are newest first with ``limit`` / ``starting_after`` / ``ending_before``; amounts
are integers in the currency's minor unit; times are unix seconds.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import random
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from . import generate as gen
from .server import ApiError, BaseApp, Request, Response
from .systems import SystemSpec, random_token, row_meta, weighted_choice
from .world import Event, Record, World, to_ms

API_VERSION = "2024-06-20"
PREFIXES = {"customers": "cus_", "invoices": "in_", "charges": "ch_", "orders": "order_"}
OBJECT_NAMES = {
    "customers": "customer",
    "invoices": "invoice",
    "charges": "charge",
    "orders": "order",
}
INVOICE_STATUSES = ("draft", "open", "paid", "void", "uncollectible")
ORDER_STATUSES = ("open", "submitted", "processing", "complete", "canceled")
TAX_TYPES = {"GB": "gb_vat", "CH": "ch_vat", "NO": "no_vat", "AU": "au_abn", "US": "us_ein"}
INVOICE_TIMES = ("finalized_at", "paid_at", "voided_at", "marked_uncollectible_at")
MAX_IDEMPOTENCY_KEYS = 10_000


def amount(value: Any, name: str = "amount") -> int:
    """Minor units. Integers as they are; a value with a decimal point is major units."""
    if isinstance(value, bool):
        raise ValueError(f"{name}: not an amount: {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if "." in text or isinstance(value, float):
        return round(float(text) * 100)
    return int(text)


def _seconds(ms: int | None) -> int | None:
    return None if ms is None else ms // 1000


def _tax_type(value: str) -> str:
    country = value[:2].upper()
    if country.isalpha():
        return TAX_TYPES.get(country, "eu_vat")
    return "us_ein" if "-" in value else "eu_vat"


# -- store rules --------------------------------------------------------------------------


class ErpSpec(SystemSpec):
    name = "erp"
    vendor = "Stripe API (+ ERP orders)"
    object_types = ("customers", "invoices", "charges", "orders")
    type_aliases = {
        "customer": "customers",
        "invoice": "invoices",
        "charge": "charges",
        "order": "orders",
        "payments": "charges",
    }

    def new_id(self, world: World, obj_type: str) -> str:
        return PREFIXES[obj_type] + random_token(world.id_rng, 14)

    def new_event_id(self, world: World) -> str:
        return "evt_" + random_token(world.id_rng, 24)

    def event_types(
        self, obj_type: str, action: str, record: Record, previous: dict[str, Any]
    ) -> list[str]:
        name = OBJECT_NAMES[obj_type]
        if obj_type == "charges":
            if action == "created":
                return [
                    "charge.succeeded"
                    if record.data.get("status") == "succeeded"
                    else "charge.failed"
                ]
            if "amount_refunded" in previous:
                return ["charge.refunded"]
        if obj_type == "invoices" and action == "updated" and "status" in previous:
            return {
                "paid": ["invoice.payment_succeeded", "invoice.paid"],
                "void": ["invoice.voided"],
                "uncollectible": ["invoice.marked_uncollectible"],
                "open": ["invoice.finalized"],
            }.get(record.data.get("status"), ["invoice.updated"])
        if obj_type == "invoices" and action == "created" and record.data.get("status") != "draft":
            return ["invoice.created", "invoice.finalized"]
        return [f"{name}.{action}"]

    def record_from_row(self, world: World, obj_type: str, row: dict[str, Any], now: int) -> Record:
        rid, created, updated, deleted, deleted_at = row_meta(row, now)
        rid = rid or world.new_id(obj_type)
        build: Callable[..., dict[str, Any]] = getattr(self, f"_{obj_type}_data")
        data = build(world, rid, row, created, updated)
        return Record(obj_type, rid, data, created, updated, deleted, deleted_at)

    def _customers_data(self, world: World, rid: str, row: dict, created: int, updated: int):
        address = row.pop("address", None)
        flat = {k[len("address_") :]: row.pop(k) for k in list(row) if k.startswith("address_")}
        if address is None and flat:
            address = flat
        if isinstance(address, dict):
            address = {
                k: address.get(k)
                for k in ("line1", "line2", "city", "state", "postal_code", "country")
            }
        raw_tax = row.pop("tax_ids", None)
        if isinstance(raw_tax, dict):  # Stripe's list object
            raw_tax = raw_tax.get("data")
        single = row.pop("vat", None) or row.pop("tax_id", None)
        if raw_tax is None:
            raw_tax = [single] if single else []
        tax_ids = []
        for i, item in enumerate(raw_tax):
            if isinstance(item, str):
                item = {"value": item}
            value = str(item.get("value") or "")
            if not value:
                continue
            tax_ids.append(
                {
                    "id": item.get("id") or f"txi_{rid.removeprefix('cus_')}{i}",
                    "type": item.get("type") or _tax_type(value),
                    "value": value,
                    "country": item.get("country")
                    or (value[:2].upper() if value[:2].isalpha() else "US"),
                }
            )
        data = {
            "name": None,
            "email": None,
            "phone": None,
            "description": None,
            "currency": None,
            "preferred_locales": [],
            "invoice_prefix": None,
            "balance": 0,
            **row,
            "address": address,
            "tax_ids": tax_ids,
            "metadata": dict(row.get("metadata") or {}),
        }
        if not data["invoice_prefix"]:
            data["invoice_prefix"] = random_token(world.id_rng, 8).upper()
        return data

    def _invoices_data(self, world: World, rid: str, row: dict, created: int, updated: int):
        lines = []
        for line in row.pop("lines", None) or []:
            quantity = int(line.get("quantity") or 1)
            unit = line.get("unit_amount")
            unit = amount(unit) if unit is not None else amount(line.get("amount", 0)) // quantity
            lines.append(
                {"description": line.get("description"), "quantity": quantity, "unit_amount": unit}
            )
        due = row.pop("amount_due", None)
        due = (
            amount(due)
            if due is not None
            else sum(li["quantity"] * li["unit_amount"] for li in lines)
        )
        if not lines and due:
            lines = [
                {
                    "description": row.get("description") or "Services",
                    "quantity": 1,
                    "unit_amount": due,
                }
            ]
        status = row.pop("status", None) or "open"
        paid = row.pop("amount_paid", None)
        paid = amount(paid) if paid is not None else (due if status == "paid" else 0)
        transitions = row.pop("status_transitions", None) or {}
        times = {}
        for k in INVOICE_TIMES:
            value = row.pop(k, None) or transitions.get(k)
            if value not in (None, ""):
                times[f"_{k}"] = to_ms(value)
        if status != "draft":
            times.setdefault("_finalized_at", created)
        if status == "paid":
            times.setdefault("_paid_at", updated)
        due_date = row.pop("due_date", None)
        return {
            "customer": None,
            "currency": "eur",
            "number": None,
            "description": None,
            "collection_method": "send_invoice",
            **row,
            "status": status,
            "amount_due": due,
            "amount_paid": paid,
            "lines": lines,
            "due_date": _seconds(to_ms(due_date)) if due_date not in (None, "") else None,
            "metadata": dict(row.get("metadata") or {}),
            **times,
        }

    def _charges_data(self, world: World, rid: str, row: dict, created: int, updated: int):
        method = row.pop("payment_method_type", None)
        return {
            "customer": None,
            "invoice": None,
            "currency": "eur",
            "description": None,
            "status": "succeeded",
            "amount_refunded": 0,
            "receipt_email": None,
            "payment_method_details": {"type": method or "card"},
            **row,
            "amount": amount(row.get("amount", 0)),
            "metadata": dict(row.get("metadata") or {}),
        }

    def _orders_data(self, world: World, rid: str, row: dict, created: int, updated: int):
        items = []
        for line in row.pop("line_items", None) or row.pop("lines", None) or []:
            items.append(
                {
                    "description": line.get("description"),
                    "quantity": int(line.get("quantity") or 1),
                    "unit_amount": amount(line.get("unit_amount", 0)),
                }
            )
        return {
            "customer": None,
            "currency": "eur",
            "description": None,
            "invoice": None,
            "status": "open",
            **row,
            "line_items": items,
            "metadata": dict(row.get("metadata") or {}),
        }

    def tick(self, world: World, rng: random.Random) -> None:
        actions = [
            (_pay_invoice, 4),
            (_new_invoice, 2),
            (_advance_order, 2),
            (_edit_customer, 2),
            (_close_invoice, 0.3),
            (_new_customer, 0.7),
            (_delete_customer, 0.2),
        ]
        for _ in range(10):
            if weighted_choice(rng, actions)(world, rng):
                return


SPEC = ErpSpec()


# -- live changes -------------------------------------------------------------------------


def pay_invoice(world: World, invoice: Record, paid: int, *, out_of_band: bool = False) -> None:
    """Record a payment of ``paid`` on an open invoice (a charge, unless out of band)."""
    d = invoice.data
    if not out_of_band:
        customer = world.get("customers", d.get("customer"))
        world.create(
            "charges",
            {
                "amount": paid,
                "currency": d.get("currency"),
                "customer": d.get("customer"),
                "invoice": invoice.id,
                "status": "succeeded",
                "description": f"Payment for invoice {d.get('number')}",
                "payment_method_details": {"type": "sepa_debit"},
                "amount_refunded": 0,
                "receipt_email": customer.data.get("email") if customer else None,
                "metadata": {},
            },
        )
    total_paid = min(d["amount_due"], d["amount_paid"] + paid)
    changes: dict[str, Any] = {"amount_paid": total_paid}
    if total_paid >= d["amount_due"]:
        changes.update(status="paid", _paid_at=world.now_ms())
    world.update("invoices", invoice.id, changes)


def _open_invoices(world: World) -> list[Record]:
    return [i for i in world.records("invoices") if i.data.get("status") == "open"]


def _pay_invoice(world: World, rng: random.Random) -> bool:
    invoices = _open_invoices(world)
    if not invoices:
        return False
    invoice = rng.choice(invoices)
    remaining = invoice.data["amount_due"] - invoice.data["amount_paid"]
    paid = remaining if rng.random() < 0.8 else max(100, round(remaining * 0.5 / 100) * 100)
    pay_invoice(world, invoice, min(paid, remaining))
    return True


def create_invoice(
    world: World, customer: Record, lines: list[dict], *, metadata: dict | None = None
) -> Record:
    count = sum(
        1 for i in world.records("invoices", deleted=None) if i.data.get("customer") == customer.id
    )
    now = world.now_ms()
    total = sum(li["quantity"] * li["unit_amount"] for li in lines)
    return world.create(
        "invoices",
        {
            "customer": customer.id,
            "currency": customer.data.get("currency") or "eur",
            "number": f"{customer.data.get('invoice_prefix') or 'INV'}-{count + 1:04d}",
            "status": "open",
            "amount_due": total,
            "amount_paid": 0,
            "lines": lines,
            "due_date": (now + 30 * gen.DAY_MS) // 1000,
            "collection_method": "send_invoice",
            "description": None,
            "metadata": dict(metadata or {}),
            "_finalized_at": now,
        },
    )


def _new_invoice(world: World, rng: random.Random) -> bool:
    customers = world.records("customers")
    if not customers:
        return False
    product, base = rng.choice(gen.PRODUCTS)
    quantity = rng.choice([1, 1, 2, 5])
    unit = max(5_000, round(base * rng.uniform(0.05, 0.4) / quantity / 100) * 100)
    create_invoice(
        world,
        rng.choice(customers),
        [{"description": product, "quantity": quantity, "unit_amount": unit}],
    )
    return True


def _advance_order(world: World, rng: random.Random) -> bool:
    orders = [
        o
        for o in world.records("orders")
        if o.data.get("status") in ("open", "submitted", "processing")
    ]
    if not orders:
        return False
    order = rng.choice(orders)
    status = ORDER_STATUSES[ORDER_STATUSES.index(order.data["status"]) + 1]
    changes: dict[str, Any] = {"status": status}
    if status == "complete":
        customer = world.get("customers", order.data.get("customer"), include_deleted=False)
        if customer is not None:
            invoice = create_invoice(
                world, customer, order.data.get("line_items") or [], metadata={"order": order.id}
            )
            changes["invoice"] = invoice.id
    world.update("orders", order.id, changes)
    return True


def _edit_customer(world: World, rng: random.Random) -> bool:
    customers = world.records("customers")
    if not customers:
        return False
    customer = rng.choice(customers)
    address = dict(customer.data.get("address") or {})
    country = address.get("country") if address.get("country") in gen.COUNTRIES else "DE"
    what = rng.choice(["phone", "phone", "address", "email"])
    if what == "phone":
        changes = {"phone": gen.new_phone(rng, country).format("national")}
    elif what == "address":
        city, postcode, _area = rng.choice(gen.COUNTRIES[country]["cities"])
        address.update(line1=gen.address_line(rng, country), city=city, postal_code=postcode)
        changes = {"address": address}
    else:
        email = customer.data.get("email") or ""
        domain = email.split("@")[-1] if "@" in email else "example.com"
        changes = {"email": f"{rng.choice(['billing', 'finance', 'ap'])}@{domain}"}
    world.update("customers", customer.id, changes)
    return True


def _close_invoice(world: World, rng: random.Random) -> bool:
    invoices = [i for i in _open_invoices(world) if not i.data.get("amount_paid")]
    if not invoices:
        return False
    invoice = rng.choice(invoices)
    status = rng.choice(["void", "uncollectible"])
    stamp = "_voided_at" if status == "void" else "_marked_uncollectible_at"
    world.update("invoices", invoice.id, {"status": status, stamp: world.now_ms()})
    return True


def _new_customer(world: World, rng: random.Random) -> bool:
    country = weighted_choice(rng, gen.COUNTRY_WEIGHTS)
    info = gen.COUNTRIES[country]
    industry = rng.randrange(len(gen.INDUSTRIES))
    brand, legal = gen.new_company_name(rng, country, industry)
    city, postcode, area = rng.choice(info["cities"])
    tax_type, tax_value = gen.new_tax_id(rng, country)
    rid = world.new_id("customers")
    world.create(
        "customers",
        {
            "name": legal,
            "email": f"accounts@{gen.slug(brand)}.{info['tld']}",
            "phone": gen.new_phone(rng, country, area).format("national"),
            "description": None,
            "address": {
                "line1": gen.address_line(rng, country),
                "line2": None,
                "city": city,
                "state": None,
                "postal_code": postcode,
                "country": country,
            },
            "currency": info["currency"],
            "preferred_locales": [info["locale"]],
            "invoice_prefix": random_token(rng, 8).upper(),
            "balance": 0,
            "metadata": {},
            "tax_ids": [
                {
                    "id": f"txi_{rid.removeprefix('cus_')}0",
                    "type": tax_type,
                    "value": tax_value,
                    "country": country,
                }
            ],
        },
        id=rid,
    )
    return True


def _delete_customer(world: World, rng: random.Random) -> bool:
    with_invoices = {i.data.get("customer") for i in world.records("invoices", deleted=None)}
    customers = [c for c in world.records("customers") if c.id not in with_invoices]
    if not customers:
        return False
    world.delete("customers", rng.choice(customers).id)
    return True


# -- HTTP ---------------------------------------------------------------------------------

ID = r"(?P<oid>[^/]+)"
CUSTOMER_FIELDS = {
    "name",
    "email",
    "phone",
    "description",
    "address",
    "metadata",
    "preferred_locales",
    "invoice_prefix",
    "expand",
}
ORDER_FIELDS = {"customer", "currency", "description", "metadata", "line_items", "amount", "expand"}


class ErpApp(BaseApp):
    system = "erp"
    routes = [
        ("GET", r"/v1/account", "account"),
        ("GET", r"/v1/customers", "list_customers"),
        ("POST", r"/v1/customers", "create_customer"),
        ("GET", rf"/v1/customers/{ID}", "get_customer"),
        ("POST", rf"/v1/customers/{ID}", "update_customer"),
        ("DELETE", rf"/v1/customers/{ID}", "delete_customer"),
        ("GET", r"/v1/invoices", "list_invoices"),
        ("GET", rf"/v1/invoices/{ID}", "get_invoice"),
        ("POST", rf"/v1/invoices/{ID}/(?P<action>pay|void|mark_uncollectible)", "invoice_action"),
        ("GET", r"/v1/charges", "list_charges"),
        ("GET", rf"/v1/charges/{ID}", "get_charge"),
        ("GET", r"/v1/orders", "list_orders"),
        ("POST", r"/v1/orders", "create_order"),
        ("GET", rf"/v1/orders/{ID}", "get_order"),
        ("POST", rf"/v1/orders/{ID}", "update_order"),
        ("POST", rf"/v1/orders/{ID}/(?P<action>submit|cancel)", "order_action"),
        ("GET", r"/v1/events", "list_events"),
        ("GET", rf"/v1/events/{ID}", "get_event"),
    ]

    def __init__(self, sim: Any) -> None:
        super().__init__(sim)
        self._idempotent: OrderedDict[str, tuple[str, Response]] = OrderedDict()
        self._idem_lock = threading.Lock()

    # -- auth, errors, idempotency ------------------------------------------------------

    def authenticate(self, req: Request) -> None:
        header = req.headers.get("Authorization") or ""
        scheme, _, value = header.partition(" ")
        key = ""
        if scheme.lower() == "bearer":
            key = value.strip()
        elif scheme.lower() == "basic":
            try:
                key = base64.b64decode(value.strip()).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                key = ""
        if not key:
            raise ApiError(
                401,
                "You did not provide an API key. You need to provide your API "
                "key in the Authorization header, using Bearer auth (e.g. "
                "'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        expected = str(self.sim.credentials.get("api_key") or "")
        if not expected or not hmac.compare_digest(key.encode(), expected.encode()):
            masked = key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else "***"
            raise ApiError(401, f"Invalid API Key provided: {masked}", code="api_key_invalid")

    def error_body(self, err: ApiError) -> Any:
        if err.status == 429:
            kind = "rate_limit_error"
        elif err.status >= 500:
            kind = "api_error"
        elif err.code == "idempotency_error":
            kind = "idempotency_error"
        else:
            kind = "invalid_request_error"
        body: dict[str, Any] = {"type": kind, "message": err.message}
        if err.code:
            body["code"] = err.code
        if err.param:
            body["param"] = err.param
        return {"error": body}

    def handle(self, req: Request) -> Response:
        key = req.headers.get("Idempotency-Key")
        if req.method != "POST" or not key:
            return super().handle(req)
        fingerprint = hashlib.sha256(req.path.encode() + b"\0" + req.body).hexdigest()
        with self._idem_lock:
            seen = self._idempotent.get(key)
        if seen is not None:
            if seen[0] != fingerprint:
                err = ApiError(
                    400,
                    "Keys for idempotent requests can only be used with the "
                    "same parameters they were first used with.",
                    code="idempotency_error",
                )
                return Response(400, self.error_body(err))
            replay = seen[1]
            return Response(
                replay.status, replay.body, {**replay.headers, "Idempotent-Replayed": "true"}
            )
        response = super().handle(req)
        if response.status < 500 and response.status != 401:
            with self._idem_lock:
                self._idempotent[key] = (fingerprint, response)
                while len(self._idempotent) > MAX_IDEMPOTENCY_KEYS:
                    self._idempotent.popitem(last=False)
        return response

    # -- rendering ----------------------------------------------------------------------

    def render(self, rec: Record, delinquent: set[str] | None = None) -> dict[str, Any]:
        return getattr(self, f"_render_{rec.type}")(rec, delinquent)

    def _delinquent(self) -> set[str]:
        now = self.world.now_ms() // 1000
        return {
            i.data.get("customer")
            for i in self.world.records("invoices")
            if i.data.get("status") == "open" and (i.data.get("due_date") or now) < now
        }

    def _render_customers(self, rec: Record, delinquent: set[str] | None) -> dict[str, Any]:
        if rec.deleted:
            return {"id": rec.id, "object": "customer", "deleted": True}
        d = rec.data
        created = rec.created // 1000
        tax_ids = [
            {
                "id": t["id"],
                "object": "tax_id",
                "country": t.get("country"),
                "created": created,
                "customer": rec.id,
                "livemode": False,
                "type": t["type"],
                "value": t["value"],
                "verification": {
                    "status": "verified" if t["type"] == "eu_vat" else "unavailable",
                    "verified_address": None,
                    "verified_name": None,
                },
            }
            for t in d.get("tax_ids") or []
        ]
        if delinquent is None:
            delinquent = self._delinquent()
        return {
            "id": rec.id,
            "object": "customer",
            "address": d.get("address"),
            "balance": d.get("balance", 0),
            "created": created,
            "currency": d.get("currency"),
            "default_source": None,
            "delinquent": rec.id in delinquent,
            "description": d.get("description"),
            "discount": None,
            "email": d.get("email"),
            "invoice_prefix": d.get("invoice_prefix"),
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": d.get("metadata") or {},
            "name": d.get("name"),
            "phone": d.get("phone"),
            "preferred_locales": d.get("preferred_locales") or [],
            "shipping": d.get("shipping"),
            "tax_exempt": d.get("tax_exempt") or "none",
            "test_clock": None,
            "tax_ids": {
                "object": "list",
                "data": tax_ids,
                "has_more": False,
                "total_count": len(tax_ids),
                "url": f"/v1/customers/{rec.id}/tax_ids",
            },
        }

    def _lines(self, rec: Record, key: str, created: int, currency: str) -> list[dict]:
        out = []
        prefix = "il_" if rec.type == "invoices" else "li_"
        for i, line in enumerate(rec.data.get(key) or []):
            total = line["quantity"] * line["unit_amount"]
            item = {
                "id": f"{prefix}{rec.id.split('_', 1)[-1]}{i:02d}",
                "object": "line_item" if rec.type == "invoices" else "item",
                "amount": total,
                "currency": currency,
                "description": line.get("description"),
                "quantity": line["quantity"],
                "price": {
                    "object": "price",
                    # A product per description: the catalogue the demo sells from.
                    "product": line.get("product")
                    or gen.stripe_id("prod_", line.get("description") or ""),
                    "unit_amount": line["unit_amount"],
                    "currency": currency,
                    "type": "one_time",
                },
            }
            if rec.type == "invoices":
                item["period"] = {"start": created, "end": created}
                item["type"] = "invoiceitem"
            else:
                item["amount_subtotal"] = item["amount_total"] = item.pop("amount")
            out.append(item)
        return out

    def _render_invoices(self, rec: Record, delinquent: set[str] | None) -> dict[str, Any]:
        d = rec.data
        created = rec.created // 1000
        currency = d.get("currency") or "eur"
        lines = self._lines(rec, "lines", created, currency)
        customer = self.world.get("customers", d.get("customer")) if d.get("customer") else None
        cdata = customer.data if customer and not customer.deleted else {}
        due, paid = d.get("amount_due", 0), d.get("amount_paid", 0)
        subtotal = sum(li["amount"] for li in lines) or due
        return {
            "id": rec.id,
            "object": "invoice",
            "account_country": "DE",
            "account_name": "Concord Demo Supplier GmbH",
            "amount_due": due,
            "amount_paid": paid,
            "amount_remaining": max(0, due - paid),
            "attempt_count": 1 if paid else 0,
            "attempted": bool(paid),
            "auto_advance": False,
            "billing_reason": "manual",
            "collection_method": d.get("collection_method"),
            "created": created,
            "currency": currency,
            "customer": d.get("customer"),
            "customer_email": cdata.get("email"),
            "customer_name": cdata.get("name"),
            "customer_phone": cdata.get("phone"),
            "description": d.get("description"),
            "due_date": d.get("due_date"),
            "hosted_invoice_url": f"{self.sim.url}/i/{rec.id}",
            "lines": {
                "object": "list",
                "data": lines,
                "has_more": False,
                "total_count": len(lines),
                "url": f"/v1/invoices/{rec.id}/lines",
            },
            "livemode": False,
            "metadata": d.get("metadata") or {},
            "number": d.get("number"),
            "paid": d.get("status") == "paid",
            "paid_out_of_band": False,
            "period_end": created,
            "period_start": created,
            "status": d.get("status"),
            "status_transitions": {k: _seconds(d.get(f"_{k}")) for k in INVOICE_TIMES},
            "subtotal": subtotal,
            "total": subtotal,
        }

    def _render_charges(self, rec: Record, delinquent: set[str] | None) -> dict[str, Any]:
        d = rec.data
        succeeded = d.get("status") == "succeeded"
        refunded = d.get("amount_refunded", 0)
        suffix = rec.id.split("_", 1)[-1]
        return {
            "id": rec.id,
            "object": "charge",
            "amount": d.get("amount", 0),
            "amount_captured": d.get("amount", 0) if succeeded else 0,
            "amount_refunded": refunded,
            "balance_transaction": f"txn_{suffix}",
            "billing_details": {
                "email": d.get("receipt_email"),
                "name": None,
                "phone": None,
                "address": None,
            },
            "captured": succeeded,
            "created": rec.created // 1000,
            "currency": d.get("currency"),
            "customer": d.get("customer"),
            "description": d.get("description"),
            "failure_code": None if succeeded else "card_declined",
            "failure_message": None if succeeded else "Your card was declined.",
            "invoice": d.get("invoice"),
            "livemode": False,
            "metadata": d.get("metadata") or {},
            "outcome": {
                "network_status": "approved_by_network" if succeeded else "declined_by_network",
                "type": "authorized" if succeeded else "issuer_declined",
                "seller_message": "Payment complete."
                if succeeded
                else "The bank did not return any further details.",
            },
            "paid": succeeded,
            "payment_intent": f"pi_{suffix}",
            "payment_method_details": d.get("payment_method_details") or {"type": "card"},
            "receipt_email": d.get("receipt_email"),
            "refunded": bool(refunded) and refunded >= d.get("amount", 0),
            "status": d.get("status"),
        }

    def _render_orders(self, rec: Record, delinquent: set[str] | None) -> dict[str, Any]:
        d = rec.data
        currency = d.get("currency") or "eur"
        items = self._lines(rec, "line_items", rec.created // 1000, currency)
        total = sum(i["amount_total"] for i in items)
        return {
            "id": rec.id,
            "object": "order",
            "amount_subtotal": total,
            "amount_total": total,
            "created": rec.created // 1000,
            "currency": currency,
            "customer": d.get("customer"),
            "description": d.get("description"),
            "invoice": d.get("invoice"),
            "line_items": {
                "object": "list",
                "data": items,
                "has_more": False,
                "total_count": len(items),
                "url": f"/v1/orders/{rec.id}/line_items",
            },
            "livemode": False,
            "metadata": d.get("metadata") or {},
            "status": d.get("status"),
        }

    def render_event(self, event: Event) -> dict[str, Any]:
        rec = event.record
        if rec.type == "customers" and rec.deleted:
            # customer.deleted carries the customer as it was, marked deleted
            obj = {**self._render_customers(replace(rec, deleted=False), None), "deleted": True}
        else:
            obj = self.render(rec)
        data: dict[str, Any] = {"object": obj}
        if event.previous:
            data["previous_attributes"] = {
                k: v for k, v in event.previous.items() if k != "associations"
            }
        return {
            "id": event.id,
            "object": "event",
            "api_version": API_VERSION,
            "created": event.created // 1000,
            "data": data,
            "livemode": False,
            "pending_webhooks": 0,
            "request": {"id": None, "idempotency_key": None},
            "type": event.type,
        }

    def event_payload(self, event: Event) -> dict[str, Any]:
        return {**self.render_event(event), "system": "erp"}

    # -- lists --------------------------------------------------------------------------

    def _time_filter(self, req: Request, name: str) -> Callable[[int | None], bool]:
        bounds: list[tuple[str, int]] = []
        for op in ("gt", "gte", "lt", "lte", ""):
            key = f"{name}[{op}]" if op else name
            raw = req.arg(key)
            if raw in (None, ""):
                continue
            try:
                bounds.append((op or "eq", int(raw)))
            except ValueError:
                raise ApiError(400, f"Invalid integer: {raw}", param=key) from None
        checks = {
            "gt": lambda v, b: v > b,
            "gte": lambda v, b: v >= b,
            "lt": lambda v, b: v < b,
            "lte": lambda v, b: v <= b,
            "eq": lambda v, b: v == b,
        }

        def keep(value: int | None) -> bool:
            if not bounds:
                return True
            return value is not None and all(checks[op](value, b) for op, b in bounds)

        return keep

    def _paginate(
        self,
        req: Request,
        items: list[Any],
        key: Callable[[Any], tuple],
        locate: Callable[[str], Any | None],
        kind: str,
    ) -> tuple[list[Any], list[Any], bool]:
        """Page of ``items`` (sorted newest first by ``key``), the items before it, has_more."""
        limit = req.int_arg("limit", 10, 1, 100)
        after, before = req.arg("starting_after"), req.arg("ending_before")
        if after and before:
            raise ApiError(
                400, "You may only specify one of these parameters: ending_before, starting_after."
            )
        cursor_id = after or before
        if not cursor_id:
            return items[:limit], [], len(items) > limit
        cursor = locate(cursor_id)
        param = "starting_after" if after else "ending_before"
        if cursor is None:
            raise ApiError(
                400, f"No such {kind}: '{cursor_id}'", code="resource_missing", param=param
            )
        mark = key(cursor)
        if after:
            start = next((i for i, x in enumerate(items) if key(x) < mark), len(items))
            return (
                items[start : start + limit],
                items[max(0, start - limit) : start],
                start + limit < len(items),
            )
        newer = [x for x in items if key(x) > mark]
        return newer[-limit:], [], len(newer) > limit

    def _list_records(
        self, req: Request, obj_type: str, keep: Callable[[Record], bool]
    ) -> Response:
        records = [r for r in self.world.records(obj_type) if keep(r)]
        created = self._time_filter(req, "created")
        records = [r for r in records if created(r.created // 1000)]
        key = self._record_key
        records.sort(key=key, reverse=True)
        page, earlier, has_more = self._paginate(
            req, records, key, lambda rid: self.world.get(obj_type, rid), OBJECT_NAMES[obj_type]
        )
        delinquent = self._delinquent() if obj_type == "customers" else None
        return Response(
            200,
            {
                "object": "list",
                "url": req.path,
                "has_more": has_more,
                "data": [self.render(r, delinquent) for r in self.page_of(page, earlier)],
            },
        )

    @staticmethod
    def _record_key(rec: Record) -> tuple:
        return (rec.created, rec.id)

    def _get(self, obj_type: str, oid: str, *, live: bool = True) -> Record:
        rec = self.world.get(obj_type, oid)
        if rec is None or (live and rec.deleted and obj_type != "customers"):
            raise ApiError(
                404,
                f"No such {OBJECT_NAMES[obj_type]}: '{oid}'",
                code="resource_missing",
                param="id",
            )
        return rec

    def account(self, req: Request) -> Response:
        return Response(
            200,
            {
                "id": "acct_1ConcordDemo0001",
                "object": "account",
                "business_profile": {"name": "Concord Demo Supplier GmbH"},
                "country": "DE",
                "default_currency": "eur",
                "charges_enabled": True,
                "livemode": False,
            },
        )

    def list_customers(self, req: Request) -> Response:
        email = req.arg("email")
        return self._list_records(
            req, "customers", lambda r: email is None or r.data.get("email") == email
        )

    def get_customer(self, req: Request, oid: str) -> Response:
        return Response(200, self.render(self._get("customers", oid)))

    def list_invoices(self, req: Request) -> Response:
        customer, status = req.arg("customer"), req.arg("status")
        if status and status not in INVOICE_STATUSES:
            raise ApiError(
                400, f"Invalid status: must be one of {', '.join(INVOICE_STATUSES)}", param="status"
            )
        due = self._time_filter(req, "due_date")
        return self._list_records(
            req,
            "invoices",
            lambda r: (
                (customer is None or r.data.get("customer") == customer)
                and (status is None or r.data.get("status") == status)
                and due(r.data.get("due_date"))
            ),
        )

    def get_invoice(self, req: Request, oid: str) -> Response:
        return Response(200, self.render(self._get("invoices", oid)))

    def list_charges(self, req: Request) -> Response:
        customer = req.arg("customer")
        return self._list_records(
            req, "charges", lambda r: customer is None or r.data.get("customer") == customer
        )

    def get_charge(self, req: Request, oid: str) -> Response:
        return Response(200, self.render(self._get("charges", oid)))

    def list_orders(self, req: Request) -> Response:
        customer, status = req.arg("customer"), req.arg("status")
        return self._list_records(
            req,
            "orders",
            lambda r: (
                (customer is None or r.data.get("customer") == customer)
                and (status is None or r.data.get("status") == status)
            ),
        )

    def get_order(self, req: Request, oid: str) -> Response:
        return Response(200, self.render(self._get("orders", oid)))

    def list_events(self, req: Request) -> Response:
        types = req.query.get("types[]", []) + req.query.get("types", [])
        if req.arg("type"):
            types.append(req.arg("type") or "")
        created = self._time_filter(req, "created")
        events = [
            e
            for e in self.world.events()
            if created(e.created // 1000) and (not types or _type_matches(e.type, types))
        ]

        def key(e: Event) -> tuple:
            return (e.created, e.seq)

        events.sort(key=key, reverse=True)
        by_id = {e.id: e for e in self.world.events()}
        page, earlier, has_more = self._paginate(req, events, key, by_id.get, "event")
        return Response(
            200,
            {
                "object": "list",
                "url": req.path,
                "has_more": has_more,
                "data": [self.render_event(e) for e in self._event_page(page, earlier)],
            },
        )

    def _event_page(self, page: list[Event], earlier: list[Event]) -> list[Event]:
        faults = self.sim.faults
        out = list(page)
        # Events never change, so "out of order" here means an older event in front.
        with_dups = faults.page([_EventRecord(e) for e in out], [_EventRecord(e) for e in earlier])
        out = [r.event for r in with_dups if isinstance(r, _EventRecord)]
        return out

    def get_event(self, req: Request, oid: str) -> Response:
        for event in self.world.events():
            if event.id == oid:
                return Response(200, self.render_event(event))
        raise ApiError(404, f"No such event: '{oid}'", code="resource_missing", param="id")

    # -- writes -------------------------------------------------------------------------

    @staticmethod
    def _only(params: dict[str, Any], allowed: set[str]) -> None:
        for name in params:
            if name not in allowed:
                raise ApiError(
                    400, f"Received unknown parameter: {name}", code="parameter_unknown", param=name
                )

    @staticmethod
    def _metadata(current: dict[str, Any], given: Any) -> dict[str, Any]:
        if given in ("", None):
            return {}
        if not isinstance(given, dict):
            raise ApiError(400, "Invalid object", param="metadata")
        merged = dict(current)
        for key, value in given.items():
            if value in ("", None):
                merged.pop(key, None)
            else:
                merged[key] = str(value)
        return merged

    def _customer_changes(self, params: dict[str, Any], current: Record | None) -> dict:
        changes: dict[str, Any] = {}
        for name in ("name", "email", "phone", "description", "invoice_prefix"):
            if name in params:
                changes[name] = params[name] or None
        if "address" in params:
            given = params["address"]
            if given in ("", None):
                changes["address"] = None
            elif isinstance(given, dict):
                address = dict((current.data.get("address") if current else None) or {})
                for part in ("line1", "line2", "city", "state", "postal_code", "country"):
                    if part in given:
                        address[part] = given[part] or None
                changes["address"] = address
            else:
                raise ApiError(400, "Invalid object", param="address")
        if "metadata" in params:
            changes["metadata"] = self._metadata(
                (current.data.get("metadata") if current else None) or {}, params["metadata"]
            )
        if "preferred_locales" in params:
            locales = params["preferred_locales"]
            changes["preferred_locales"] = locales if isinstance(locales, list) else []
        return changes

    def create_customer(self, req: Request) -> Response:
        params = req.form()
        self._only(params, CUSTOMER_FIELDS | {"tax_id_data"})
        data = self._customer_changes(params, None)
        rid = self.world.new_id("customers")
        tax_ids = []
        for i, item in enumerate(params.get("tax_id_data") or []):
            if not isinstance(item, dict) or not item.get("type") or not item.get("value"):
                raise ApiError(400, "tax_id_data needs type and value", param="tax_id_data")
            value = str(item["value"])
            tax_ids.append(
                {
                    "id": f"txi_{rid.removeprefix('cus_')}{i}",
                    "type": item["type"],
                    "value": value,
                    "country": value[:2].upper(),
                }
            )
        data.update(
            tax_ids=tax_ids,
            balance=0,
            currency=None,
            invoice_prefix=data.get("invoice_prefix") or random_token(self.world.id_rng, 8).upper(),
        )
        data.setdefault("metadata", {})
        rec = self.world.create("customers", data, id=rid)
        return Response(200, self.render(rec))

    def update_customer(self, req: Request, oid: str) -> Response:
        current = self._get("customers", oid)
        if current.deleted:
            raise ApiError(404, f"No such customer: '{oid}'", code="resource_missing", param="id")
        params = req.form()
        self._only(params, CUSTOMER_FIELDS)
        rec = self.world.update("customers", oid, self._customer_changes(params, current))
        return Response(200, self.render(rec))

    def delete_customer(self, req: Request, oid: str) -> Response:
        current = self._get("customers", oid)
        if current.deleted:
            raise ApiError(404, f"No such customer: '{oid}'", code="resource_missing", param="id")
        self.world.delete("customers", oid)
        return Response(200, {"id": oid, "object": "customer", "deleted": True})

    def invoice_action(self, req: Request, oid: str, action: str) -> Response:
        invoice = self._get("invoices", oid)
        params = req.form()
        if invoice.data.get("status") != "open":
            raise ApiError(
                400,
                f"Invoice is {invoice.data.get('status')}; only open invoices "
                f"can be {'paid' if action == 'pay' else action + 'ed'}.",
                code="invoice_not_open",
            )
        if action == "pay":
            out_of_band = str(params.get("paid_out_of_band", "")).lower() == "true"
            remaining = invoice.data["amount_due"] - invoice.data["amount_paid"]
            pay_invoice(self.world, invoice, remaining, out_of_band=out_of_band)
        elif action == "void":
            self.world.update(
                "invoices", oid, {"status": "void", "_voided_at": self.world.now_ms()}
            )
        else:
            self.world.update(
                "invoices",
                oid,
                {"status": "uncollectible", "_marked_uncollectible_at": self.world.now_ms()},
            )
        return Response(200, self.render(self._get("invoices", oid)))

    def _line_items(self, given: Any, currency: str) -> list[dict[str, Any]]:
        if not isinstance(given, list) or not given:
            raise ApiError(400, "Missing required param: line_items.", param="line_items")
        items = []
        for i, line in enumerate(given):
            param = f"line_items[{i}]"
            if not isinstance(line, dict):
                raise ApiError(400, "Invalid object", param=param)
            price = line.get("price_data") or {}
            if not isinstance(price, dict):
                raise ApiError(400, "Invalid object", param=f"{param}[price_data]")
            product = price.get("product_data") or {}
            description = (
                line.get("description")
                or (product.get("name") if isinstance(product, dict) else None)
                or line.get("product")
            )
            try:
                quantity = int(line.get("quantity") or 1)
                unit = int(line.get("unit_amount", price.get("unit_amount")))
            except (TypeError, ValueError):
                raise ApiError(
                    400,
                    "Invalid integer: quantity and unit_amount are integers "
                    "in the currency's minor unit",
                    param=param,
                ) from None
            if quantity < 1 or unit < 0:
                raise ApiError(
                    400, "quantity must be positive and unit_amount not negative", param=param
                )
            if price.get("currency") and str(price["currency"]).lower() != currency:
                raise ApiError(400, "every line must be in the order's currency", param=param)
            items.append({"description": description, "quantity": quantity, "unit_amount": unit})
        return items

    def create_order(self, req: Request) -> Response:
        params = req.form()
        self._only(params, ORDER_FIELDS)
        customer_id = params.get("customer")
        if not customer_id:
            raise ApiError(400, "Missing required param: customer.", param="customer")
        customer = self.world.get("customers", customer_id, include_deleted=False)
        if customer is None:
            raise ApiError(
                400, f"No such customer: '{customer_id}'", code="resource_missing", param="customer"
            )
        currency = str(params.get("currency") or customer.data.get("currency") or "eur").lower()
        given = params.get("line_items")
        if given is None and params.get("amount") not in (None, ""):
            # One line for the whole order (a deal pushed as it is). ERP convention as for
            # rows: an integer is minor units, a decimal point means major units.
            try:
                total = amount(params["amount"])
            except ValueError:
                raise ApiError(400, f"Invalid amount: {params['amount']}", param="amount") from None
            given = [
                {
                    "description": params.get("description") or "Order",
                    "quantity": 1,
                    "unit_amount": total,
                }
            ]
        rec = self.world.create(
            "orders",
            {
                "customer": customer.id,
                "currency": currency,
                "status": "open",
                "description": params.get("description") or None,
                "invoice": None,
                "line_items": self._line_items(given, currency),
                "metadata": self._metadata({}, params.get("metadata")),
            },
        )
        return Response(200, self.render(rec))

    def update_order(self, req: Request, oid: str) -> Response:
        order = self._get("orders", oid)
        params = req.form()
        self._only(params, {"description", "metadata", "expand"})
        changes: dict[str, Any] = {}
        if "description" in params:
            changes["description"] = params["description"] or None
        if "metadata" in params:
            changes["metadata"] = self._metadata(
                order.data.get("metadata") or {}, params["metadata"]
            )
        return Response(200, self.render(self.world.update("orders", oid, changes)))

    def order_action(self, req: Request, oid: str, action: str) -> Response:
        order = self._get("orders", oid)
        status = order.data.get("status")
        allowed = ("open",) if action == "submit" else ("open", "submitted")
        if status not in allowed:
            raise ApiError(
                400,
                f"An order in status {status} cannot be {action}ed.",
                code="order_status_invalid",
            )
        new = "submitted" if action == "submit" else "canceled"
        return Response(200, self.render(self.world.update("orders", oid, {"status": new})))


class _EventRecord(Record):
    """Lets the page fault knobs treat events like records (they have no history)."""

    def __init__(self, event: Event) -> None:
        super().__init__("events", event.id, {}, event.created, event.created)
        self.event = event


def _type_matches(event_type: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        if pattern == event_type or (
            pattern.endswith(".*") and event_type.startswith(pattern[:-1])
        ):
            return True
    return False
