"""The canonical schema: which fields each entity has and how a raw value becomes canonical.

Mapping (in integrations) names canonical fields; this module validates and coerces
their values, raising ``FieldValueError`` with a message a person can act on.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from .identity import normalize
from .models import (
    Contact,
    Customer,
    Deal,
    Entity,
    Invoice,
    Order,
    Payment,
    Ticket,
)


class FieldValueError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


Coercer = Callable[[Any, dict[str, Any]], Any]


def _text(max_length: int) -> Coercer:
    def coerce(value: Any, record: dict[str, Any]) -> str:
        text = " ".join(str(value).split())
        if len(text) > max_length:
            raise ValueError(f"longer than {max_length} characters")
        return text

    return coerce


def _email(value: Any, record: dict[str, Any]) -> str:
    text = str(value).strip()
    try:
        validate_email(text)
    except ValidationError:
        raise ValueError(f"{text!r} is not a valid e-mail address") from None
    return normalize.email(text)


_PHONE_CHARS = re.compile(r"^[0-9 ()+./-]+(?:\s*(?:x|ext\.?)\s*\d+)?$", re.IGNORECASE)


def _phone(value: Any, record: dict[str, Any]) -> str:
    """E.164. A national number with no country to read it by is kept as written (it
    cannot be normalized, so it is no identity key); anything else invalid is an error."""
    text = " ".join(str(value).split())
    country = record.get("country") or ""
    e164 = normalize.phone(text, country)
    if e164:
        return e164
    digits = sum(c.isdigit() for c in text)
    if (
        not country
        and not text.startswith(("+", "00"))
        and _PHONE_CHARS.match(text)
        and (6 <= digits <= 15)
    ):
        return text
    raise ValueError(f"{value!r} is not a valid phone number")


_TRUE = {"1", "true", "t", "yes", "y", "verified"}
_FALSE = {"0", "false", "f", "no", "n", "unverified"}


def _boolean(value: Any, record: dict[str, Any]) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(f"{value!r} is not true or false")


def _country(value: Any, record: dict[str, Any]) -> str:
    code = normalize.country(str(value))
    if not code:
        raise ValueError(f"{value!r} is not a known country")
    return code


def _currency(value: Any, record: dict[str, Any]) -> str:
    code = str(value).strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise ValueError(f"{value!r} is not an ISO 4217 currency code")
    return code


def _decimal(value: Any, record: dict[str, Any]) -> Decimal:
    text = str(value).strip().replace(",", "") if isinstance(value, str) else value
    try:
        number = Decimal(str(text))
    except InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return number.quantize(Decimal("0.01"))


def _date(value: Any, record: dict[str, Any]) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    try:
        parsed = parse_date(text) or (parse_datetime(text) or None)
    except ValueError:
        parsed = None
    if parsed is None:
        raise ValueError(f"{value!r} is not a date (expected YYYY-MM-DD)")
    return parsed.date() if isinstance(parsed, dt.datetime) else parsed


def parse_timestamp(value: Any) -> dt.datetime:
    """Parse an ISO 8601 timestamp or Unix epoch seconds into an aware UTC datetime."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, int | float) or (isinstance(value, str) and value.strip().isdigit()):
        parsed = dt.datetime.fromtimestamp(float(value), tz=dt.UTC)
    else:
        text = str(value).strip()
        try:
            parsed = parse_datetime(text)
        except ValueError:
            parsed = None
        if parsed is None:
            day = parse_date(text) if len(text) == 10 else None
            if day is None:
                raise ValueError(f"{value!r} is not a timestamp (expected ISO 8601)")
            parsed = dt.datetime.combine(day, dt.time.min)
    if timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def _datetime(value: Any, record: dict[str, Any]) -> dt.datetime:
    return parse_timestamp(value)


def _choice(choices: type) -> Coercer:
    values = {c.lower(): c for c in choices.values}
    labels = {str(label).lower(): v for v, label in choices.choices}

    def coerce(value: Any, record: dict[str, Any]) -> str:
        key = str(value).strip().lower().replace("-", "_")
        key_spaced = str(value).strip().lower()
        found = values.get(key) or labels.get(key_spaced) or values.get(key.replace(" ", "_"))
        if not found:
            raise ValueError(f"{value!r} is not one of {', '.join(sorted(values))}")
        return found

    return coerce


def _lines(value: Any, record: dict[str, Any]) -> list[dict[str, Any]]:
    lines = json.loads(value) if isinstance(value, str) else value
    if not isinstance(lines, list):
        raise ValueError("order lines must be a JSON list")
    result = []
    for i, line in enumerate(lines, start=1):
        if not isinstance(line, dict):
            raise ValueError(f"order line {i} is not an object")
        try:
            result.append(
                {
                    "sku": _text(64)(line.get("sku", ""), record),
                    "description": _text(255)(line.get("description", ""), record),
                    "quantity": str(_decimal(line.get("quantity", 1), record)),
                    "unit_price": str(_decimal(line.get("unit_price", 0), record)),
                }
            )
        except ValueError as exc:
            raise ValueError(f"order line {i}: {exc}") from None
    return result


@dataclass(frozen=True)
class FieldSpec:
    name: str
    coerce: Coercer
    # Fields applied to the model attribute of the same name unless ``virtual``.
    virtual: bool = False
    # Inputs that steer identity resolution only (``email_verified``): no model attribute,
    # no provenance, never applied.
    input_only: bool = False


