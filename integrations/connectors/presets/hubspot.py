"""HubSpot CRM v3: companies, contacts and deals.

Full pulls page through ``GET /crm/v3/objects/{type}`` with the ``after`` cursor. Once a
cursor is stored, pulls use ``POST /crm/v3/objects/{type}/search`` filtered on the last
modified date (GTE) and sorted ascending, so the high-water mark can be stored page by
page; the search API stops at 10,000 results per query, so the connector queries again
from the high-water mark every 10,000 records.

Search results carry no associations, so the deals stream reads each page's deal →
company associations with one batch request (``POST /crm/v4/associations/deals/companies/
batch/read``) and puts them where the list API has them (``associations.companies``): deals
sync incrementally like the other streams. ``deal_company_property`` names a deal property
holding the company id instead (a custom property kept by a workflow), and saves that
request. An association change alone may not move a deal's ``hs_lastmodifieddate``; the
``deal.associationChange`` webhook (routed below) carries it.

Companies and contacts have separate id sequences in HubSpot, yet both can be a customer
(a company, or a contact with no company: a person). Their external ids are therefore
prefixed per object type, ``company:<id>`` and ``contact:<id>``, in every mapping that names
them (contacts' company, deals' company), and the push specs strip the prefix again.

``oauth=True`` authenticates with OAuth client credentials at ``/oauth/v1/token``
(``client_id``, ``client_secret``) instead of a private app token (``token``). HubSpot's
own webhooks (signature v3, no object in the payload) are not read; the ``webhook``
block routes Concord-signed events (``concord_v1``: a relay, or the simulator) whose
``data.object`` is the object as the API returns it.
"""

from __future__ import annotations

from typing import Any

COMPANY_PROPERTIES = [
    "name",
    "domain",
    "website",
    "phone",
    "address",
    "address2",
    "city",
    "zip",
    "state",
    "country",
    "lifecyclestage",
    "hubspot_owner_id",
    "hs_lastmodifieddate",
]
CONTACT_PROPERTIES = [
    "firstname",
    "lastname",
    "email",
    "phone",
    "mobilephone",
    "jobtitle",
    "associatedcompanyid",
    "lastmodifieddate",
]
DEAL_PROPERTIES = [
    "dealname",
    "dealstage",
    "amount",
    "deal_currency_code",
    "closedate",
    "hubspot_owner_id",
    "hs_lastmodifieddate",
]

LIFECYCLE_STAGES = {
    "subscriber": "subscriber",
    "lead": "lead",
    "marketingqualifiedlead": "lead",
    "salesqualifiedlead": "lead",
    "opportunity": "opportunity",
    "customer": "customer",
    "evangelist": "customer",
    "other": "other",
}
# The stages of HubSpot's default sales pipeline.
DEAL_STAGES = {
    "appointmentscheduled": "lead",
    "qualifiedtobuy": "qualified",
    "presentationscheduled": "proposal",
    "decisionmakerboughtin": "negotiation",
    "contractsent": "negotiation",
    "closedwon": "closed_won",
    "closedlost": "closed_lost",
}

PAGING = {"type": "cursor", "param": "after", "next_path": "paging.next.after"}


def _object_stream(
    object_type: str,
    properties: list[str],
    *,
    modified_property: str,
    entity: str,
    mapping: dict[str, Any],
) -> dict[str, Any]:
    path = f"/crm/v3/objects/{object_type}"
    return {
        "path": path,
        "params": {
            "limit": 100,
            "properties": ",".join(properties),
            "archived": False,
        },
        "record_path": "results",
        "pagination": PAGING,
        "entity": entity,
        "mapping": mapping,
        "deleted_path": "archived",
        "incremental": {
            "cursor_field": "updatedAt",
            "format": "unix_ms",
            "sorted": True,
            # The search index trails writes by a few seconds: look back a minute.
            "lookback_seconds": 60,
            "max_results": 10_000,
            "request": {
                "path": f"{path}/search",
                "method": "POST",
                "params": {},
                "body": {
                    "filterGroups": [
                        {
                            "filters": [
                                {
                                    "propertyName": modified_property,
                                    "operator": "GTE",
                                    "value": "{cursor}",
                                }
                            ]
                        }
                    ],
                    "sorts": [{"propertyName": modified_property, "direction": "ASCENDING"}],
                    "properties": properties,
                    "limit": 100,
                },
                "pagination": {**PAGING, "in": "body"},
            },
        },
    }


COMPANY_ID = "company:"
CONTACT_ID = "contact:"


