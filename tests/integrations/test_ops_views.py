"""The operations pages: systems, sync health, dead letters, record detail and their
actions. Access by role, the actions' effects, secrets never shown, and query counts
pinned with many rows present (no query per system, stream, run or record)."""

from __future__ import annotations

import datetime as dt
import itertools
from html import escape

import pytest
from django.urls import reverse
from django.utils import timezone

from customers.models import Customer, Deal, SourceSystem
from integrations import crypto, ops, selectors, services, sync, tasks
from integrations.connectors.base import ConnectorError, Page
from integrations.models import Connection, InboundRecord, OutboxMessage, StreamState, SyncRun

pytestmark = pytest.mark.django_db

COMPANY_MAPPING = {
    "external_id": "id",
    "updated_at": "updatedAt",
    "fields": {"properties.name": "name", "properties.email": "email"},
}
DEAL_MAPPING = {
    "external_id": "id",
    "updated_at": "updatedAt",
    "refs": {"customer": "company"},
    "fields": {"name": "name", "stage": "stage", "amount": "amount"},
}
SECRET = "crm-secret-token-9876"
HTMX = {"HTTP_HX_REQUEST": "true"}
_hashes = itertools.count()


def rest_config(base_url: str = "https://crm.example.test") -> dict:
    return {
        "base_url": base_url,
        "auth": {"type": "bearer"},
        "streams": {
            "companies": {"path": "/companies", "entity": "customer", "mapping": COMPANY_MAPPING},
            "deals": {"path": "/deals", "entity": "deal", "mapping": DEAL_MAPPING},
        },
    }


def company(i: int) -> dict:
    return {
        "id": f"c{i}",
        "updatedAt": f"2026-01-01T00:00:{i:02d}Z",
        "properties": {"name": f"Company {i}", "email": f"hello@company{i}.example.org"},
    }


def deal(i: int, company_id: int) -> dict:
    return {
        "id": f"d{i}",
        "updatedAt": "2026-01-02T00:00:00Z",
        "company": f"c{company_id}",
        "name": f"Deal {i}",
        "stage": "proposal",
        "amount": "1000",
    }


class FakeConnector:
    """Serves fixed records per stream; ``check()`` answers or raises ``check_error``."""

    def __init__(self, records: dict[str, list[dict]] | None = None, check_error=None):
        self.records, self.check_error = records or {}, check_error

    def pull(self, stream, cursor):
        yield Page(records=self.records.get(stream, []), cursor="1", has_more=False)

    def check(self):
        if self.check_error:
            raise self.check_error
        return "OK: 1 record from companies in 12 ms"


@pytest.fixture
def crm() -> Connection:
    system = SourceSystem.objects.create(name="crm", label="HubSpot CRM", kind="crm")
    return Connection.objects.create(
        system=system,
        config=rest_config(),
        credentials_encrypted=crypto.encrypt({"token": SECRET}),
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
    )


@pytest.fixture
def use_connector(monkeypatch):
    def install(connector):
        monkeypatch.setattr(sync, "connection_connector", lambda connection: connector)
        return connector

    return install


@pytest.fixture
def login(client, make_user):
    def as_role(role: str):
        client.force_login(make_user(role))
        return client

    return as_role


def failed_record(system: SourceSystem, n: int, **extra) -> InboundRecord:
    values = {
        "entity": "customer",
        "external_id": f"x{n}",
        "payload": {"id": f"x{n}", "email": "not an email"},
        "content_hash": f"hash-{next(_hashes)}",
        "status": InboundRecord.Status.FAILED,
        "error": f"email: 'not an email' is not an e-mail address (row {n})",
        "attempts": 1,
        "stream": "companies",
    }
    return InboundRecord.objects.create(system=system, **(values | extra))


