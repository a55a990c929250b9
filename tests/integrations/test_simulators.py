"""The source-system simulators over real HTTP on loopback: shapes, paging, auth, faults.

No database: the simulators are another company's systems and know nothing of Django.
Every simulator runs on a free port and is stopped by the fixture.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import phonenumbers
import pytest
from stdnum.eu import vat as eu_vat
from stdnum.gb import vat as gb_vat

from integrations.simulators import (
    SIGNATURE_HEADER,
    World,
    sign,
    start_simulator,
    verify_signature,
)
from integrations.simulators.generate import COUNTRIES

ROOT = Path(__file__).resolve().parents[2]
CRM = {"Authorization": "Bearer pat-na1-concord-demo"}
ERP = {"Authorization": "Bearer sk_test_concord_demo"}
HELPDESK = {
    "Authorization": "Basic "
    + base64.b64encode(b"admin@support.example.com/token:concord-zendesk-token").decode()
}
NOW = 1_760_000_000  # a fixed "now" for generated worlds that must compare equal


def call(method, url, *, headers=None, json_body=None, form=None, timeout=5.0):
    """(status, parsed JSON body or None, headers) of one request; errors are returned."""
    headers = dict(headers or {})
    data = None
    if json_body is not None:
        data = json.dumps(json_body).encode()
        headers["Content-Type"] = "application/json"
    elif form is not None:
        data = urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None, response.headers
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None, exc.headers


@pytest.fixture
def sims():
    started = []

    def start(system, **options):
        options.setdefault("customers", 12)
        options.setdefault("seed", 7)
        sim = start_simulator(system, **options)
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


def hubspot_pages(sim, obj, *, limit=7, query=""):
    """Every page of a HubSpot list, following paging.next.link."""
    pages, url = [], f"{sim.url}/crm/v3/objects/{obj}?limit={limit}{query}"
    for _ in range(200):
        status, body, _ = call("GET", url, headers=CRM)
        assert status == 200, body
        pages.append([r["id"] for r in body["results"]])
        nxt = body.get("paging", {}).get("next")
        if not nxt:
            return pages
        url = nxt["link"]
    raise AssertionError("pagination never ended")


def hubspot_search(sim, obj, since_ms, *, limit=2):
    request = {
        "filterGroups": [
            {
                "filters": [
                    {
                        "propertyName": "hs_lastmodifieddate",
                        "operator": "GTE",
                        "value": str(since_ms),
                    }
                ]
            }
        ],
        "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
        "properties": ["name", "phone", "invoice_status", "open_balance"],
        "limit": limit,
    }
    results = []
    for _ in range(100):
        status, body, _ = call(
            "POST", f"{sim.url}/crm/v3/objects/{obj}/search", headers=CRM, json_body=request
        )
        assert status == 200, body
        results += body["results"]
        nxt = body.get("paging", {}).get("next")
        if not nxt:
            return results, body["total"]
        request["after"] = nxt["after"]
    raise AssertionError("search paging never ended")


def stripe_all(sim, path, *, limit=7, query=""):
    objects, after = [], None
    for _ in range(200):
        url = f"{sim.url}{path}?limit={limit}{query}" + (
            f"&starting_after={after}" if after else ""
        )
        status, body, _ = call("GET", url, headers=ERP)
        assert status == 200, body
        assert body["object"] == "list" and body["url"] == path
        objects += body["data"]
        if not body["has_more"]:
            return objects
        after = body["data"][-1]["id"]
    raise AssertionError("pagination never ended")


def zendesk_pages(sim, path, key, *, per_page=5):
    items, url = [], f"{sim.url}{path}?per_page={per_page}"
    for _ in range(200):
        status, body, _ = call("GET", url, headers=HELPDESK)
        assert status == 200, body
        items += body[key]
        if not body["next_page"]:
            return items
        url = body["next_page"]
    raise AssertionError("pagination never ended")


def zendesk_export(sim, obj, *, start_time=0, cursor=None, per_page=5, include=""):
    """All of a cursor export; returns the items and the cursor to continue from later."""
    query = f"cursor={cursor}" if cursor else f"start_time={start_time}"
    url = f"{sim.url}/api/v2/incremental/{obj}/cursor.json?{query}&per_page={per_page}{include}"
    items = []
    for _ in range(200):
        status, body, _ = call("GET", url, headers=HELPDESK)
        assert status == 200, body
        items += body[obj]
        if body["end_of_stream"]:
            return items, body["after_cursor"]
        url = body["after_url"]
    raise AssertionError("export never reached end_of_stream")


def snapshot(world):
    return {
        t: [
            (r.id, r.data, r.created, r.updated, r.deleted, r.assoc)
            for r in world.records(t, deleted=None)
        ]
        for t in world.object_types
    }


# -- worlds -------------------------------------------------------------------------------


def test_generated_worlds_are_deterministic_and_describe_one_population():
    crm = World.generate("crm", customers=20, seed=3, now=NOW)
    assert snapshot(crm) == snapshot(World.generate("crm", customers=20, seed=3, now=NOW))
    assert snapshot(crm) != snapshot(World.generate("crm", customers=20, seed=4, now=NOW))

    erp = World.generate("erp", customers=20, seed=3, now=NOW)
    helpdesk = World.generate("helpdesk", customers=20, seed=3, now=NOW)
    companies = {r.id for r in crm.records("companies")}
    refs = {
        c.data["metadata"]["hubspot_company_id"]
        for c in erp.records("customers")
        if "hubspot_company_id" in c.data["metadata"]
    }
    assert refs and refs <= companies
    # Every invoice, charge and ticket points at something that exists in its own system.
    customers = {c.id for c in erp.records("customers")}
    assert {i.data["customer"] for i in erp.records("invoices")} <= customers
    assert {c.data["invoice"] for c in erp.records("charges")} <= {
        i.id for i in erp.records("invoices")
    }
    users = {int(u.id) for u in helpdesk.records("users")}
    assert {t.data["requester_id"] for t in helpdesk.records("tickets")} <= users
    # Nothing generated is newer than "now": the live changes come after it.
    for world in (crm, erp, helpdesk):
        for obj in world.object_types:
            assert all(r.updated <= NOW * 1000 for r in world.records(obj, deleted=None))


def test_generated_tax_ids_and_phones_are_valid():
    erp = World.generate("erp", customers=40, seed=5)
    crm = World.generate("crm", customers=40, seed=5)
    tax_ids = [t for c in erp.records("customers") for t in c.data["tax_ids"]]
    assert len(tax_ids) > 10
    for tax in tax_ids:
        if tax["type"] == "eu_vat":
            assert eu_vat.is_valid(tax["value"]), tax
        elif tax["type"] == "gb_vat":
            assert gb_vat.is_valid(tax["value"]), tax
    # A few planted billing accounts have no phone (a nickname, a second account).
    with_phone = [c for c in erp.records("customers") if c.data["phone"]]
    assert len(with_phone) > 0.8 * len(erp.records("customers"))
    for customer in with_phone:
        country = customer.data["address"]["country"]
        number = phonenumbers.parse(customer.data["phone"], country)
        assert phonenumbers.is_valid_number(number), customer.data["phone"]
    codes = {info["name"]: code for code, info in COUNTRIES.items()}
    for company in crm.records("companies"):
        if company.data.get("phone"):
            number = phonenumbers.parse(company.data["phone"], codes[company.data["country"]])
            assert phonenumbers.is_valid_number(number), company.data["phone"]


def test_world_from_rows_infers_the_system_and_bumps_time_on_every_change():
    world = World.from_rows(
        {
            "companies": [{"id": "1", "name": "Acme GmbH", "updated_at": "2024-01-02T03:04:05Z"}],
            "contacts": [{"email": "anna@acme.de", "associatedcompanyid": 1}],
        }
    )
    assert world.system == "crm"
    company = world.get("companies", "1")
    assert company.updated == 1_704_164_645_000
    contact = world.records("contacts")[0]
    assert contact.assoc == {"companies": ["1"]}

    events_before = world.last_event_seq
    changed = world.update("companies", "1", {"phone": "+49 30 1234567"})
    assert changed.updated > company.updated and changed.previous.data.get("phone") is None
    assert world.update("companies", "1", {"phone": "+49 30 1234567"}).updated == changed.updated
    deleted = world.delete("contacts", contact.id)
    assert deleted.deleted and deleted.updated > changed.updated
    assert [e.type for e in world.events(since_seq=events_before)] == [
        "company.propertyChange",
        "contact.deletion",
    ]

    erp = World.from_rows(
        {
            "customers": [
                {"id": "cus_1", "name": "Acme", "address_city": "Berlin", "vat": "DE136695976"}
            ],
            "invoices": [{"customer": "cus_1", "amount_due": "120.50", "status": "open"}],
        }
    )
    assert erp.system == "erp"
    assert erp.get("customers", "cus_1").data["address"]["city"] == "Berlin"
    assert erp.get("customers", "cus_1").data["tax_ids"][0]["type"] == "eu_vat"
    assert erp.records("invoices")[0].data["amount_due"] == 12050


# -- lists: every record exactly once -----------------------------------------------------


def test_crm_lists_return_every_record_once(sims):
    sim = sims("crm")
    for obj in ("companies", "contacts", "deals"):
        pages = hubspot_pages(sim, obj, limit=4)
        ids = [i for page in pages for i in page]
        assert len(ids) == len(set(ids)) == sim.world.counts()[obj]
        assert len(pages) > 1
    contact = sim.world.records("contacts")[0]
    status, _, _ = call("DELETE", f"{sim.url}/crm/v3/objects/contacts/{contact.id}", headers=CRM)
    assert status == 204
    live = [i for p in hubspot_pages(sim, "contacts") for i in p]
    archived = [i for p in hubspot_pages(sim, "contacts", query="&archived=true") for i in p]
    assert contact.id not in live and archived == [contact.id]


def test_crm_objects_carry_hubspot_shapes_and_company_links(sims):
    sim = sims("crm")
    status, body, _ = call(
        "GET",
        f"{sim.url}/crm/v3/objects/contacts?limit=100&properties=email,"
        "associatedcompanyid&associations=companies",
        headers=CRM,
    )
    assert status == 200
    linked = [c for c in body["results"] if c["properties"]["associatedcompanyid"]]
    assert linked
    for contact in linked:
        company_id = contact["properties"]["associatedcompanyid"]
        assert contact["associations"]["companies"]["results"][0]["id"] == company_id
        assert set(contact) >= {"id", "properties", "createdAt", "updatedAt", "archived"}
    status, body, _ = call(
        "GET", f"{sim.url}/crm/v3/objects/deals?limit=100&associations=companies", headers=CRM
    )
    stages = {d["properties"]["dealstage"] for d in body["results"]}
    assert "closedwon" in stages and all(
        d["associations"]["companies"]["results"] for d in body["results"]
    )
    # Without `properties`, HubSpot's defaults; property values are strings.
    company = call("GET", f"{sim.url}/crm/v3/objects/companies?limit=1", headers=CRM)[1]
    assert set(company["results"][0]["properties"]) == {
        "name",
        "domain",
        "createdate",
        "hs_lastmodifieddate",
        "hs_object_id",
    }


def test_erp_lists_return_every_record_once_newest_first(sims):
    sim = sims("erp")
    for path, obj in (
        ("/v1/customers", "customers"),
        ("/v1/invoices", "invoices"),
        ("/v1/charges", "charges"),
        ("/v1/orders", "orders"),
    ):
        objects = stripe_all(sim, path, limit=7)
        ids = [o["id"] for o in objects]
        assert len(ids) == len(set(ids)) == sim.world.counts()[obj]
        created = [o["created"] for o in objects]
        assert created == sorted(created, reverse=True)
    first = call("GET", f"{sim.url}/v1/invoices?limit=5", headers=ERP)[1]["data"]
    second = call(
        "GET", f"{sim.url}/v1/invoices?limit=5&starting_after={first[-1]['id']}", headers=ERP
    )[1]["data"]
    back = call(
        "GET", f"{sim.url}/v1/invoices?limit=5&ending_before={second[0]['id']}", headers=ERP
    )[1]
    assert [o["id"] for o in back["data"]] == [o["id"] for o in first]
    status, body, _ = call("GET", f"{sim.url}/v1/invoices?starting_after=in_nope", headers=ERP)
    assert status == 400 and body["error"]["code"] == "resource_missing"


def test_helpdesk_lists_and_exports_return_every_record_once(sims):
    sim = sims("helpdesk")
    for path, key in (
        ("/api/v2/users.json", "users"),
        ("/api/v2/organizations.json", "organizations"),
        ("/api/v2/tickets.json", "tickets"),
    ):
        items = zendesk_pages(sim, path, key, per_page=4)
        ids = [i["id"] for i in items]
        assert len(ids) == len(set(ids)) == sim.world.counts()[key]
    for obj in ("tickets", "users"):
        items, _ = zendesk_export(sim, obj, per_page=4)
        ids = [i["id"] for i in items]
        assert len(ids) == len(set(ids)) == sim.world.counts()[obj]
        stamps = [i["updated_at"] for i in items]
        assert stamps == sorted(stamps)
    tickets, _ = zendesk_export(sim, "tickets", include="&include=dates")
    solved = [t for t in tickets if t["status"] in ("solved", "closed")]
    assert solved and all(t["dates"]["solved_at"] >= t["created_at"] for t in solved)


# -- incremental pulls --------------------------------------------------------------------


def test_crm_search_returns_only_what_changed_since(sims):
    sim = sims("crm")
    since = sim.world.advance(1)
    first, second, untouched = sim.world.records("companies")[:3]
    sim.world.update("companies", second.id, {"phone": "+49 30 11112222"})
    sim.world.update("companies", first.id, {"phone": "+49 30 33334444"})
    results, total = hubspot_search(sim, "companies", since, limit=1)
    assert total == 2
    assert [r["id"] for r in results] == [second.id, first.id]  # ascending by modification
    assert results[1]["properties"]["phone"] == "+49 30 33334444"
    assert untouched.id not in {r["id"] for r in results}


def test_erp_events_since_a_time_hold_only_later_changes(sims):
    sim = sims("erp")
    earlier = sim.world.tick(3)
    sim.world.advance(2)
    since = sim.world.now_ms() // 1000
    later = sim.world.tick(6)
    events = stripe_all(sim, "/v1/events", limit=4, query=f"&created[gte]={since}")
    assert [e["id"] for e in events] == [e.id for e in reversed(later)]
    assert not {e.id for e in earlier} & {e["id"] for e in events}
    assert all(e["object"] == "event" and e["data"]["object"]["id"] for e in events)
    invoices = stripe_all(sim, "/v1/events", query=f"&created[gte]={since}&type=invoice.*")
    assert all(e["type"].startswith("invoice.") for e in invoices)


def test_helpdesk_cursor_picks_up_after_end_of_stream(sims):
    sim = sims("helpdesk")
    status, body, _ = call(
        "POST",
        f"{sim.url}/api/v2/tickets.json",
        headers=HELPDESK,
        json_body={
            "ticket": {
                "subject": "Where is my invoice?",
                "comment": {"body": "Please resend it."},
                "requester": {"email": "new@example.org"},
            }
        },
    )
    assert status == 201 and body["ticket"]["status"] == "new"
    ticket_id = body["ticket"]["id"]
    _, cursor = zendesk_export(sim, "tickets")
    nothing, cursor = zendesk_export(sim, "tickets", cursor=cursor)
    assert nothing == []
    status, body, _ = call(
        "PUT",
        f"{sim.url}/api/v2/tickets/{ticket_id}.json",
        headers=HELPDESK,
        json_body={"ticket": {"status": "solved"}},
    )
    assert status == 200 and body["ticket"]["status"] == "solved"
    assert body["audit"]["events"][0]["field_name"] == "status"
    changed, _ = zendesk_export(sim, "tickets", cursor=cursor, include="&include=dates")
    assert [t["id"] for t in changed] == [ticket_id]
    assert changed[0]["status"] == "solved" and changed[0]["dates"]["solved_at"]
    # start_time works too, and deleted tickets come through with status "deleted".
    start = sim.world.advance(1) // 1000
    sim.world.delete("tickets", ticket_id)
    gone, _ = zendesk_export(sim, "tickets", start_time=start)
    assert [(t["id"], t["status"]) for t in gone] == [(ticket_id, "deleted")]


# -- auth ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "path", "good", "bad"),
    [
        ("crm", "/crm/v3/objects/companies", CRM, {"Authorization": "Bearer nope"}),
        ("erp", "/v1/customers", ERP, {"Authorization": "Bearer sk_test_wrong_key_0000"}),
        (
            "helpdesk",
            "/api/v2/users.json",
            HELPDESK,
            {
                "Authorization": "Basic "
                + base64.b64encode(b"admin@support.example.com/token:x").decode()
            },
        ),
    ],
)
def test_requests_without_or_with_wrong_credentials_get_401(sims, system, path, good, bad):
    sim = sims(system, customers=3)
    assert call("GET", sim.url + path)[0] == 401
    status, body, _ = call("GET", sim.url + path, headers=bad)
    assert status == 401 and body
    assert call("GET", sim.url + path, headers=good)[0] == 200
    assert sim.stats.count(path, status=401) == 2


def test_crm_oauth_client_credentials_refresh_and_expiry(sims):
    sim = sims("crm", customers=3, credentials={"token_ttl": 0.8})
    token_url = f"{sim.url}/oauth/v1/token"
    creds = {
        "grant_type": "client_credentials",
        "client_id": "concord-crm-client",
        "client_secret": "concord-crm-secret",
    }
    assert call("POST", token_url, form={**creds, "client_secret": "wrong"})[0] == 401
    status, token, _ = call("POST", token_url, form=creds)
    assert status == 200 and token["token_type"] == "bearer" and token["expires_in"] >= 1
    bearer = {"Authorization": f"Bearer {token['access_token']}"}
    url = f"{sim.url}/crm/v3/objects/companies?limit=1"
    assert call("GET", url, headers=bearer)[0] == 200
    time.sleep(0.9)
    status, body, _ = call("GET", url, headers=bearer)
    assert status == 401 and body["category"] == "EXPIRED_AUTHENTICATION"
    status, fresh, _ = call(
        "POST",
        token_url,
        form={**creds, "grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
    )
    assert status == 200
    fresh_bearer = {"Authorization": f"Bearer {fresh['access_token']}"}
    assert call("GET", url, headers=fresh_bearer)[0] == 200
    sim.expire_tokens()
    assert call("GET", url, headers=fresh_bearer)[0] == 401


# -- fault knobs --------------------------------------------------------------------------


def test_429_with_retry_after_then_recovers(sims):
    sim = sims("erp", customers=3)
    url = f"{sim.url}/v1/customers"
    sim.faults.set(fail_next_n_with_429=2, retry_after=3)
    for _ in range(2):
        status, body, headers = call("GET", url, headers=ERP)
        assert status == 429 and headers["Retry-After"] == "3"
        assert body["error"]["type"] == "rate_limit_error"
    assert call("GET", url, headers=ERP)[0] == 200
    assert sim.stats.count("/v1/customers", status=429) == 2


def test_rate_limit_window_and_a_client_that_honours_retry_after(sims):
    sim = sims("crm", customers=3)
    url = f"{sim.url}/crm/v3/objects/companies"
    status, _, _ = call(
        "POST", f"{sim.url}/_sim/faults", json_body={"rate_limit": 2, "rate_limit_window": 1.0}
    )
    assert status == 200

    def fetch():  # what a polite connector does
        for _ in range(5):
            status, _, headers = call("GET", url, headers=CRM)
            if status != 429:
                return status
            time.sleep(float(headers["Retry-After"]))
        raise AssertionError("still rate limited")

    assert [fetch() for _ in range(3)] == [200] * 3
    stats = call("GET", f"{sim.url}/_sim/stats")[1]
    assert stats["requests"]["GET /crm/v3/objects/companies"] == {"200": 3, "429": 1}
    limited = sim.stats.times("/crm/v3/objects/companies", status=429)[0]
    retried = sim.stats.times("/crm/v3/objects/companies", status=200)[-1]
    assert retried - limited >= 0.9


def test_server_error_knobs_are_deterministic(sims):
    sim = sims("helpdesk", customers=3)
    url = f"{sim.url}/api/v2/tickets.json"
    sim.faults.set(fail_next_n_with_500=1, error_status=503)
    assert [call("GET", url, headers=HELPDESK)[0] for _ in range(2)] == [503, 200]

    def run():
        sim.faults.reset(seed=11)
        sim.faults.set(error_rate=0.5)
        return [call("GET", url, headers=HELPDESK)[0] for _ in range(12)]

    first = run()
    assert first == run() and {200, 500} <= set(first)


def test_timeout_and_slow_knobs(sims):
    sim = sims("crm", customers=3)
    url = f"{sim.url}/crm/v3/objects/companies?limit=1"
    sim.faults.set(timeout_next_n=1, delay=1.0)
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        call("GET", url, headers=CRM, timeout=0.3)
    started = time.monotonic()
    assert call("GET", url, headers=CRM)[0] == 200
    assert time.monotonic() - started < 0.9  # the hang was for one request only
    sim.faults.set(slow_ms=200)
    started = time.monotonic()
    assert call("GET", url, headers=CRM)[0] == 200
    assert time.monotonic() - started >= 0.2


def test_duplicate_knob_repeats_records_of_the_previous_page(sims):
    sim = sims("crm")
    sim.faults.set(duplicate_rate=1.0)
    pages = hubspot_pages(sim, "companies", limit=5)
    for before, page in itertools.pairwise(pages):
        assert page[0] in before  # starts with a record the previous page already had
    delivered = [i for p in pages for i in p]
    assert len(set(delivered)) == sim.world.counts()["companies"] < len(delivered)


def test_out_of_order_knob_serves_an_older_version_after_the_newer(sims):
    sim = sims("crm")
    since = sim.world.advance(1)
    company = sim.world.records("companies")[0]
    sim.world.update("companies", company.id, {"phone": "+49 30 55556666"})
    sim.world.update("companies", company.id, {"phone": "+49 30 77778888"})
    sim.faults.set(out_of_order=1.0)
    results, _ = hubspot_search(sim, "companies", since, limit=10)
    newer, older = results
    assert newer["id"] == older["id"] == company.id
    assert older["updatedAt"] < newer["updatedAt"]
    assert (newer["properties"]["phone"], older["properties"]["phone"]) == (
        "+49 30 77778888",
        "+49 30 55556666",
    )
    assert sim.faults.snapshot()["injected"]["out_of_order"] == 1


# -- writes -------------------------------------------------------------------------------


def test_crm_patch_is_validated_and_shows_in_the_next_search(sims):
    sim = sims("crm")
    company = sim.world.records("companies")[0]
    url = f"{sim.url}/crm/v3/objects/companies/{company.id}"
    since = sim.world.advance(1)
    status, body, _ = call("PATCH", url, headers=CRM, json_body={"properties": {"nope": "x"}})
    assert status == 400 and body["category"] == "VALIDATION_ERROR"
    status, body, _ = call(
        "PATCH", url, headers=CRM, json_body={"properties": {"hs_object_id": "1"}}
    )
    assert status == 400 and "READ_ONLY_VALUE" in body["message"]
    status, body, _ = call(
        "PATCH",
        url,
        headers=CRM,
        json_body={"properties": {"invoice_status": "overdue", "open_balance": 1234.5}},
    )
    assert status == 200 and body["properties"]["open_balance"] == "1234.5"
    results, total = hubspot_search(sim, "companies", since)
    assert total == 1 and results[0]["properties"]["invoice_status"] == "overdue"
    status, body, _ = call(
        "POST",
        f"{sim.url}/crm/v3/objects/contacts",
        headers=CRM,
        json_body={
            "properties": {"email": "new.person@example.org", "firstname": "New"},
            "associations": [
                {
                    "to": {"id": company.id},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}],
                }
            ],
        },
    )
    assert status == 201 and body["properties"]["associatedcompanyid"] == company.id
    status, body, _ = call(
        "POST",
        f"{sim.url}/crm/v3/objects/contacts",
        headers=CRM,
        json_body={"properties": {"email": "NEW.person@example.org"}},
    )
    assert status == 409


def test_erp_order_push_is_idempotent_and_appears_in_events(sims):
    sim = sims("erp")
    customer = sim.world.records("customers")[0]
    since = sim.world.advance(1) // 1000
    form = {
        "customer": customer.id,
        "line_items[0][description]": "Annual licence",
        "line_items[0][quantity]": "2",
        "line_items[0][unit_amount]": "60000",
        "metadata[crm_deal_id]": "7000000042",
    }
    headers = {**ERP, "Idempotency-Key": "deal-7000000042"}
    status, order, _ = call("POST", f"{sim.url}/v1/orders", headers=headers, form=form)
    assert status == 200 and order["status"] == "open" and order["amount_total"] == 120000
    assert order["metadata"] == {"crm_deal_id": "7000000042"}
    status, again, replay_headers = call("POST", f"{sim.url}/v1/orders", headers=headers, form=form)
    assert again["id"] == order["id"] and replay_headers["Idempotent-Replayed"] == "true"
    fetched = call("GET", f"{sim.url}/v1/orders/{order['id']}", headers=ERP)[1]
    assert fetched["line_items"]["data"][0]["quantity"] == 2
    events = stripe_all(sim, "/v1/events", query=f"&created[gte]={since}")
    assert [(e["type"], e["data"]["object"]["id"]) for e in events] == [
        ("order.created", order["id"])
    ]
    status, body, _ = call(
        "POST", f"{sim.url}/v1/orders", headers=ERP, form={**form, "customer": "cus_missing"}
    )
    assert status == 400 and body["error"]["param"] == "customer"
    status, body, _ = call(
        "POST", f"{sim.url}/v1/orders", headers=ERP, form={**form, "colour": "red"}
    )
    assert status == 400 and body["error"]["code"] == "parameter_unknown"
    # The ERP fulfils open orders over time and invoices them (order-to-cash).
    for _ in range(200):
        if sim.world.get("orders", order["id"]).data["status"] == "complete":
            break
        sim.world.tick(1)
    done = sim.world.get("orders", order["id"])
    assert done.data["status"] == "complete"
    invoice = sim.world.get("invoices", done.data["invoice"])
    assert invoice.data["amount_due"] == 120000 and invoice.data["metadata"] == {
        "order": order["id"]
    }


def test_helpdesk_closed_tickets_refuse_updates(sims):
    sim = sims("helpdesk")
    closed = next(t for t in sim.world.records("tickets") if t.data["status"] == "closed")
    status, body, _ = call(
        "PUT",
        f"{sim.url}/api/v2/tickets/{closed.id}.json",
        headers=HELPDESK,
        json_body={"ticket": {"status": "open"}},
    )
    assert status == 422 and body["error"] == "RecordInvalid"
    assert sim.world.get("tickets", closed.id).updated == closed.updated


# -- live changes and webhooks ------------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "prefixes"),
    [
        ("crm", ("company.", "contact.", "deal.")),
        ("erp", ("customer.", "invoice.", "charge.", "order.")),
        ("helpdesk", ("ticket.", "user.", "organization.")),
    ],
)
def test_tick_makes_realistic_changes_and_events(sims, system, prefixes):
    world = World.generate(system, customers=12, seed=2, now=NOW)
    twin = World.generate(system, customers=12, seed=2, now=NOW)
    events = world.tick(25)
    assert len(events) >= 25
    assert all(e.type.startswith(prefixes) for e in events)
    assert [(e.type, e.record.id) for e in events] == [(e.type, e.record.id) for e in twin.tick(25)]
    for event in events:
        assert event.record.updated >= NOW * 1000  # a change is newer than the seeded data
    sim = sims(system, world=world)
    status, body, _ = call("POST", f"{sim.url}/_sim/tick?n=3")
    assert status == 200 and len(body["events"]) >= 3


def test_webhooks_are_signed_with_hmac_sha256(sims):
    received = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(500 if len(received) == 1 else 200)  # the first one fails
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=receiver.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        sim = sims(
            "crm",
            webhook_url=f"http://127.0.0.1:{receiver.server_port}/hook",
            webhook_secret="whsec_test",
        )
        company = sim.world.records("companies")[0]
        status, _, _ = call(
            "PATCH",
            f"{sim.url}/crm/v3/objects/companies/{company.id}",
            headers=CRM,
            json_body={"properties": {"name": "Renamed Ltd"}},
        )
        assert status == 200
        assert sim.webhooks.flush(timeout=5)
    finally:
        receiver.shutdown()
        receiver.server_close()
        thread.join()
    assert len(received) == 2  # retried after the 500
    assert received[0][1] == received[1][1]
    headers, body = received[1]
    timestamp, signature = (p.split("=", 1)[1] for p in headers[SIGNATURE_HEADER].split(","))
    expected = hmac.new(b"whsec_test", f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert signature == expected == sign("whsec_test", timestamp, body)
    assert verify_signature("whsec_test", headers[SIGNATURE_HEADER], body)
    assert not verify_signature("whsec_test", headers[SIGNATURE_HEADER], body + b" ")
    assert not verify_signature("other", headers[SIGNATURE_HEADER], body)
    event = json.loads(body)
    assert event["type"] == "company.propertyChange" and event["id"]
    assert event["data"]["object"]["properties"]["name"] == "Renamed Ltd"
    assert event["data"]["previous_attributes"]["name"] == company.data["name"]
    assert abs(event["created"] - time.time()) < 60


# -- admin endpoints and lifecycle --------------------------------------------------------


def test_admin_endpoints_set_knobs_delete_and_reset(sims):
    sim = sims("helpdesk", customers=5)
    status, body, _ = call("POST", f"{sim.url}/_sim/faults", json_body={"nope": 1})
    assert status == 400
    status, body, _ = call("POST", f"{sim.url}/_sim/faults", json_body={"slow_ms": 1})
    assert status == 200 and body["slow_ms"] == 1
    ticket = sim.world.records("tickets")[0]
    status, body, _ = call(
        "POST", f"{sim.url}/_sim/delete", json_body={"object": "tickets", "id": ticket.id}
    )
    assert status == 200 and body["deleted"] == [ticket.id]
    assert call("GET", f"{sim.url}/api/v2/tickets/{ticket.id}.json", headers=HELPDESK)[0] == 404
    assert call("POST", f"{sim.url}/_sim/reset", json_body={"world": True})[0] == 200
    assert sim.faults.get("slow_ms") == 0 and sim.stats.total == 0
    assert call("GET", f"{sim.url}/api/v2/tickets/{ticket.id}.json", headers=HELPDESK)[0] == 200


def test_stop_closes_connections_joins_threads_and_frees_the_port(sims):
    sim = start_simulator("crm", customers=3)
    connection = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=5)
    connection.request("GET", "/crm/v3/objects/companies?limit=1", headers=CRM)
    assert connection.getresponse().read()  # keep-alive connection stays open
    port = sim.port
    sim.stop()
    connection.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("sim-crm")]
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    again = sims("crm", customers=3, port=port)
    assert call("GET", f"{again.url}/crm/v3/objects/companies", headers=CRM)[0] == 200


def test_cli_serves_all_three_and_stops_on_sigterm():
    code = "import integrations.simulators, sys; print('django' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.stdout.strip() == "False", out.stderr  # importable without Django
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "integrations.simulators",
            "--all",
            "--base-port",
            "0",
            "--customers",
            "4",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        lines = [process.stdout.readline() for _ in range(4)]
        urls = {line.split()[0]: line.split()[1] for line in lines[:3]}
        assert lines[3].startswith("ready")
        assert call("GET", urls["crm"] + "/crm/v3/objects/deals", headers=CRM)[0] == 200
        assert call("GET", urls["erp"] + "/v1/invoices", headers=ERP)[0] == 200
        assert call("GET", urls["helpdesk"] + "/api/v2/users/me.json", headers=HELPDESK)[0] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        process.stdout.close()