def _model_text_specs(model: type, names: list[str]) -> list[FieldSpec]:
    return [FieldSpec(n, _text(model._meta.get_field(n).max_length)) for n in names]


CUSTOMER_FIELDS = [
    FieldSpec("kind", _choice(Customer.Kind)),
    *_model_text_specs(
        Customer,
        [
            "name",
            "first_name",
            "last_name",
            "legal_name",
            "website",
            "address_line1",
            "address_line2",
            "city",
            "postal_code",
            "region",
            "shipping_address_line1",
            "shipping_city",
            "shipping_postal_code",
            "owner",
        ],
    ),
    FieldSpec("email", _email),
    # False: the source has not verified the e-mail, so it is no identity key (rules.py).
    FieldSpec("email_verified", _boolean, input_only=True),
    FieldSpec("phone", _phone),
    FieldSpec("tax_id", lambda v, r: normalize.tax_id(str(v), r.get("country") or "")),
    FieldSpec("national_id", lambda v, r: normalize.national_id(str(v))),
    FieldSpec("birth_date", _date),
    FieldSpec("country", _country),
    FieldSpec("shipping_country", _country),
    FieldSpec("lifecycle_stage", _choice(Customer.Lifecycle)),
]

SCHEMA: dict[str, dict[str, FieldSpec]] = {
    Entity.CUSTOMER: {f.name: f for f in CUSTOMER_FIELDS},
    Entity.CONTACT: {
        f.name: f
        for f in [
            *_model_text_specs(Contact, ["first_name", "last_name", "title"]),
            FieldSpec("email", _email),
            FieldSpec("phone", _phone),
        ]
    },
    Entity.DEAL: {
        f.name: f
        for f in [
            *_model_text_specs(Deal, ["name", "owner"]),
            FieldSpec("stage", _choice(Deal.Stage)),
            FieldSpec("amount", _decimal),
            FieldSpec("currency", _currency),
            FieldSpec("close_date", _date),
        ]
    },
    Entity.ORDER: {
        f.name: f
        for f in [
            *_model_text_specs(Order, ["number"]),
            FieldSpec("order_date", _date),
            FieldSpec("status", _choice(Order.Status)),
            FieldSpec("total", _decimal),
            FieldSpec("currency", _currency),
            FieldSpec("lines", _lines, virtual=True),
        ]
    },
    Entity.INVOICE: {
        f.name: f
        for f in [
            *_model_text_specs(Invoice, ["number"]),
            FieldSpec("issue_date", _date),
            FieldSpec("due_date", _date),
            FieldSpec("amount", _decimal),
            FieldSpec("amount_paid", _decimal),
            FieldSpec("currency", _currency),
            FieldSpec("status", _choice(Invoice.Status)),
        ]
    },
    Entity.PAYMENT: {
        f.name: f
        for f in [
            FieldSpec("amount", _decimal),
            FieldSpec("currency", _currency),
            FieldSpec("paid_at", _datetime),
            FieldSpec("method", _text(32)),
            FieldSpec("status", _choice(Payment.Status)),
        ]
    },
    Entity.TICKET: {
        f.name: f
        for f in [
            *_model_text_specs(Ticket, ["subject", "channel"]),
            FieldSpec("status", _choice(Ticket.Status)),
            FieldSpec("priority", _choice(Ticket.Priority)),
            FieldSpec("opened_at", _datetime),
            FieldSpec("resolved_at", _datetime),
        ]
    },
}

# Which related records an entity needs, by the ref name used in mapping files.
REQUIRED_REFS: dict[str, tuple[str, ...]] = {
    Entity.CUSTOMER: (),
    Entity.CONTACT: ("customer",),
    Entity.DEAL: ("customer",),
    Entity.ORDER: ("customer",),
    Entity.INVOICE: ("customer",),
    Entity.PAYMENT: ("customer",),
    Entity.TICKET: ("customer",),
}
OPTIONAL_REFS: dict[str, tuple[str, ...]] = {Entity.PAYMENT: ("invoice",)}

# Fields that must have a value once mapping is done, or the record fails.
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    Entity.DEAL: ("name",),
    Entity.ORDER: ("number",),
    Entity.INVOICE: ("number", "amount"),
    Entity.PAYMENT: ("amount",),
    Entity.TICKET: ("subject",),
}


def coerce_fields(entity: str, raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Validate and coerce raw canonical values. Returns (values, errors).

    Empty values (None, "") are dropped: an empty cell in a source never blanks a field.
    """
    specs = SCHEMA[entity]
    values: dict[str, Any] = {}
    errors: list[str] = []
    context = dict(raw)
    if raw.get("country") not in (None, ""):
        context["country"] = normalize.country(str(raw["country"])) or ""
    for name, value in raw.items():
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        spec = specs.get(name)
        if spec is None:
            errors.append(f"{name}: not a canonical field of {entity}")
            continue
        try:
            coerced = spec.coerce(value, context)
        except (ValueError, TypeError) as exc:
            errors.append(str(FieldValueError(name, str(exc))))
            continue
        if coerced not in (None, ""):
            values[name] = coerced
    return values, errors


def field_names(entity: str) -> list[str]:
    return list(SCHEMA[entity])