def dead_message(system: SourceSystem, n: int) -> OutboxMessage:
    return OutboxMessage.objects.create(
        target=system,
        entity="deal",
        object_id=n,
        event="deal.closed_won",
        stream="orders",
        operation="create",
        status=OutboxMessage.Status.DEAD,
        attempts=8,
        last_error="422: currency is required",
    )


@pytest.fixture
def world() -> dict:
    """3 systems x 3 streams with cursors, 60 runs, 80 failed records, 6 dead messages."""
    now = timezone.now()
    systems = []
    for name, kind in [("pipedrive", "crm"), ("erp", "billing"), ("desk", "helpdesk")]:
        system = SourceSystem.objects.create(name=name, kind=kind)
        streams = {f"s{k}": {"path": f"/s{k}", "entity": "customer"} for k in range(3)}
        connection = Connection.objects.create(
            system=system,
            config={"base_url": f"https://{name}.example.test", "streams": streams},
            last_checked_at=now,
            last_check_result="OK: 1 record from s0 in 20 ms",
        )
        for k in range(3):
            StreamState.objects.create(
                connection=connection,
                stream=f"s{k}",
                cursor=f"2026-01-0{k + 1}T00:00:00Z",
                newest_source_change=now - dt.timedelta(minutes=10 * (k + 1)),
            )
        systems.append(system)
    statuses = ["succeeded", "partial", "failed", "running"]
    for i in range(60):
        system = systems[i % 3]
        SyncRun.objects.create(
            system=system,
            entity="customer",
            mode="pull",
            stream=f"s{i % 9 // 3}",
            status=statuses[i % 4],
            fetched=100,
            created=60,
            updated=30,
            failed=10,
            retries=i % 2,
            cursor_before="a",
            cursor_after="b",
            error="transient: 503 from the API" if statuses[i % 4] == "failed" else "",
            finished_at=None if statuses[i % 4] == "running" else now,
        )
    records = [failed_record(systems[n % 3], n) for n in range(80)]
    for n in range(6):
        dead_message(systems[n % 3], n)
    return {"systems": systems, "records": records}


# -- access --------------------------------------------------------------------------------

PAGES = [
    "integrations:systems",
    "integrations:health",
    "integrations:dead_letters",
]


@pytest.mark.parametrize("role", ["steward", "admin"])
@pytest.mark.parametrize("page", PAGES)
def test_pages_render_for_steward_and_admin(login, world, role, page):
    response = login(role).get(reverse(page))
    assert response.status_code == 200
    assert b"ops.css" in response.content


@pytest.mark.parametrize("role", ["steward", "admin"])
def test_record_page_renders_for_steward_and_admin(login, world, role):
    record = world["records"][0]
    response = login(role).get(reverse("integrations:record", args=[record.pk]))
    assert response.status_code == 200
    assert escape(record.error) in response.content.decode()


@pytest.mark.parametrize("role", ["sales", "service", "finance", "partner"])
def test_other_roles_get_403_everywhere(login, world, crm, role):
    client = login(role)
    record = world["records"][0]
    gets = [
        *(reverse(p) for p in PAGES),
        reverse("integrations:dead_letters") + "?show=outbox",
        reverse("integrations:record", args=[record.pk]),
        reverse("integrations:record", args=[999_999]),  # no hint which ids exist
        reverse("integrations:system_new"),
        reverse("integrations:system_edit", args=[crm.system_id]),
    ]
    for url in gets:
        assert client.get(url).status_code == 403, url
    posts = [
        reverse("integrations:system_check", args=[crm.system_id]),
        reverse("integrations:system_sync", args=[crm.system_id]),
        reverse("integrations:record_replay", args=[record.pk]),
        reverse("integrations:dead_letters_replay"),
        reverse("integrations:outbox_retry"),
    ]
    for url in posts:
        assert client.post(url, {"ids": [record.pk]}).status_code == 403, url
    assert InboundRecord.objects.get(pk=record.pk).attempts == 1


def test_anonymous_is_sent_to_login(client):
    response = client.get(reverse("integrations:health"))
    assert response.status_code == 302 and "/accounts/login/" in response.url


