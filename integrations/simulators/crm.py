"""The CRM simulator, shaped like HubSpot's CRM v3 objects API (companies, contacts, deals).

Auth: ``Authorization: Bearer <token>``, with either the private-app token from the
credentials or an OAuth access token from ``POST /oauth/v1/token`` (client credentials
or refresh token grant; tokens expire after ``token_ttl`` seconds).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import random
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from . import generate as gen
from .server import ApiError, BaseApp, Request, Response, link
from .systems import SystemSpec, row_meta, weighted_choice
from .world import Event, Record, World, iso_ms, to_ms

PORTAL_ID = 24_680_135
LIFECYCLE_STAGES = [
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
]
DEAL_STAGES = [
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
]
SINGULAR = {"companies": "company", "contacts": "contact", "deals": "deal"}
# HubSpot-defined association type ids, per source object: type id -> target object
ASSOCIATION_TYPES = {
    "contacts": {1: "companies", 279: "companies", 4: "deals"},
    "companies": {2: "contacts", 280: "contacts", 6: "deals", 342: "deals"},
    "deals": {5: "companies", 341: "companies", 3: "contacts"},
}
COUNTRY_CODES = {info["name"]: code for code, info in gen.COUNTRIES.items()}


@dataclass(frozen=True)
class Prop:
    type: str  # string | number | datetime | enumeration | bool
    label: str
    options: tuple[str, ...] = ()
    read_only: bool = False


def _props(**defs: Prop) -> dict[str, Prop]:
    return {
        **defs,
        "createdate": Prop("datetime", "Create date", read_only=True),
        "hs_lastmodifieddate": Prop("datetime", "Last modified date", read_only=True),
        "hs_object_id": Prop("number", "Record ID", read_only=True),
    }


S = Prop("string", "")
PROPERTIES: dict[str, dict[str, Prop]] = {
    "companies": _props(
        name=Prop("string", "Company name"),
        domain=Prop("string", "Company domain name"),
        website=Prop("string", "Website URL"),
        phone=Prop("string", "Phone number"),
        address=Prop("string", "Street address"),
        address2=Prop("string", "Street address 2"),
        city=Prop("string", "City"),
        state=Prop("string", "State/Region"),
        zip=Prop("string", "Postal code"),
        country=Prop("string", "Country/Region"),
        industry=Prop("string", "Industry"),
        description=Prop("string", "Description"),
        type=Prop("string", "Type"),
        numberofemployees=Prop("number", "Number of employees"),
        annualrevenue=Prop("number", "Annual revenue"),
        lifecyclestage=Prop("enumeration", "Lifecycle stage", tuple(LIFECYCLE_STAGES)),
        hubspot_owner_id=Prop("string", "Company owner"),
        vat_number=Prop("string", "VAT number"),
        legal_name=Prop("string", "Legal name"),
        # custom properties the hub writes (order-to-cash status back into the CRM)
        invoice_status=Prop("string", "Invoice status"),
        open_balance=Prop("number", "Open balance"),
        overdue_balance=Prop("number", "Overdue balance"),
        last_payment_date=Prop("datetime", "Last payment date"),
        erp_customer_id=Prop("string", "ERP customer id"),
        open_tickets=Prop("number", "Open tickets"),
    ),
    "contacts": _props(
        firstname=Prop("string", "First name"),
        lastname=Prop("string", "Last name"),
        email=Prop("string", "Email"),
        phone=Prop("string", "Phone number"),
        mobilephone=Prop("string", "Mobile phone number"),
        jobtitle=Prop("string", "Job title"),
        company=Prop("string", "Company name"),
        associatedcompanyid=Prop("number", "Primary associated company ID"),
        lifecyclestage=Prop("enumeration", "Lifecycle stage", tuple(LIFECYCLE_STAGES)),
        address=Prop("string", "Street address"),
        city=Prop("string", "City"),
        zip=Prop("string", "Postal code"),
        country=Prop("string", "Country/Region"),
        hubspot_owner_id=Prop("string", "Contact owner"),
        hs_lead_status=Prop("string", "Lead status"),
        lastmodifieddate=Prop("datetime", "Last modified date", read_only=True),
    ),
    "deals": _props(
        dealname=Prop("string", "Deal name"),
        amount=Prop("number", "Amount"),
        dealstage=Prop("enumeration", "Deal stage", tuple(DEAL_STAGES)),
        pipeline=Prop("enumeration", "Pipeline", ("default",)),
        closedate=Prop("datetime", "Close date"),
        deal_currency_code=Prop("string", "Currency"),
        hubspot_owner_id=Prop("string", "Deal owner"),
        dealtype=Prop("string", "Deal type"),
        description=Prop("string", "Deal description"),
        hs_priority=Prop("string", "Priority"),
        erp_order_id=Prop("string", "ERP order id"),
    ),
}
DEFAULT_PROPERTIES = {
    "companies": ["name", "domain", "createdate", "hs_lastmodifieddate", "hs_object_id"],
    "contacts": [
        "firstname",
        "lastname",
        "email",
        "createdate",
        "lastmodifieddate",
        "hs_object_id",
    ],
    "deals": [
        "dealname",
        "amount",
        "closedate",
        "pipeline",
        "dealstage",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    ],
}
SEARCHABLE = {
    "companies": ["name", "domain", "website", "phone"],
    "contacts": ["firstname", "lastname", "email", "phone", "company"],
    "deals": ["dealname"],
}


def _prop(obj_type: str, name: str) -> Prop | None:
    found = PROPERTIES[obj_type].get(name)
    if found is None and name.startswith("concord_"):
        return S  # the hub's own custom properties
    return found


def _text(value: Any) -> str | None:
    """HubSpot serves every property value as a string."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _id_key(rid: str) -> tuple[int, int, str]:
    return (0, int(rid), "") if rid.isdigit() else (1, 0, rid)


