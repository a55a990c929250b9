"""Stripe: customers, invoices, charges and customer events (plus ERP-style orders).

Lists page with ``limit`` and ``starting_after`` (newest first), filter on ``created[gte]``
(Unix seconds) and carry amounts in the currency's minor unit; the ``cents_to_units``
transform turns them into decimal amounts before mapping. ``created`` only moves for new
objects: changes to existing customers arrive through the ``events`` stream (or the
signed webhooks, routed below), whose ``created`` is the time of the change.

Stripe has no sales orders; ``orders`` reads and writes a Stripe-style ``/v1/orders``
resource of the billing system (the simulator's ERP), so a closed-won deal can be pushed
there as an order (order-to-cash). Its ``line_items.data`` become the order's lines: unit
amounts in units, then each item reshaped to ``{sku, description, quantity, unit_price}``
(the product id is the SKU).
"""

from __future__ import annotations

from typing import Any

API_VERSION = "2024-06-20"

LIST = {
    "type": "starting_after",
    "param": "starting_after",
    "id_field": "id",
    "has_more_path": "has_more",
}
CREATED = {
    "cursor_field": "created",
    "param": "created[gte]",
    "format": "unix",
    "field_format": "unix",
}

CUSTOMER_FIELDS = {
    "name": "name",
    "email": "email",
    "phone": "phone",
    "address.line1": "address_line1",
    "address.line2": "address_line2",
    "address.city": "city",
    "address.postal_code": "postal_code",
    "address.state": "region",
    "address.country": "country",
    "shipping.address.line1": "shipping_address_line1",
    "shipping.address.city": "shipping_city",
    "shipping.address.postal_code": "shipping_postal_code",
    "shipping.address.country": "shipping_country",
}
INVOICE_STATUS = {
    "draft": "draft",
    "open": "issued",
    "paid": "issued",  # payment status is derived from amount_paid, never imported
    "uncollectible": "issued",
    "void": "void",
}
CHARGE_STATUS = {"succeeded": "succeeded", "pending": "pending", "failed": "failed"}
ORDER_LINE = {
    "sku": "price.product",
    "description": "description",
    "quantity": "quantity",
    "unit_price": "price.unit_amount",
}
ORDER_STATUS = {
    "open": "pending",
    "submitted": "confirmed",
    "processing": "confirmed",
    "complete": "delivered",
    "canceled": "cancelled",
}


def _list(path: str, entity: str, mapping: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "path": path,
        "params": {"limit": 100, **extra.pop("params", {})},
        "record_path": "data",
        "pagination": LIST,
        "incremental": CREATED,
        "entity": entity,
        "mapping": mapping,
        **extra,
    }


def _routes(name: str, stream: str, events: tuple[str, ...]) -> dict[str, Any]:
    return {f"{name}.{e}": {"stream": stream, "object_path": "data.object"} for e in events}


def config(
    base_url: str, *, api_version: str = API_VERSION, webhook_scheme: str = "stripe_v1"
) -> dict[str, Any]:
    """``webhook_scheme="concord_v1"`` reads Concord-signed relays (and the simulator)."""
    return {
        "base_url": base_url,
        "auth": {"type": "bearer"},  # the secret key, sk_live_… or a restricted rk_…
        "headers": {"Stripe-Version": api_version},
        "timeout": 20,
        "streams": {
            "customers": _list(
                "/v1/customers",
                "customer",
                {"external_id": "id", "fields": CUSTOMER_FIELDS},
                deleted_path="deleted",
            ),
            "invoices": _list(
                "/v1/invoices",
                "invoice",
                {
                    "external_id": "id",
                    "fields": {
                        "id": "number",  # drafts have no number yet
                        "number": "number",
                        "amount_due": "amount",
                        "amount_paid": "amount_paid",
                        "currency": "currency",
                        "created": "issue_date",
                        "due_date": "due_date",
                        "status": "status",
                    },
                    "values": {"status": INVOICE_STATUS},
                    "refs": {"customer": "customer"},
                },
                transform={
                    "amount_due": "cents_to_units",
                    "amount_paid": "cents_to_units",
                    "created": "unix_to_iso",
                    "due_date": "unix_to_iso",
                },
            ),
            "charges": _list(
                "/v1/charges",
                "payment",
                {
                    "external_id": "id",
                    "fields": {
                        "amount": "amount",
                        "currency": "currency",
                        "created": "paid_at",
                        "payment_method_details.type": "method",
                        "status": "status",
                    },
                    "values": {"status": CHARGE_STATUS},
                    "refs": {"customer": "customer", "invoice": "invoice"},
                },
                transform={"amount": "cents_to_units"},
            ),
            "orders": _list(
                "/v1/orders",
                "order",
                {
                    "external_id": "id",
                    "fields": {
                        "id": "number",
                        "created": "order_date",
                        "status": "status",
                        "amount_total": "total",
                        "currency": "currency",
                        "line_items.data": "lines",
                    },
                    "values": {"status": ORDER_STATUS},
                    "refs": {"customer": "customer"},
                },
                transform={
                    "amount_total": "cents_to_units",
                    "created": "unix_to_iso",
                    # Deeper paths first: units, then the reshape reads them.
                    "line_items.data.*.price.unit_amount": "cents_to_units",
                    "line_items.data": {"name": "objects", "fields": ORDER_LINE},
                },
            ),
            "events": _list(
                "/v1/events",
                "customer",
                {
                    "external_id": "data.object.id",
                    "updated_at": "created",
                    "fields": {f"data.object.{k}": v for k, v in CUSTOMER_FIELDS.items()},
                },
                params={"type": "customer.*"},
                deleted_path="type",
                deleted_values=["customer.deleted"],
            ),
        },
        "push": {
            "customers": {
                "create": {"path": "/v1/customers", "method": "POST"},
                "update": {"path": "/v1/customers/{id}", "method": "POST"},
                "encoding": "form",
                "id_path": "id",
            },
            "orders": {
                "create": {"path": "/v1/orders", "method": "POST"},
                "update": {"path": "/v1/orders/{id}", "method": "POST"},
                "encoding": "form",
                "id_path": "id",
            },
        },
        "webhook": {
            "scheme": webhook_scheme,
            "signature_header": (
                "Stripe-Signature" if webhook_scheme == "stripe_v1" else "X-Concord-Signature"
            ),
            "tolerance_seconds": 300,
            "events": {
                **_routes("customer", "customers", ("created", "updated", "deleted")),
                **_routes(
                    "invoice",
                    "invoices",
                    (
                        "created",
                        "finalized",
                        "updated",
                        "paid",
                        "payment_succeeded",
                        "payment_failed",
                        "voided",
                        "marked_uncollectible",
                    ),
                ),
                **_routes(
                    "charge", "charges", ("succeeded", "failed", "pending", "refunded", "updated")
                ),
                **_routes("order", "orders", ("created", "updated")),
            },
        },
    }