def test_admin_only_actions_are_403_for_the_steward(login, crm):
    client = login("steward")
    page = client.get(reverse("integrations:systems")).content.decode()
    assert "HubSpot CRM" in page and "Test connection" not in page and "Edit" not in page
    assert client.get(reverse("integrations:system_new")).status_code == 403
    assert client.get(reverse("integrations:system_edit", args=[crm.system_id])).status_code == 403
    for name in ("system_check", "system_sync", "system_edit"):
        url = reverse(f"integrations:{name}", args=[crm.system_id])
        assert client.post(url).status_code == 403
    assert Connection.objects.get(pk=crm.pk).last_checked_at is None


def test_unknown_ids_are_404(login):
    client = login("admin")
    for name in ("system_edit", "record"):
        assert client.get(reverse(f"integrations:{name}", args=[999_999])).status_code == 404
    for name in ("system_check", "system_sync", "record_replay"):
        assert client.post(reverse(f"integrations:{name}", args=[999_999])).status_code == 404


def test_a_system_without_connection_is_connected_through_the_create_page(login):
    system = SourceSystem.objects.create(name="legacy", kind="other")
    client = login("admin")
    page = client.get(reverse("integrations:systems")).content.decode()
    assert "No connection" in page and "/integrations/systems/new/?name=legacy" in page
    response = client.get(reverse("integrations:system_edit", args=[system.pk]))
    assert response.status_code == 302 and response.url.endswith("/systems/new/?name=legacy")
    for name in ("system_check", "system_sync"):
        assert client.post(reverse(f"integrations:{name}", args=[system.pk])).status_code == 404


# -- systems ----------------------------------------------------------------------------


def test_systems_page_shows_connection_streams_and_cursors(login, crm):
    StreamState.objects.create(connection=crm, stream="companies", cursor="2026-01-05T10:00:00Z")
    page = login("admin").get(reverse("integrations:systems")).content.decode()
    for text in (
        "HubSpot CRM",
        "Declarative REST",
        "https://crm.example.test",
        "1000 req/s",
        "burst 1000",
        "Soft delete",
        "Every 5 min",
        "Never tested",
        "companies",
        "deals",
        "2026-01-05T10:00:00Z",
        "Never pulled",
        "Full resync",
    ):
        assert text in page, text
    assert SECRET not in page and SECRET[-4:] not in page