# -- store rules --------------------------------------------------------------------------


class CrmSpec(SystemSpec):
    name = "crm"
    vendor = "HubSpot CRM v3"
    object_types = ("companies", "contacts", "deals")
    type_aliases = {
        "company": "companies",
        "contact": "contacts",
        "deal": "deals",
        "0-2": "companies",
        "0-1": "contacts",
        "0-3": "deals",
    }
    _bases = {"companies": 10_000_000_000, "contacts": 50_000, "deals": 7_000_000_000}

    def new_id(self, world: World, obj_type: str) -> str:
        return str(world.next_number(obj_type, self._bases[obj_type]))

    def new_event_id(self, world: World) -> str:
        return str(world.next_number("_events", 4_000_000_000))

    def event_types(
        self, obj_type: str, action: str, record: Record, previous: dict[str, Any]
    ) -> list[str]:
        singular = SINGULAR[obj_type]
        if action == "created":
            return [f"{singular}.creation"]
        if action == "deleted":
            return [f"{singular}.deletion"]
        if set(previous) == {"associations"}:
            return [f"{singular}.associationChange"]
        return [f"{singular}.propertyChange"]

    def record_from_row(self, world: World, obj_type: str, row: dict[str, Any], now: int) -> Record:
        nested = row.pop("properties", None) or {}
        row = {**nested, **row}
        assoc_raw = row.pop("associations", None) or {}
        rid, created, updated, deleted, deleted_at = row_meta(
            row,
            now,
            created_keys=("createdate", "createdAt", "created_at", "created"),
            updated_keys=(
                "hs_lastmodifieddate",
                "lastmodifieddate",
                "updatedAt",
                "updated_at",
                "updated",
            ),
        )
        row.pop("hs_object_id", None)
        assoc: dict[str, list[str]] = {}
        for key, value in assoc_raw.items():
            target = self.canonical_type(key)
            if isinstance(value, dict):  # HubSpot's {"results": [{"id": ...}]}
                value = [item["id"] for item in value.get("results", [])]
            assoc[target] = [str(v) for v in value if v not in (None, "")]
        company = row.get("associatedcompanyid")
        if obj_type == "deals":
            row.pop("associatedcompanyid", None)
            company = company or row.pop("company_id", None)
        if company not in (None, "") and obj_type in ("contacts", "deals"):
            assoc.setdefault("companies", [str(company)])
        data = {k: _text(v) for k, v in row.items()}
        if obj_type == "contacts" and assoc.get("companies"):
            data["associatedcompanyid"] = assoc["companies"][0]
        return Record(
            obj_type,
            rid or world.new_id(obj_type),
            data,
            created,
            updated,
            deleted,
            deleted_at,
            assoc,
        )

    def tick(self, world: World, rng: random.Random) -> None:
        actions = [
            (_company_edit, 3),
            (_contact_new, 2),
            (_contact_edit, 1.5),
            (_deal_advance, 3),
            (_deal_new, 1.5),
            (_company_new, 1),
            (_archive, 0.3),
        ]
        for _ in range(10):
            if weighted_choice(rng, actions)(world, rng):
                return


SPEC = CrmSpec()


def _country(record: Record) -> str:
    return COUNTRY_CODES.get(record.data.get("country") or "", "DE")


def _pick(rng: random.Random, records: list[Record]) -> Record | None:
    return rng.choice(records) if records else None