def _properties_push(object_type: str, id_prefix: str = "") -> dict[str, Any]:
    path = f"/crm/v3/objects/{object_type}"
    spec: dict[str, Any] = {
        "create": {"path": path, "method": "POST"},
        "update": {"path": f"{path}/{{id}}", "method": "PATCH"},
        "wrap": "properties",
        "id_path": "id",
    }
    if id_prefix:
        spec["id_prefix"] = id_prefix
    return spec


def _routes(name: str, stream: str) -> dict[str, Any]:
    events = ("creation", "propertyChange", "associationChange", "deletion")
    return {f"{name}.{e}": {"stream": stream, "object_path": "data.object"} for e in events}


CONTACT_FIELDS = {
    "properties.firstname": "first_name",
    "properties.lastname": "last_name",
    "properties.email": "email",
    "properties.mobilephone": "phone",
    "properties.phone": "phone",
}


def config(
    base_url: str, *, deal_company_property: str | None = None, oauth: bool = False
) -> dict[str, Any]:
    deal_properties = DEAL_PROPERTIES + ([deal_company_property] if deal_company_property else [])
    deal_company = {
        "field": f"properties.{deal_company_property}"
        if deal_company_property
        else "associations.companies.results.0.id",
        "prefix": COMPANY_ID,
    }
    deals = _object_stream(
        "deals",
        deal_properties,
        modified_property="hs_lastmodifieddate",
        entity="deal",
        mapping={
            "external_id": "id",
            "updated_at": "updatedAt",
            "fields": {
                "properties.dealname": "name",
                "properties.dealstage": "stage",
                "properties.amount": "amount",
                "properties.deal_currency_code": "currency",
                "properties.closedate": "close_date",
                "properties.hubspot_owner_id": "owner",
            },
            "values": {"stage": DEAL_STAGES},
            "refs": {"customer": deal_company},
        },
    )
    if not deal_company_property:
        deals["associations"] = {
            "path": "/crm/v4/associations/deals/{to}/batch/read",
            "to": ["companies"],
        }
    return {
        "base_url": base_url,
        "auth": (
            {"type": "oauth2_client_credentials", "token_url": "/oauth/v1/token"}
            if oauth
            else {"type": "bearer"}  # a private app's access token
        ),
        "timeout": 20,
        "streams": {
            "companies": _object_stream(
                "companies",
                COMPANY_PROPERTIES,
                modified_property="hs_lastmodifieddate",
                entity="customer",
                mapping={
                    "external_id": {"field": "id", "prefix": COMPANY_ID},
                    "updated_at": "updatedAt",
                    "fields": {
                        "properties.name": "name",
                        "properties.domain": "website",
                        "properties.website": "website",
                        "properties.phone": "phone",
                        "properties.address": "address_line1",
                        "properties.address2": "address_line2",
                        "properties.city": "city",
                        "properties.zip": "postal_code",
                        "properties.state": "region",
                        "properties.country": "country",
                        "properties.lifecyclestage": "lifecycle_stage",
                        "properties.hubspot_owner_id": "owner",
                    },
                    "values": {"lifecycle_stage": LIFECYCLE_STAGES},
                },
            ),
            # Contacts of a company are its contacts; contacts with no company are the
            # CRM's private customers (persons). One object type, two streams.
            "contacts": {
                **_object_stream(
                    "contacts",
                    CONTACT_PROPERTIES,
                    modified_property="lastmodifieddate",
                    entity="contact",
                    mapping={
                        "external_id": {"field": "id", "prefix": CONTACT_ID},
                        "updated_at": "updatedAt",
                        "fields": CONTACT_FIELDS | {"properties.jobtitle": "title"},
                        "refs": {
                            "customer": {
                                "field": "properties.associatedcompanyid",
                                "prefix": COMPANY_ID,
                            }
                        },
                    },
                ),
                "select": {"path": "properties.associatedcompanyid", "present": True},
            },
            "persons": {
                **_object_stream(
                    "contacts",
                    CONTACT_PROPERTIES,
                    modified_property="lastmodifieddate",
                    entity="customer",
                    mapping={
                        "external_id": {"field": "id", "prefix": CONTACT_ID},
                        "updated_at": "updatedAt",
                        "fields": CONTACT_FIELDS,
                    },
                ),
                "select": {"path": "properties.associatedcompanyid", "present": False},
            },
            "deals": deals,
        },
        "push": {
            "companies": _properties_push("companies", COMPANY_ID),
            "contacts": _properties_push("contacts", CONTACT_ID),
            "deals": _properties_push("deals"),
        },
        "webhook": {
            "scheme": "concord_v1",
            "tolerance_seconds": 300,
            "events": {
                **_routes("company", "companies"),
                **_routes("contact", "contacts"),
                **_routes("deal", "deals"),
            },
        },
    }