def test_test_connection_swaps_in_the_result(login, crm, use_connector):
    use_connector(FakeConnector())
    url = reverse("integrations:system_check", args=[crm.system_id])
    response = login("admin").post(url, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert html.strip().startswith(f'<div class="check" id="check-{crm.system_id}"')
    assert "Passed" in html and "OK: 1 record from companies in 12 ms" in html
    assert "<html" not in html
    crm.refresh_from_db()
    assert crm.last_check_result.startswith("OK") and crm.last_checked_at is not None


def test_a_failing_check_is_shown_and_stored(login, crm, use_connector):
    use_connector(
        FakeConnector(check_error=ConnectorError("401 Unauthorized (check the credentials)"))
    )
    client = login("admin")
    url = reverse("integrations:system_check", args=[crm.system_id])
    html = client.post(url, **HTMX).content.decode()
    assert "Failed" in html and "401 Unauthorized" in html
    # Without htmx: back to the page, the result as a message.
    response = client.post(url, follow=True)
    assert response.redirect_chain[-1][0].endswith(f"/integrations/systems/#system-{crm.system_id}")
    assert "401 Unauthorized (check the credentials)" in response.content.decode()


@pytest.fixture
def delays(monkeypatch):
    calls = []
    monkeypatch.setattr(tasks.sync_stream, "delay", lambda *a, **kw: calls.append((a, kw)))
    return calls


def test_sync_now_enqueues_every_stream_after_commit(
    login, crm, delays, django_capture_on_commit_callbacks
):
    client = login("admin")
    url = reverse("integrations:system_sync", args=[crm.system_id])
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = client.post(url, follow=True)
    assert len(callbacks) == 2
    # (PostgreSQL's jsonb keeps the streams in its own key order)
    assert sorted(delays) == [((crm.pk, "companies"), {}), ((crm.pk, "deals"), {})]
    assert "Sync of HubSpot CRM queued: " in response.content.decode()


def test_full_resync_enqueues_one_stream_from_the_start(
    login, crm, delays, django_capture_on_commit_callbacks
):
    url = reverse("integrations:system_sync", args=[crm.system_id])
    with django_capture_on_commit_callbacks(execute=True):
        response = login("admin").post(url, {"stream": "deals", "full": "1"}, follow=True)
    assert delays == [((crm.pk, "deals"), {"full": True})]
    assert "Full resync of HubSpot CRM queued: deals." in response.content.decode()


def test_sync_refuses_paused_connections_and_unknown_streams(
    login, crm, delays, django_capture_on_commit_callbacks
):
    client = login("admin")
    url = reverse("integrations:system_sync", args=[crm.system_id])
    with django_capture_on_commit_callbacks(execute=True):
        html = client.post(url, {"stream": "nope"}, follow=True).content.decode()
        assert "has no stream nope" in html
        Connection.objects.filter(pk=crm.pk).update(enabled=False)
        html = client.post(url, follow=True).content.decode()
        assert "is paused: enable it before syncing" in html
    assert delays == []


# -- edit and create --------------------------------------------------------------------


def edit_data(**overrides) -> dict:
    data = {
        "enabled": "on",
        "base_url": "https://crm.example.test",
        "rate_limit_per_second": "5",
        "rate_limit_burst": "20",
        "delete_policy": "tombstone",
        "schedule_minutes": "15",
        "credential_token": "",
    }
    return data | overrides


def test_edit_page_masks_stored_secrets(login, crm):
    html = login("admin").get(reverse("integrations:system_edit", args=[crm.system_id]))
    html = html.content.decode()
    assert "Stored: …9876. Leave blank to keep it." in html
    assert SECRET not in html and crypto.decrypt(crm.credentials_encrypted) == {"token": SECRET}
    assert 'type="password"' in html and 'name="credential_token"' in html


def test_edit_saves_settings_and_keeps_blank_credentials(login, crm):
    url = reverse("integrations:system_edit", args=[crm.system_id])
    response = login("admin").post(url, edit_data(base_url="https://eu.crm.example.test"))
    assert response.status_code == 302
    crm.refresh_from_db()
    assert (crm.enabled, crm.rate_limit_per_second, crm.rate_limit_burst) == (True, 5.0, 20)
    assert (crm.delete_policy, crm.schedule_minutes) == ("tombstone", 15)
    assert crm.config["base_url"] == "https://eu.crm.example.test"
    assert crm.config["streams"]["deals"]["mapping"] == DEAL_MAPPING
    assert crypto.decrypt(crm.credentials_encrypted) == {"token": SECRET}


def test_edit_replaces_a_credential_encrypted_and_never_shows_it(login, crm):
    client = login("admin")
    url = reverse("integrations:system_edit", args=[crm.system_id])
    client.post(url, edit_data(credential_token="new-token-abcd1234"))
    crm.refresh_from_db()
    assert "new-token" not in crm.credentials_encrypted
    assert crypto.decrypt(crm.credentials_encrypted) == {"token": "new-token-abcd1234"}
    html = client.get(url).content.decode()
    assert "new-token-abcd1234" not in html and "…1234" in html


def test_edit_shows_validation_errors_and_saves_nothing(login, crm):
    client = login("admin")
    url = reverse("integrations:system_edit", args=[crm.system_id])
    response = client.post(
        url, edit_data(rate_limit_burst="0", base_url="not a url", credential_token="typed-secret")
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 1." in html
    assert "Enter a valid URL." in html
    assert "typed-secret" not in html and SECRET not in html
    crm.refresh_from_db()
    assert crm.rate_limit_burst == 1000


def test_edit_shows_errors_of_the_connection_service(login, crm):
    # Bearer auth with no token stored: connection_upsert refuses the configuration.
    Connection.objects.filter(pk=crm.pk).update(credentials_encrypted="")
    url = reverse("integrations:system_edit", args=[crm.system_id])
    response = login("admin").post(url, edit_data(schedule_minutes="1"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Not saved." in html and "missing token" in html
    assert Connection.objects.get(pk=crm.pk).schedule_minutes == 5


def test_create_a_file_import_only_system(login):
    client = login("admin")
    response = client.post(
        reverse("integrations:system_new"), {"name": "legacy-erp", "kind": "billing", "preset": ""}
    )
    assert response.status_code == 302
    connection = Connection.objects.get(system__name="legacy-erp")
    assert (connection.connector, connection.system.kind, connection.config) == (
        "file",
        "billing",
        {},
    )
    html = client.post(
        reverse("integrations:system_new"), {"name": "legacy-erp", "preset": ""}
    ).content.decode()
    assert "legacy-erp already has a connection: edit it instead" in html


def test_create_with_a_preset(login):
    presets = selectors.preset_catalog()
    if "hubspot" not in presets:
        pytest.skip("integrations.connectors.presets is not installed")
    client = login("admin")
    partial = client.get(reverse("integrations:system_new") + "?preset=hubspot", **HTMX)
    assert partial.content.decode().strip().startswith('<div id="preset-fields">')
    assert b'name="credential_token"' in partial.content
    data = {"name": "hubspot", "preset": "hubspot", "base_url": "http://127.0.0.1:9"}
    html = client.post(reverse("integrations:system_new"), data).content.decode()
    assert "missing token" in html  # the preset's bearer auth needs one
    response = client.post(
        reverse("integrations:system_new"), data | {"credential_token": "pat-na1-0000-5678"}
    )
    assert response.status_code == 302
    connection = Connection.objects.get(system__name="hubspot")
    assert (connection.preset, connection.connector, connection.system.kind) == (
        "hubspot",
        "rest",
        "crm",
    )
    assert connection.config["base_url"] == "http://127.0.0.1:9"
    assert crypto.decrypt(connection.credentials_encrypted) == {"token": "pat-na1-0000-5678"}
    assert "pat-na1" not in client.get(reverse("integrations:systems")).content.decode()


def test_preset_catalog_is_empty_without_the_presets_package(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_presets(name, globals=None, locals=None, fromlist=(), level=0):
        if name.endswith("connectors.presets") or (level and name == "connectors.presets"):
            raise ImportError(name)
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", no_presets)
    assert selectors.preset_catalog() == {}


# -- sync health ------------------------------------------------------------------------


def test_health_shows_last_run_lag_rates_errors_retries_and_dead_letters(login, crm):
    now = timezone.now()
    system = crm.system
    old = SyncRun.objects.create(
        system=system, entity="customer", mode="pull", stream="companies", status="succeeded"
    )
    SyncRun.objects.filter(pk=old.pk).update(started_at=now - dt.timedelta(hours=30))
    for fetched, failed, retries, status in [(600, 6, 2, "partial"), (300, 0, 1, "succeeded")]:
        SyncRun.objects.create(
            system=system,
            entity="customer",
            mode="pull",
            stream="companies",
            status=status,
            fetched=fetched,
            created=fetched - failed,
            failed=failed,
            retries=retries,
            cursor_before="10",
            cursor_after="20",
            finished_at=now,
        )
    SyncRun.objects.create(
        system=system,
        entity="deal",
        mode="pull",
        stream="deals",
        status="failed",
        error="permanent: 401 Unauthorized (check the credentials)",
        finished_at=now,
    )
    InboundRecord.objects.create(
        system=system,
        entity="customer",
        payload={},
        content_hash="applied-1",
        status="applied",
        source_updated_at=now - dt.timedelta(hours=3, minutes=5),
    )
    for n in range(3):
        failed_record(system, n)
    dead_message(system, 1)

    health = selectors.sync_health(now=now)
    (crm_health,) = health.systems
    companies, deals = crm_health.streams
    assert (companies.stream, deals.stream) == ("companies", "deals")
    assert companies.last_run.status == "succeeded" and companies.last_run.fetched == 300
    assert companies.lag == dt.timedelta(hours=3, minutes=5)
    assert companies.per_minute == 15.0  # 900 records in the last hour
    assert companies.error_rate == pytest.approx(6 / 900)
    assert (companies.retries_24h, companies.runs_24h, companies.dead) == (3, 2, 3)
    assert deals.last_run.status == "failed" and deals.lag is None
    assert (crm_health.dead_outbox, health.failing_streams, health.dead_records) == (1, 1, 3)

    html = login("steward").get(reverse("integrations:health")).content.decode()
    for text in (
        "3 h 5 min",
        "0.7%",
        "permanent: 401 Unauthorized",
        "1 dead outbox message",
        "Partial",
        "10 → 20",
        "n/a",  # the test settings use the in-memory broker
    ):
        assert text in html, text


def test_queue_depth_counts_the_filesystem_brokers_messages(settings, tmp_path):
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path)}
    assert selectors.broker_queue_depth() == 0
    for name in (
        "1712_0b1c.celery.msg",
        "1713_9f2e.celery.msg",
        "1714_77aa.celery.msg",
        "1715_1234.reconcile.msg",
        "README",
    ):
        (tmp_path / name).write_text("{}")
    assert selectors.broker_queue_depth() == 3
    assert selectors.broker_queue_depth("reconcile") == 1
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"data_folder_in": str(tmp_path / "missing")}
    assert selectors.broker_queue_depth() is None


def test_queue_depth_is_unknown_for_other_brokers(settings):
    settings.CELERY_BROKER_URL = "memory://"
    assert selectors.broker_queue_depth() is None


# -- dead letters -----------------------------------------------------------------------


def test_dead_letters_lists_filters_and_paginates(login, world):
    client = login("steward")
    url = reverse("integrations:dead_letters")
    html = client.get(url).content.decode()
    assert "80 failed records" in html and "Page 1 of 2" in html
    assert 'Inbound records <span class="count">80</span>' in html
    assert 'Outbox messages <span class="count">6</span>' in html
    assert client.get(url + "?page=2").content.decode().count('name="ids"') == 30
    erp = world["systems"][1]
    html = client.get(url, {"system": erp.pk, "q": "ROW 1"}).content.decode()
    # rows 1, 10-19 and 100+ contain "row 1"; of them, erp holds n % 3 == 1: 1, 10, 13, 16, 19
    assert "5 failed records matching the filter" in html
    html = client.get(url, {"entity": "deal"}).content.decode()
    assert "Nothing matches this filter" in html
    html = client.get(url, {"show": "outbox", "system": erp.pk}).content.decode()
    assert "2 dead messages matching the filter" in html and "422: currency is required" in html


def test_dead_letters_filter_answers_a_partial_to_htmx(login, world):
    url = reverse("integrations:dead_letters")
    response = login("steward").get(url, {"q": "row 7"}, **HTMX)
    html = response.content.decode()
    assert "<html" not in html and "failed records matching the filter" in html
    assert 'id="tabs"' in html and 'hx-swap-oob="true"' in html
    assert response["Vary"] == "HX-Request, Cookie" or "HX-Request" in response["Vary"]


@pytest.fixture
def orphan_deals(crm, use_connector):
    """Deals pulled before their companies: they fail, then the companies arrive."""
    use_connector(FakeConnector({"deals": [deal(1, 1), deal(2, 2), deal(3, 3)]}))
    run = sync.stream_sync(connection_id=crm.pk, stream="deals")
    assert (run.status, run.failed) == ("partial", 3)
    use_connector(FakeConnector({"companies": [company(1), company(2), company(3)]}))
    sync.stream_sync(connection_id=crm.pk, stream="companies")
    return list(InboundRecord.objects.filter(entity="deal").order_by("pk"))


def test_replay_one_record_from_its_page(login, orphan_deals):
    record = orphan_deals[0]
    client = login("steward")
    page = client.get(reverse("integrations:record", args=[record.pk])).content.decode()
    assert "Replay this record" in page and "is not known" in page
    assert "&quot;company&quot;: &quot;c1&quot;" in page  # pretty-printed payload
    response = client.post(reverse("integrations:record_replay", args=[record.pk]), follow=True)
    html = response.content.decode()
    assert "Replayed 1 record: 1 applied." in html
    record.refresh_from_db()
    assert (record.status, record.attempts, record.error) == ("applied", 2, "")
    customer = Customer.objects.get(pk=record.customer_id)
    assert f'href="{customer.get_absolute_url()}"' in html and "Replay this record" not in html
    assert Deal.objects.filter(customer=customer).count() == 1


def test_replay_selected_records(login, orphan_deals):
    first, second, _ = orphan_deals
    response = login("steward").post(
        reverse("integrations:dead_letters_replay"),
        {"ids": [first.pk, second.pk], "next": "/integrations/dead-letters/?entity=deal"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == "/integrations/dead-letters/?entity=deal"
    assert "Replayed 2 records: 2 applied." in response.content.decode()
    statuses = list(InboundRecord.objects.filter(entity="deal").values_list("status", flat=True))
    assert statuses == ["applied", "applied", "failed"]


def test_replay_one_row_of_the_list(login, orphan_deals):
    client = login("steward")
    client.post(
        reverse("integrations:dead_letters_replay"),
        {"one": orphan_deals[2].pk, "ids": [orphan_deals[0].pk]},
    )
    statuses = list(InboundRecord.objects.filter(entity="deal").values_list("status", flat=True))
    assert statuses == ["failed", "failed", "applied"]


def test_replay_all_matching_the_filter(login, world, monkeypatch):
    replayed = []

    def fake_replay(*, record_ids):
        replayed.extend(record_ids)
        return services.RunSummary(run_id=None, read=len(record_ids))

    monkeypatch.setattr(services, "records_replay", fake_replay)
    erp = world["systems"][1]
    login("steward").post(
        reverse("integrations:dead_letters_replay"),
        {"all": "1", "system": erp.pk, "entity": "customer", "q": "row 2"},
    )
    expected = [r.pk for r in world["records"] if r.system_id == erp.pk and "row 2" in r.error]
    assert replayed == expected and expected


def test_replay_of_more_than_500_runs_500_now_and_queues_the_rest(
    monkeypatch, django_capture_on_commit_callbacks
):
    now, queued = [], []
    monkeypatch.setattr(
        services,
        "records_replay",
        lambda *, record_ids: now.append(record_ids) or services.RunSummary(run_id=None),
    )
    monkeypatch.setattr(tasks.replay_records, "delay", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        result = ops.records_replay_request(record_ids=range(1, 1_302))
    assert now == [list(range(1, 501))]
    assert queued == [list(range(501, 1001)), list(range(1001, 1302))]
    assert (result.queued, result.batches) == (801, 2)


def test_replay_without_a_selection_says_so(login, world):
    response = login("steward").post(reverse("integrations:dead_letters_replay"), follow=True)
    assert "Select the records to replay first." in response.content.decode()


def test_retry_dead_outbox_messages(login, crm):
    before = timezone.now()
    messages = [dead_message(crm.system, n) for n in range(3)]
    sent = OutboxMessage.objects.create(
        target=crm.system,
        entity="deal",
        object_id=9,
        event="e",
        stream="orders",
        operation="create",
        status=OutboxMessage.Status.SENT,
    )
    response = login("steward").post(
        reverse("integrations:outbox_retry"),
        {"ids": [messages[0].pk, messages[1].pk, sent.pk]},
        follow=True,
    )
    assert "2 messages queued to send again." in response.content.decode()
    retried = OutboxMessage.objects.get(pk=messages[0].pk)
    assert (retried.status, retried.attempts) == ("pending", 8)
    assert retried.next_attempt_at >= before
    assert OutboxMessage.objects.get(pk=messages[2].pk).status == "dead"
    assert OutboxMessage.objects.get(pk=sent.pk).status == "sent"


# -- query counts ---------------------------------------------------------------------------
# Every page below runs these first, whatever it shows:
#   1 session  2 user  3-4 the user's and the groups' permissions  …  and last the
#   header's role badge (the user's groups, from base.html).
AUTH = 4
ROLE_BADGE = 1


def test_systems_page_queries(login, world, django_assert_max_num_queries):
    client = login("admin")
    # systems with their connections (one join), stream states (one prefetch)
    with django_assert_max_num_queries(AUTH + 2 + ROLE_BADGE):
        response = client.get(reverse("integrations:systems"))
    assert response.content.decode().count("Full resync") == 9


def test_health_page_queries(login, world, django_assert_max_num_queries):
    client = login("steward")
    # systems with connections, last run per stream (subquery), 24-hour aggregates,
    # newest applied source change, stream states' newest change, dead records by stream,
    # dead outbox by system, the 50 recent runs with their systems
    with django_assert_max_num_queries(AUTH + 8 + ROLE_BADGE):
        response = client.get(reverse("integrations:health"))
    html = response.content.decode()
    assert html.count('<span class="strong">#') == 50  # recent runs
    # 3 systems x 3 streams, plus each system's dead records of a stream no longer configured
    assert html.count('class="group-row"') == 3 and html.count('class="last-run"') == 12


def test_dead_letters_page_queries(login, world, django_assert_max_num_queries):
    client = login("steward")
    url = reverse("integrations:dead_letters")
    # system choices of the filter, count of the shown list, count of the other tab,
    # one page of rows with their systems
    for params in ({}, {"show": "outbox"}, {"system": world["systems"][0].pk, "q": "row"}):
        with django_assert_max_num_queries(AUTH + 4 + ROLE_BADGE):
            response = client.get(url, params)
        assert response.status_code == 200
    with django_assert_max_num_queries(AUTH + 4):  # the htmx partial has no header
        client.get(url, **HTMX)


def test_record_page_queries(login, world, django_assert_max_num_queries):
    client = login("steward")
    record = world["records"][5]
    InboundRecord.objects.filter(pk=record.pk).update(
        customer_id=Customer.objects.create(name="Acme").pk
    )
    # the record with its system and run (one join), the customer it resolved to
    with django_assert_max_num_queries(AUTH + 2 + ROLE_BADGE):
        client.get(reverse("integrations:record", args=[record.pk]))


def test_edit_page_queries(login, crm, django_assert_max_num_queries):
    client = login("admin")
    # the system with its connection (one join)
    with django_assert_max_num_queries(AUTH + 1 + ROLE_BADGE):
        client.get(reverse("integrations:system_edit", args=[crm.system_id]))


def test_partials_queries(login, crm, use_connector, django_assert_max_num_queries):
    use_connector(FakeConnector())
    client = login("admin")
    # the connection with its system, the stored check result, the connection re-read
    with django_assert_max_num_queries(AUTH + 3):
        client.post(reverse("integrations:system_check", args=[crm.system_id]), **HTMX)
    # presets come from code: nothing but the session and permissions
    with django_assert_max_num_queries(AUTH):
        client.get(reverse("integrations:system_new") + "?preset=", **HTMX)