def _company_edit(world: World, rng: random.Random) -> bool:
    company = _pick(rng, world.records("companies"))
    if company is None:
        return False
    what = rng.choice(["phone", "phone", "name", "lifecyclestage"])
    if what == "phone":
        phone = gen.new_phone(rng, _country(company)).format("international")
        world.update("companies", company.id, {"phone": phone})
    elif what == "name":
        name = company.data.get("name") or ""
        suffixes = gen.COUNTRIES[_country(company)]["suffixes"]
        stripped = next((name[: -len(s)].strip() for s in suffixes if name.endswith(" " + s)), None)
        new = stripped or f"{name} {rng.choice(suffixes)}"
        world.update("companies", company.id, {"name": new})
    else:
        order = ["lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer"]
        stage = company.data.get("lifecyclestage")
        if stage not in order[:-1]:
            return False
        world.update("companies", company.id, {"lifecyclestage": order[order.index(stage) + 1]})
    return True


def _contact_new(world: World, rng: random.Random) -> bool:
    company = _pick(rng, world.records("companies"))
    if company is None:
        return False
    taken = {(c.data.get("email") or "").lower() for c in world.records("contacts", deleted=None)}
    person = gen.new_person(rng, _country(company), company.data.get("domain"), taken)
    world.create(
        "contacts",
        {
            "firstname": person.first,
            "lastname": person.last,
            "email": person.email,
            "phone": person.phone.format("international"),
            "jobtitle": person.title,
            "company": company.data.get("name"),
            "associatedcompanyid": company.id,
            "lifecyclestage": "lead",
            "country": company.data.get("country"),
        },
        assoc={"companies": [company.id]},
    )
    return True


def _contact_edit(world: World, rng: random.Random) -> bool:
    contact = _pick(rng, world.records("contacts"))
    if contact is None:
        return False
    if rng.random() < 0.5:
        changes = {"jobtitle": rng.choice(gen.JOB_TITLES)}
    else:
        country = COUNTRY_CODES.get(contact.data.get("country") or "", "DE")
        changes = {"phone": gen.new_phone(rng, country).format("national")}
    world.update("contacts", contact.id, changes)
    return True


def _deal_advance(world: World, rng: random.Random) -> bool:
    open_deals = [
        d
        for d in world.records("deals")
        if d.data.get("dealstage") not in ("closedwon", "closedlost")
    ]
    deal = _pick(rng, open_deals)
    if deal is None:
        return False
    stage = deal.data.get("dealstage") or "appointmentscheduled"
    position = DEAL_STAGES.index(stage) if stage in DEAL_STAGES else 0
    if rng.random() < 0.2:
        nxt = "closedlost"
    else:
        nxt = DEAL_STAGES[min(position + 1, DEAL_STAGES.index("closedwon"))]
    changes: dict[str, Any] = {"dealstage": nxt}
    if nxt.startswith("closed"):
        changes["closedate"] = iso_ms(world.now_ms())
    world.update("deals", deal.id, changes)
    if nxt == "closedwon":
        for company_id in deal.assoc.get("companies", []):
            company = world.get("companies", company_id, include_deleted=False)
            if company and company.data.get("lifecyclestage") != "customer":
                world.update("companies", company_id, {"lifecyclestage": "customer"})
    return True


def _deal_new(world: World, rng: random.Random) -> bool:
    company = _pick(rng, world.records("companies"))
    if company is None:
        return False
    product, base = rng.choice(gen.PRODUCTS)
    amount = round(base * rng.uniform(0.6, 1.8) / 100_000) * 1000
    currency = gen.COUNTRIES[_country(company)]["currency"].upper()
    close = world.now_ms() + int(rng.uniform(10, 90) * gen.DAY_MS)
    world.create(
        "deals",
        {
            "dealname": f"{company.data.get('name')} - {product}",
            "amount": str(amount),
            "deal_currency_code": currency,
            "dealstage": "appointmentscheduled",
            "pipeline": "default",
            "closedate": iso_ms(close),
            "hubspot_owner_id": rng.choice(gen.HUBSPOT_OWNERS),
        },
        assoc={"companies": [company.id]},
    )
    return True


def _company_new(world: World, rng: random.Random) -> bool:
    country = weighted_choice(rng, gen.COUNTRY_WEIGHTS)
    info = gen.COUNTRIES[country]
    industry = rng.randrange(len(gen.INDUSTRIES))
    brand, _legal = gen.new_company_name(rng, country, industry)
    city, postcode, area = rng.choice(info["cities"])
    domain = f"{gen.slug(brand)}.{info['tld']}"
    world.create(
        "companies",
        {
            "name": brand,
            "domain": domain,
            "website": f"https://www.{domain}",
            "phone": gen.new_phone(rng, country, area).format("international"),
            "address": gen.address_line(rng, country),
            "city": city,
            "zip": postcode,
            "country": info["name"],
            "industry": gen.INDUSTRIES[industry][1],
            "lifecyclestage": "lead",
            "hubspot_owner_id": rng.choice(gen.HUBSPOT_OWNERS),
        },
    )
    return True


def _archive(world: World, rng: random.Random) -> bool:
    obj_type = "companies" if rng.random() < 0.3 else "contacts"
    record = _pick(rng, world.records(obj_type))
    if record is None:
        return False
    world.delete(obj_type, record.id)
    return True


# -- HTTP ---------------------------------------------------------------------------------

OBJ = r"(?P<otype>[^/]+)"
OID = r"(?P<oid>[^/]+)"


class CrmApp(BaseApp):
    system = "crm"
    routes = [
        ("POST", r"/oauth/v1/token", "oauth_token"),
        ("GET", r"/oauth/v1/access-tokens/(?P<token>[^/]+)", "token_info"),
        ("GET", r"/account-info/v3/details", "account"),
        ("GET", rf"/crm/v3/properties/{OBJ}", "properties"),
        ("POST", rf"/crm/v3/objects/{OBJ}/search", "search"),
        ("GET", rf"/crm/v3/objects/{OBJ}", "list_objects"),
        ("POST", rf"/crm/v3/objects/{OBJ}", "create"),
        ("GET", rf"/crm/v3/objects/{OBJ}/{OID}", "read"),
        ("PATCH", rf"/crm/v3/objects/{OBJ}/{OID}", "update"),
        ("DELETE", rf"/crm/v3/objects/{OBJ}/{OID}", "archive"),
        (
            "POST",
            r"/crm/v4/associations/(?P<source>[^/]+)/(?P<target>[^/]+)/batch/read",
            "assoc_read",
        ),
    ]
    public = frozenset({"oauth_token", "token_info"})

    # -- auth and errors --------------------------------------------------------------

    def authenticate(self, req: Request) -> None:
        header = req.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "Authentication credentials not found. This API supports "
                "OAuth 2.0 authentication and private app access tokens.",
                code="INVALID_AUTHENTICATION",
            )
        token = token.strip()
        static = self.sim.credentials.get("access_token")
        if static and hmac.compare_digest(token.encode(), str(static).encode()):
            return
        since = self.sim.tokens.check(token)
        if since is None:
            raise ApiError(
                401, "The access token provided is invalid.", code="INVALID_AUTHENTICATION"
            )
        if since > 0:
            raise ApiError(
                401,
                "The OAuth token used to make this call expired "
                f"{max(1, int(since))} second(s) ago.",
                code="EXPIRED_AUTHENTICATION",
            )

    def error_body(self, err: ApiError) -> Any:
        correlation = str(uuid.uuid4())
        if err.status == 429:
            return {
                "status": "error",
                "message": "You have reached your secondly limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": correlation,
                "policyName": "SECONDLY",
            }
        category = err.code or {
            400: "VALIDATION_ERROR",
            401: "INVALID_AUTHENTICATION",
            404: "OBJECT_NOT_FOUND",
            405: "METHOD_NOT_ALLOWED",
            409: "CONFLICT",
        }.get(err.status, "INTERNAL_ERROR" if err.status >= 500 else "BAD_REQUEST")
        return {
            "status": "error",
            "message": err.message,
            "correlationId": correlation,
            "category": category,
        }

    # -- OAuth ------------------------------------------------------------------------

    def oauth_token(self, req: Request) -> Response:
        form = req.form()
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        header = req.headers.get("Authorization") or ""
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip()).decode()
                client_id, _, client_secret = decoded.partition(":")
            except (binascii.Error, UnicodeDecodeError):
                pass
        grant = form.get("grant_type")
        if grant not in ("client_credentials", "refresh_token"):
            return Response(
                400,
                {
                    "status": "BAD_GRANT_TYPE",
                    "error": "unsupported_grant_type",
                    "message": "grant_type must be client_credentials or refresh_token",
                },
            )
        creds = self.sim.credentials
        if not (
            _same(client_id, creds.get("client_id"))
            and _same(client_secret, creds.get("client_secret"))
        ):
            return Response(
                401,
                {
                    "status": "BAD_CLIENT_ID",
                    "error": "invalid_client",
                    "message": "missing or unknown client id or secret",
                },
            )
        if grant == "refresh_token" and not self.sim.tokens.valid_refresh(
            str(form.get("refresh_token") or "")
        ):
            return Response(
                400,
                {
                    "status": "BAD_REFRESH_TOKEN",
                    "error": "invalid_grant",
                    "message": "missing or unknown refresh token",
                },
            )
        ttl = float(creds.get("token_ttl") or 1800)
        access, refresh = self.sim.tokens.issue(ttl)
        return Response(
            200,
            {
                "token_type": "bearer",
                "access_token": access,
                "refresh_token": refresh,
                "expires_in": max(1, round(ttl)),
            },
        )

    def token_info(self, req: Request, token: str) -> Response:
        since = self.sim.tokens.check(token)
        if since is None or since > 0:
            raise ApiError(404, "access token not found or expired", code="NOT_FOUND")
        return Response(
            200,
            {
                "token": token,
                "hub_id": PORTAL_ID,
                "app_id": 1,
                "user": "integration@concord.example",
                "token_type": "access",
                "expires_in": max(0, int(-since)),
                "scopes": [
                    "crm.objects.companies.read",
                    "crm.objects.companies.write",
                    "crm.objects.contacts.read",
                    "crm.objects.contacts.write",
                    "crm.objects.deals.read",
                    "crm.objects.deals.write",
                ],
            },
        )

    def account(self, req: Request) -> Response:
        return Response(
            200,
            {
                "portalId": PORTAL_ID,
                "accountType": "STANDARD",
                "timeZone": "Europe/Berlin",
                "companyCurrency": "EUR",
                "additionalCurrencies": ["GBP", "USD"],
                "utcOffset": "+01:00",
                "utcOffsetMilliseconds": 3_600_000,
                "uiDomain": "app-eu1.hubspot.com",
                "dataHostingLocation": "eu1",
            },
        )

    # -- rendering --------------------------------------------------------------------

    def _type(self, name: str) -> str:
        try:
            return self.world.spec.canonical_type(name)
        except KeyError:
            raise ApiError(
                400, f"Unable to infer object type from: {name}", code="VALIDATION_ERROR"
            ) from None

    @staticmethod
    def all_properties(rec: Record) -> dict[str, str | None]:
        props = {k: _text(v) for k, v in rec.data.items() if not k.startswith("_")}
        props["createdate"] = iso_ms(rec.created)
        props["hs_lastmodifieddate"] = iso_ms(rec.updated)
        if rec.type == "contacts":
            props["lastmodifieddate"] = iso_ms(rec.updated)
        props["hs_object_id"] = rec.id
        return props

    def render(
        self,
        rec: Record,
        props: list[str] | None,
        assoc_types: Sequence[str] = (),
        reverse: dict[str, dict[str, list[str]]] | None = None,
    ) -> dict[str, Any]:
        """One object. ``props`` None: the defaults; ``["*"]``: everything it has."""
        values = self.all_properties(rec)
        if props is None:
            names = DEFAULT_PROPERTIES[rec.type]
        elif props == ["*"]:
            names = list(values)
        else:
            always = ["createdate", "hs_lastmodifieddate", "hs_object_id"]
            if rec.type == "contacts":
                always.append("lastmodifieddate")
            names = [p for p in props if p in values or _prop(rec.type, p)] + [
                p for p in always if p not in props
            ]
        out: dict[str, Any] = {
            "id": rec.id,
            "properties": {name: values.get(name) for name in names},
            "createdAt": iso_ms(rec.created),
            "updatedAt": iso_ms(rec.updated),
            "archived": rec.deleted,
        }
        if rec.deleted and rec.deleted_at:
            out["archivedAt"] = iso_ms(rec.deleted_at)
        associations = {}
        for target in assoc_types:
            ids = list(rec.assoc.get(target, []))
            if reverse and target in reverse:
                ids += [i for i in reverse[target].get(rec.id, []) if i not in ids]
            if ids:
                label = f"{SINGULAR[rec.type]}_to_{SINGULAR[target]}"
                associations[target] = {"results": [{"id": i, "type": label} for i in ids]}
        if associations:
            out["associations"] = associations
        return out

    def _assoc_arg(self, obj_type: str, req: Request) -> tuple[list[str], dict]:
        """Requested association types, and reverse indexes for those stored elsewhere."""
        types = []
        for name in req.csv("associations"):
            try:
                target = self.world.spec.canonical_type(name)
            except KeyError:
                continue
            if target != obj_type and target not in types:
                types.append(target)
        reverse = {target: self._reverse_index(obj_type, target) for target in types}
        return types, reverse

    def _reverse_index(self, obj_type: str, target: str) -> dict[str, list[str]]:
        """id of an ``obj_type`` record → ids of the ``target`` records that link to it."""
        index: dict[str, list[str]] = {}
        for other in self.world.records(target):
            for rid in other.assoc.get(obj_type, []):
                index.setdefault(rid, []).append(other.id)
        return index

    def event_payload(self, event: Event) -> dict[str, Any]:
        rec = event.record
        return {
            "id": event.id,
            "object": "event",
            "type": event.type,
            "created": event.created // 1000,
            "occurredAt": event.created,
            "system": "crm",
            "portalId": PORTAL_ID,
            "objectType": rec.type,
            "objectId": rec.id,
            "data": {
                "object": self.render(rec, ["*"], list(self.world.spec.object_types)),
                "previous_attributes": event.previous or {},
            },
        }

    # -- reads ------------------------------------------------------------------------

    def properties(self, req: Request, otype: str) -> Response:
        obj_type = self._type(otype)
        results = []
        for name, prop in PROPERTIES[obj_type].items():
            results.append(
                {
                    "name": name,
                    "label": prop.label,
                    "type": prop.type,
                    "fieldType": {
                        "number": "number",
                        "datetime": "date",
                        "enumeration": "select",
                    }.get(prop.type, "text"),
                    "groupName": f"{SINGULAR[obj_type]}information",
                    "options": [{"label": o, "value": o} for o in prop.options],
                    "modificationMetadata": {
                        "readOnlyValue": prop.read_only,
                        "archivable": True,
                        "readOnlyDefinition": True,
                    },
                }
            )
        return Response(200, {"results": results})

    def list_objects(self, req: Request, otype: str) -> Response:
        obj_type = self._type(otype)
        limit = req.int_arg("limit", 10, 1, 100)
        archived = (req.arg("archived") or "false").lower() == "true"
        props = req.csv("properties") or None
        assoc_types, reverse = self._assoc_arg(obj_type, req)
        records = sorted(
            self.world.records(obj_type, deleted=archived), key=lambda r: _id_key(r.id)
        )
        start = 0
        after = req.arg("after")
        if after:
            key = _id_key(after)
            start = next((i for i, r in enumerate(records) if _id_key(r.id) > key), len(records))
        page = records[start : start + limit]
        earlier = records[max(0, start - limit) : start]
        body: dict[str, Any] = {
            "results": [
                self.render(r, props, assoc_types, reverse) for r in self.page_of(page, earlier)
            ]
        }
        if start + limit < len(records):
            nxt = page[-1].id
            params = {
                "limit": limit,
                "after": nxt,
                "properties": ",".join(props) if props else None,
                "associations": ",".join(assoc_types) or None,
                "archived": "true" if archived else None,
            }
            body["paging"] = {"next": {"after": nxt, "link": link(req, req.path, params)}}
        return Response(200, body)

    def read(self, req: Request, otype: str, oid: str) -> Response:
        obj_type = self._type(otype)
        archived = (req.arg("archived") or "false").lower() == "true"
        rec = self.world.get(obj_type, oid)
        if rec is None or rec.deleted != archived:
            raise ApiError(404, "Object not found. objectId are usually numeric.")
        assoc_types, reverse = self._assoc_arg(obj_type, req)
        return Response(200, self.render(rec, req.csv("properties") or None, assoc_types, reverse))

    def search(self, req: Request, otype: str) -> Response:
        obj_type = self._type(otype)
        body = req.json() or {}
        if not isinstance(body, dict):
            raise ApiError(400, "the search request must be a JSON object")
        try:
            limit = int(body.get("limit", 10))
            offset = int(body.get("after") or 0)
        except (TypeError, ValueError):
            raise ApiError(400, "limit and after must be integers") from None
        if not 1 <= limit <= 200:
            raise ApiError(400, "limit must be between 1 and 200")
        if offset < 0 or offset + limit > 10_000:
            raise ApiError(
                400,
                "The search API returns at most 10,000 results per query; "
                "narrow the filters (e.g. by hs_lastmodifieddate) to page further.",
            )
        groups = body.get("filterGroups") or []
        if len(groups) > 5 or sum(len(g.get("filters") or []) for g in groups) > 18:
            raise ApiError(400, "at most 5 filterGroups and 18 filters in all")
        query = str(body.get("query") or "").strip().lower()
        props = body.get("properties") or None
        matched = [
            r
            for r in self.world.records(obj_type)
            if self._matches(r, groups) and self._matches_query(r, query)
        ]
        matched.sort(key=lambda r: _id_key(r.id))
        for sort in reversed(body.get("sorts") or []):
            name, descending = _sort_spec(sort)
            prop = self._filter_prop(obj_type, name)
            matched.sort(key=lambda r, n=name, p=prop: _sort_key(self, r, n, p), reverse=descending)
        page = matched[offset : offset + limit]
        earlier = matched[max(0, offset - limit) : offset]
        out: dict[str, Any] = {
            "total": len(matched),
            "results": [self.render(r, props) for r in self.page_of(page, earlier)],
        }
        if offset + limit < len(matched):
            out["paging"] = {"next": {"after": str(offset + limit)}}
        return Response(200, out)

    def assoc_read(self, req: Request, source: str, target: str) -> Response:
        """CRM v4 associations batch read: ``{"inputs": [{"id"}]}`` (at most 1,000) →
        ``{"results": [{"from": {"id"}, "to": [{"toObjectId", "associationTypes"}]}]}``;
        inputs with no association (or no live record) come back in ``errors`` (207)."""
        obj_type, target_type = self._type(source), self._type(target)
        body = req.json() or {}
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= 1000:
            raise ApiError(400, "inputs must be a list of 1 to 1000 {id} objects")
        reverse = self._reverse_index(obj_type, target_type)
        type_id = next(
            (t for t, o in ASSOCIATION_TYPES.get(obj_type, {}).items() if o == target_type), 0
        )
        results, missing = [], []
        for item in inputs:
            rid = str(item.get("id", "")) if isinstance(item, dict) else ""
            rec = self.world.get(obj_type, rid, include_deleted=False)
            ids = []
            if rec is not None:
                ids = list(rec.assoc.get(target_type, []))
                ids += [i for i in reverse.get(rid, []) if i not in ids]
            if not ids:
                missing.append(rid)
                continue
            results.append(
                {
                    "from": {"id": rid},
                    "to": [
                        {
                            "toObjectId": int(i) if i.isdigit() else i,
                            "associationTypes": [
                                {"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}
                            ],
                        }
                        for i in ids
                    ],
                }
            )
        out: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if missing:
            out["numErrors"] = len(missing)
            out["errors"] = [
                {
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": f"No {SINGULAR[target_type]} is associated with "
                    f"{SINGULAR[obj_type]} {rid}.",
                    "context": {"fromObjectId": [rid]},
                }
                for rid in missing
            ]
        return Response(207 if missing else 200, out)

    def _filter_prop(self, obj_type: str, name: str) -> Prop:
        if obj_type == "contacts" and name == "lastmodifieddate":
            return PROPERTIES["contacts"]["lastmodifieddate"]
        prop = _prop(obj_type, name)
        if prop is None:
            raise ApiError(
                400,
                f"There was a problem with the request: unknown property {name!r} for {obj_type}",
            )
        return prop

    def _matches_query(self, rec: Record, query: str) -> bool:
        if not query:
            return True
        for name in SEARCHABLE[rec.type]:
            value = (rec.data.get(name) or "").lower()
            if query in value:
                return True
        return False

    def _matches(self, rec: Record, groups: list[dict]) -> bool:
        if not groups:
            return True
        values = self.all_properties(rec)
        return any(
            all(self._filter(rec, values, f) for f in g.get("filters") or []) for g in groups
        )

    def _filter(self, rec: Record, values: dict[str, Any], flt: dict[str, Any]) -> bool:
        name = str(flt.get("propertyName") or "")
        op = str(flt.get("operator") or "EQ").upper()
        if name.startswith("associations."):
            target = self._type(name.split(".", 1)[1])
            ids = rec.assoc.get(target, [])
            wanted = [str(v) for v in (flt.get("values") or [flt.get("value")])]
            hit = any(w in ids for w in wanted)
            return not hit if op in ("NEQ", "NOT_IN") else hit
        prop = self._filter_prop(rec.type, name)
        raw = values.get(name)
        if op == "HAS_PROPERTY":
            return raw not in (None, "")
        if op == "NOT_HAS_PROPERTY":
            return raw in (None, "")
        if raw in (None, ""):
            return op in ("NEQ", "NOT_IN", "NOT_CONTAINS_TOKEN")
        left = _typed(prop, raw)
        if op in ("IN", "NOT_IN"):
            hit = left in [_typed(prop, v) for v in flt.get("values") or []]
            return hit if op == "IN" else not hit
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            pattern = str(flt.get("value") or "").lower()
            text = str(raw).lower()
            tokens = [text, *re.split(r"[\s@.,;:/_\-]+", text)]
            hit = any(fnmatchcase(t, pattern) for t in tokens)
            return hit if op == "CONTAINS_TOKEN" else not hit
        right = _typed(prop, flt.get("value"))
        if op == "BETWEEN":
            return right <= left <= _typed(prop, flt.get("highValue"))
        try:
            return {
                "EQ": lambda: left == right,
                "NEQ": lambda: left != right,
                "LT": lambda: left < right,
                "LTE": lambda: left <= right,
                "GT": lambda: left > right,
                "GTE": lambda: left >= right,
            }[op]()
        except KeyError:
            raise ApiError(400, f"unknown filter operator {op}") from None

    # -- writes -----------------------------------------------------------------------

    def _clean(self, obj_type: str, props: Any, current: Record | None) -> dict[str, Any]:
        if not isinstance(props, dict):
            raise ApiError(400, '"properties" must be an object of property values')
        errors: list[dict[str, Any]] = []
        clean: dict[str, Any] = {}
        for name, value in props.items():
            prop = _prop(obj_type, name)
            if prop is None:
                errors.append(
                    {
                        "isValid": False,
                        "name": name,
                        "error": "PROPERTY_DOESNT_EXIST",
                        "message": f'Property "{name}" does not exist',
                    }
                )
                continue
            if prop.read_only:
                errors.append(
                    {
                        "isValid": False,
                        "name": name,
                        "error": "READ_ONLY_VALUE",
                        "message": f'"{name}" is a read only property; its value cannot be set.',
                    }
                )
                continue
            if value is None or value == "":
                clean[name] = None
                continue
            try:
                if prop.type == "number":
                    float(value)
                    clean[name] = _text(value)
                elif prop.type == "datetime":
                    clean[name] = iso_ms(to_ms(value))
                elif prop.type == "enumeration" and prop.options and str(value) not in prop.options:
                    raise ValueError(
                        f"{value!r} was not one of the allowed options: {', '.join(prop.options)}"
                    )
                else:
                    clean[name] = _text(value)
            except (TypeError, ValueError) as exc:
                errors.append(
                    {
                        "isValid": False,
                        "name": name,
                        "error": "INVALID_VALUE",
                        "message": f"{name}: {exc}",
                    }
                )
        if obj_type == "contacts" and clean.get("email"):
            email = str(clean["email"]).lower()
            for other in self.world.records("contacts"):
                if (other.data.get("email") or "").lower() == email and (
                    current is None or other.id != current.id
                ):
                    raise ApiError(
                        409, f"Contact already exists. Existing ID: {other.id}", code="CONFLICT"
                    )
        if errors:
            raise ApiError(
                400,
                f"Property values were not valid: {json.dumps(errors)}",
                code="VALIDATION_ERROR",
            )
        return clean

    def _company_assoc(self, company_id: Any) -> list[str]:
        if company_id in (None, ""):
            return []
        if self.world.get("companies", company_id, include_deleted=False) is None:
            raise ApiError(400, f"company {company_id} does not exist", code="VALIDATION_ERROR")
        return [str(company_id)]

    def create(self, req: Request, otype: str) -> Response:
        obj_type = self._type(otype)
        body = req.json()
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object with properties")
        props = self._clean(obj_type, body.get("properties", {}), None)
        assoc: dict[str, list[str]] = {}
        for item in body.get("associations") or []:
            try:
                to_id = str(item["to"]["id"])
                type_ids = [int(t["associationTypeId"]) for t in item.get("types") or []]
            except (KeyError, TypeError, ValueError):
                raise ApiError(
                    400, "associations need to.id and types[].associationTypeId"
                ) from None
            for type_id in type_ids or [0]:
                target = ASSOCIATION_TYPES[obj_type].get(type_id)
                if target is None:
                    raise ApiError(400, f"association type {type_id} is not valid from {obj_type}")
                if self.world.get(target, to_id, include_deleted=False) is None:
                    raise ApiError(400, f"{target} {to_id} does not exist")
                assoc.setdefault(target, [])
                if to_id not in assoc[target]:
                    assoc[target].append(to_id)
        if obj_type in ("contacts", "deals") and props.get("associatedcompanyid"):
            assoc["companies"] = self._company_assoc(props["associatedcompanyid"])
        if obj_type == "deals":
            props.pop("associatedcompanyid", None)
        if obj_type == "contacts" and assoc.get("companies"):
            props["associatedcompanyid"] = assoc["companies"][0]
        rec = self.world.create(obj_type, props, assoc=assoc)
        return Response(201, self.render(rec, ["*"]))

    def update(self, req: Request, otype: str, oid: str) -> Response:
        obj_type = self._type(otype)
        current = self.world.get(obj_type, oid, include_deleted=False)
        if current is None:
            raise ApiError(404, "Object not found. objectId are usually numeric.")
        body = req.json()
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object with properties")
        props = self._clean(obj_type, body.get("properties", {}), current)
        assoc = None
        if obj_type == "contacts" and "associatedcompanyid" in props:
            assoc = {"companies": self._company_assoc(props["associatedcompanyid"])}
        try:
            rec = self.world.update(obj_type, oid, props, assoc=assoc)
        except KeyError:
            raise ApiError(404, "Object not found. objectId are usually numeric.") from None
        return Response(200, self.render(rec, ["*"]))

    def archive(self, req: Request, otype: str, oid: str) -> Response:
        obj_type = self._type(otype)
        with contextlib.suppress(KeyError):  # HubSpot answers 204 for an id already gone
            self.world.delete(obj_type, oid)
        return Response(204)


def _same(given: Any, expected: Any) -> bool:
    if given is None or expected is None:
        return False
    return hmac.compare_digest(str(given).encode(), str(expected).encode())


def _typed(prop: Prop, value: Any) -> Any:
    try:
        if prop.type == "datetime":
            return to_ms(value)
        if prop.type == "number":
            return float(value)
        if prop.type == "bool":
            return str(value).lower() == "true"
    except (TypeError, ValueError):
        raise ApiError(400, f"{value!r} is not a valid {prop.type} value") from None
    return "" if value is None else str(value).lower()


def _sort_spec(sort: Any) -> tuple[str, bool]:
    if isinstance(sort, str):
        return sort.lstrip("-"), sort.startswith("-")
    if isinstance(sort, dict) and sort.get("propertyName"):
        return str(sort["propertyName"]), str(sort.get("direction", "")).upper() == "DESCENDING"
    raise ApiError(400, "sorts are property names or {propertyName, direction}")


def _sort_key(app: CrmApp, rec: Record, name: str, prop: Prop) -> tuple:
    raw = app.all_properties(rec).get(name)
    if raw in (None, ""):
        return (1, 0)
    return (0, _typed(prop, raw))
