"""The sync engine with an in-process connector: cursors, leases, rate limits, retries,
webhooks and the outbox. Connector behaviour over real HTTP is tested against the
simulators elsewhere; here the connector is a stand-in so each failure path is exact."""

import datetime as dt
import json
import random

import pytest
from celery.exceptions import Retry
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from customers.models import Customer, Deal, ExternalRef, Invoice, SourceSystem
from integrations import sync, tasks
from integrations.connectors.base import ConnectorError, Page, PushResult
from integrations.models import Connection, InboundRecord, OutboxMessage, StreamState, SyncRun
from integrations.outbox import outbox_relay

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


def company(i: int, name: str | None = None, day: int = 1) -> dict:
    return {
        "id": f"c{i}",
        "updatedAt": f"2026-01-{day:02d}T00:00:{i % 60:02d}Z",
        "properties": {"name": name or f"Company {i}", "email": f"hello@company{i}.example.org"},
    }


class FakeConnector:
    """Yields the given pages; raises the given error before page ``fail_at``."""

    def __init__(self, pages, fail_at=None, error=None):
        self.pages, self.fail_at, self.error = pages, fail_at, error
        self.cursors_asked = []
        self.pushed = []
        self.push_error = None

    def pull(self, stream, cursor):
        self.cursors_asked.append(cursor)
        start = int(cursor) if cursor else 0
        for n in range(start, len(self.pages)):
            if self.fail_at is not None and n == self.fail_at:
                error, self.fail_at = self.error, None
                raise error
            yield Page(records=self.pages[n], cursor=str(n + 1), has_more=n + 1 < len(self.pages))

    def push(self, change):
        if self.push_error:
            raise self.push_error
        self.pushed.append(change)
        return PushResult(external_id=f"ext-{len(self.pushed)}")

    def verify_webhook(self, request):
        return request.headers.get("x-test-signature") == "good"

    def check(self):
        return "OK"


@pytest.fixture
def crm():
    system = SourceSystem.objects.create(name="crm", kind="crm")
    return Connection.objects.create(
        system=system,
        config={
            "streams": {
                "companies": {"entity": "customer", "mapping": COMPANY_MAPPING},
                "deals": {"entity": "deal", "mapping": DEAL_MAPPING},
            },
            "webhook": {"events": {"company.updated": {"stream": "companies"}}},
        },
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
    )


@pytest.fixture
def use_connector(monkeypatch):
    def install(connector):
        monkeypatch.setattr(sync, "connection_connector", lambda connection: connector)
        return connector

    return install


def test_pull_lands_every_page_and_advances_the_cursor(crm, use_connector):
    pages = [[company(i) for i in range(p * 5, p * 5 + 5)] for p in range(3)]
    use_connector(FakeConnector(pages))
    run = sync.stream_sync(connection_id=crm.pk, stream="companies")
    assert (run.status, run.fetched, run.created, run.cursor_before, run.cursor_after) == (
        "succeeded",
        15,
        15,
        "",
        "3",
    )
    assert StreamState.objects.get(stream="companies").cursor == "3"
    assert InboundRecord.objects.filter(stream="companies").count() == 15
    # The next incremental pull starts at the stored cursor.
    connector = use_connector(FakeConnector([*pages, [company(99)]]))
    run = sync.stream_sync(connection_id=crm.pk, stream="companies")
    assert connector.cursors_asked == ["3"]
    assert (run.fetched, run.created) == (1, 1)
    # --full starts from the beginning, and re-delivered records change nothing.
    run = sync.stream_sync(connection_id=crm.pk, stream="companies", full=True)
    assert (run.mode, run.fetched, run.unchanged, run.created) == ("full", 16, 16, 0)


def test_transient_error_keeps_landed_pages_and_resumes_to_the_clean_state(crm, use_connector):
    pages = [[company(i) for i in range(p * 4, p * 4 + 4)] for p in range(4)]
    use_connector(FakeConnector(pages, fail_at=2, error=ConnectorError("503", status=503)))
    with pytest.raises(ConnectorError):
        sync.stream_sync(connection_id=crm.pk, stream="companies")
    failed = SyncRun.objects.get()
    assert failed.status == "failed" and failed.error.startswith("transient: 503")
    assert (failed.fetched, failed.created) == (8, 8)
    # The cursor covers exactly what was landed; the lease is released.
    state = StreamState.objects.get(stream="companies")
    assert (state.cursor, state.lease_owner) == ("2", "")
    sync.stream_sync(connection_id=crm.pk, stream="companies")
    assert Customer.objects.count() == 16
    assert InboundRecord.objects.count() == 16
    assert set(InboundRecord.objects.values_list("status", flat=True)) == {"applied"}


def test_duplicate_and_out_of_order_deliveries_change_nothing_wrongly(crm, use_connector):
    newer = company(1, name="Acme v2", day=5)
    older = company(1, name="Acme v1", day=2)
    pages = [[company(1, name="Acme v0", day=1)], [newer, company(2)], [newer, older]]
    use_connector(FakeConnector(pages))
    run = sync.stream_sync(connection_id=crm.pk, stream="companies")
    assert (run.created, run.updated, run.unchanged, run.stale) == (2, 1, 1, 1)
    assert run.fetched == run.created + run.updated + run.unchanged + run.stale + run.failed
    assert Customer.objects.get(external_refs__external_id="c1").name == "Acme v2"


def test_a_poisoned_record_fails_alone(crm, use_connector):
    bad = company(3)
    bad["properties"]["email"] = "not an email"
    use_connector(FakeConnector([[company(1), bad, company(2)]]))
    run = sync.stream_sync(connection_id=crm.pk, stream="companies")
    assert (run.status, run.created, run.failed) == ("partial", 2, 1)
    record = InboundRecord.objects.get(external_id="c3")
    assert record.status == "failed" and "e-mail" in record.error
    assert record.payload["properties"]["email"] == "not an email"


def test_stream_lease_prevents_concurrent_runs_and_expires(crm):
    state = sync.stream_lease_acquire(connection=crm, stream="companies", owner="a")
    with pytest.raises(sync.StreamBusy) as busy:
        sync.stream_lease_acquire(connection=crm, stream="companies", owner="b")
    assert busy.value.retry_in > 0
    # A dead worker's lease expires and the stream can be taken over.
    StreamState.objects.filter(pk=state.pk).update(
        lease_until=timezone.now() - dt.timedelta(seconds=1)
    )
    assert sync.stream_lease_acquire(connection=crm, stream="companies", owner="b")
    with pytest.raises(sync.LeaseLost):
        sync._cursor_save(state=state, owner="a", cursor="9")
    assert StreamState.objects.get(pk=state.pk).cursor == ""


def test_rate_limit_is_a_shared_token_bucket(crm):
    """Two requests per second, burst of one: after the first token each call waits about
    half a second (the bound leaves room for a slow machine between calls)."""
    waits = [sync.rate_limit_acquire(system=crm.system, rate=2, burst=1) for _ in range(3)]
    assert waits[0] == 0.0
    assert all(0.25 < w <= 0.5 for w in waits[1:]), waits
    # The bucket is a database row: another worker would see the tokens this one took.
    from integrations.models import RateBucket

    assert RateBucket.objects.get(system=crm.system).tokens < 1


def test_backoff_grows_has_jitter_and_honours_retry_after():
    rng = random.Random(1)
    delays = [sync.backoff_seconds(n, rng=rng) for n in range(10)]
    assert all(0 <= d <= min(300, 2 * 2**n) for n, d in enumerate(delays))
    assert len(set(delays)) == 10
    assert sync.backoff_seconds(0, retry_after=30, rng=rng) >= 30
    assert sync.backoff_seconds(20, rng=rng) <= 300


def test_task_retries_transient_errors_then_succeeds(crm, use_connector, monkeypatch):
    monkeypatch.setattr(sync, "backoff_seconds", lambda attempt, retry_after=None: 0)
    use_connector(
        FakeConnector(
            [[company(1)], [company(2)]],
            fail_at=1,
            error=ConnectorError("429", retry_after=2, status=429),
        )
    )
    # Celery does not re-run eager retries: deliver the retry as the broker would.
    with pytest.raises(Retry):
        tasks.sync_stream.apply(args=[crm.pk, "companies"])
    tasks.sync_stream.apply(args=[crm.pk, "companies"], retries=1)
    runs = list(SyncRun.objects.order_by("pk").values_list("status", "retries", "fetched"))
    assert runs == [("failed", 0, 1), ("succeeded", 1, 1)]
    assert Customer.objects.count() == 2


def test_task_stops_on_permanent_errors(crm, use_connector):
    use_connector(
        FakeConnector(
            [[company(1)]], fail_at=0, error=ConnectorError("401 bad token", permanent=True)
        )
    )
    assert tasks.sync_stream.apply(args=[crm.pk, "companies"]).get() == "failed"
    run = SyncRun.objects.get()
    assert run.error == "permanent: 401 bad token"


def test_beat_enqueues_due_streams(crm, use_connector):
    use_connector(FakeConnector([[company(1)]]))
    assert sorted(s for _, s in sync.streams_due()) == ["companies", "deals"]
    sync.stream_sync(connection_id=crm.pk, stream="companies")
    assert [s for _, s in sync.streams_due()] == ["deals"]


def _post_hook(client, body, signature="good"):
    return client.post(
        "/hooks/crm/",
        data=json.dumps(body),
        content_type="application/json",
        headers={"X-Test-Signature": signature},
    )


def test_webhook_bad_signature_is_401_and_lands_nothing(client, crm, use_connector):
    use_connector(FakeConnector([]))
    event = {"id": "evt1", "type": "company.updated", "data": {"object": company(1)}}
    response = _post_hook(client, event, signature="forged")
    assert response.status_code == 401
    assert not InboundRecord.objects.exists()


def test_webhook_lands_first_and_dedupes_redeliveries(
    client, crm, use_connector, django_capture_on_commit_callbacks
):
    use_connector(FakeConnector([]))
    event = {"id": "evt1", "type": "company.updated", "data": {"object": company(1)}}
    with django_capture_on_commit_callbacks(execute=True):
        response = _post_hook(client, event)
    assert response.status_code == 202
    record = InboundRecord.objects.get()
    assert (record.event_id, record.stream, record.status) == ("evt1", "companies", "applied")
    assert Customer.objects.get().name == "Company 1"
    with django_capture_on_commit_callbacks(execute=True):
        again = _post_hook(client, event)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert InboundRecord.objects.count() == 1
    unrouted = _post_hook(client, {"id": "evt2", "type": "ping", "data": {}})
    assert unrouted.status_code == 200 and unrouted.json()["routed"] is False
    bad = client.post(
        "/hooks/crm/",
        data=b"{nope",
        content_type="application/json",
        headers={"X-Test-Signature": "good"},
    )
    assert bad.status_code == 400 and "not JSON" in bad.json()["error"]


@pytest.fixture
def erp():
    system = SourceSystem.objects.create(name="erp", kind="billing")
    return Connection.objects.create(
        system=system,
        rate_limit_per_second=1000,
        rate_limit_burst=1000,
        config={
            "streams": {},
            "consumes": [
                {
                    "entity": "deal",
                    "when": {"stage": "closed_won"},
                    "fields": ["stage"],
                    "event": "deal.closed_won",
                    "stream": "orders",
                    "operation": "create",
                    "data": {
                        "customer": "$target_customer_id",
                        "description": "$values.name",
                        "amount": "$values.amount",
                    },
                }
            ],
        },
    )


def test_closed_won_deal_writes_an_outbox_row_and_the_relay_pushes_it(crm, erp, use_connector):
    use_connector(FakeConnector([[company(1)]]))
    sync.stream_sync(connection_id=crm.pk, stream="companies")
    customer = Customer.objects.get()
    ExternalRef.objects.create(
        system=erp.system,
        entity="customer",
        external_id="cus_1",
        object_id=customer.pk,
        customer=customer,
    )
    deal = {
        "id": "d1",
        "company": "c1",
        "name": "Big deal",
        "stage": "proposal",
        "amount": "1000",
        "updatedAt": "2026-01-02T00:00:00Z",
    }
    use_connector(FakeConnector([[deal]]))
    sync.stream_sync(connection_id=crm.pk, stream="deals")
    assert not OutboxMessage.objects.exists()  # not closed-won yet
    won = deal | {"stage": "closed_won", "updatedAt": "2026-01-03T00:00:00Z"}
    connector = use_connector(FakeConnector([[won]]))
    sync.stream_sync(connection_id=crm.pk, stream="deals", full=True)
    message = OutboxMessage.objects.get()
    assert (message.target, message.origin, message.event) == (
        erp.system,
        crm.system,
        "deal.closed_won",
    )
    assert message.object_id == Deal.objects.get().pk
    assert outbox_relay() == {"sent": 1, "retry": 0, "dead": 0, "skipped": 0}
    change = connector.pushed[0]
    assert (change.stream, change.operation) == ("orders", "create")
    assert change.data == {"customer": "cus_1", "description": "Big deal", "amount": "1000.00"}
    assert change.idempotency_key == f"concord-outbox-{message.pk}"
    message.refresh_from_db()
    assert message.status == "sent"


def test_no_echo_to_the_system_a_change_came_from(crm, use_connector):
    crm.config["consumes"] = [
        {"entity": "customer", "stream": "companies", "operation": "update", "data": {}}
    ]
    crm.save()
    use_connector(FakeConnector([[company(1)]]))
    sync.stream_sync(connection_id=crm.pk, stream="companies")
    assert not OutboxMessage.objects.exists()


def test_relay_retries_transient_and_dead_letters_permanent_errors(crm, erp, use_connector):
    customer = Customer.objects.create(name="Acme")
    message = OutboxMessage.objects.create(
        target=erp.system,
        origin=crm.system,
        entity="deal",
        object_id=1,
        customer_id=customer.pk,
        event="deal.closed_won",
        stream="orders",
        operation="create",
        payload={"values": {"name": "x"}},
        next_attempt_at=timezone.now(),
    )
    connector = use_connector(FakeConnector([]))
    connector.push_error = ConnectorError("503", status=503)
    assert outbox_relay()["retry"] == 1
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("pending", 1)
    assert message.next_attempt_at > timezone.now()
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    connector.push_error = ConnectorError("422 invalid", permanent=True)
    assert outbox_relay()["dead"] == 1
    message.refresh_from_db()
    assert (message.status, message.last_error) == ("dead", "422 invalid")


def test_pull_queries_per_page_are_bounded(crm, use_connector):
    def queries(n_pages: int) -> int:
        pages = [[company(p * 50 + i) for i in range(50)] for p in range(n_pages)]
        use_connector(FakeConnector(pages))
        with CaptureQueriesContext(db_connection) as ctx:
            sync.stream_sync(connection_id=crm.pk, stream="companies", full=True)
        return len(ctx.captured_queries)

    one, three = queries(1), queries(3)
    per_page = (three - one) / 2
    assert per_page <= 40, per_page


INVOICE_MAPPING = {
    "external_id": "id",
    "updated_at": "updatedAt",
    "deleted": "deleted",
    "refs": {"customer": "company"},
    "fields": {"number": "number", "amount": "amount"},
}


@pytest.mark.parametrize(
    ("policy", "deleted_at_set", "tombstoned"),
    [("soft_delete", True, True), ("tombstone", False, True), ("ignore", False, False)],
)
def test_upstream_deletes_follow_the_delete_policy(
    crm, use_connector, policy, deleted_at_set, tombstoned
):
    crm.config["streams"]["invoices"] = {"entity": "invoice", "mapping": INVOICE_MAPPING}
    crm.delete_policy = policy
    crm.save()
    use_connector(FakeConnector([[company(1)]]))
    sync.stream_sync(connection_id=crm.pk, stream="companies")
    invoice = {
        "id": "i1",
        "company": "c1",
        "number": "INV-1",
        "amount": "10",
        "updatedAt": "2026-01-02T00:00:00Z",
    }
    use_connector(
        FakeConnector(
            [[invoice], [invoice | {"deleted": True, "updatedAt": "2026-01-03T00:00:00Z"}]]
        )
    )
    run = sync.stream_sync(connection_id=crm.pk, stream="invoices")
    assert run.fetched == run.created + run.updated + run.unchanged
    # Invoices are never hard-deleted, whatever the policy.
    stored = Invoice.objects.get()
    assert (stored.deleted_at is not None) is deleted_at_set
    ref = ExternalRef.objects.get(entity="invoice")
    assert (ref.tombstoned_at is not None) is tombstoned


def test_a_merge_writes_an_outbox_event_in_its_transaction(crm, erp):
    from customers.services.merge import customer_merge, customer_unmerge

    erp.config["consumes"].append(
        {
            "entity": "customer",
            "event": "customer.merged",
            "stream": "customers",
            "operation": "update",
            "data": {"merged_into": "$values.survivor_id"},
        }
    )
    erp.save()
    a = Customer.objects.create(name="Acme", kind="organization")
    b = Customer.objects.create(name="ACME Inc", kind="organization")
    record = customer_merge(survivor_id=a.pk, merged_id=b.pk)
    message = OutboxMessage.objects.get()
    assert (message.event, message.target, message.object_id) == (
        "customer.merged",
        erp.system,
        a.pk,
    )
    assert message.payload["values"]["merged_id"] == b.pk
    customer_unmerge(merge_id=record.pk)
    # No rule asks for unmerge events, so none is written.
    assert OutboxMessage.objects.count() == 1


def test_runs_of_dead_workers_are_closed_as_abandoned(crm):
    from django.conf import settings

    old = timezone.now() - dt.timedelta(seconds=settings.CONCORD_STREAM_LEASE_SECONDS + 5)
    dead = SyncRun.objects.create(
        system=crm.system, entity="customer", mode="pull", stream="companies"
    )
    alive = SyncRun.objects.create(system=crm.system, entity="deal", mode="pull", stream="deals")
    SyncRun.objects.filter(pk__in=[dead.pk, alive.pk]).update(started_at=old)
    sync.stream_lease_acquire(connection=crm, stream="deals", owner="live-worker")
    assert sync.runs_abandoned_close() == 1
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert (dead.status, alive.status) == ("failed", "running")
    assert dead.error.startswith("abandoned")


def test_relay_builds_one_connector_per_target(crm, erp, monkeypatch):
    customer = Customer.objects.create(name="Acme")
    ExternalRef.objects.create(
        system=erp.system,
        entity="customer",
        external_id="cus_1",
        object_id=customer.pk,
        customer=customer,
    )
    for n in range(3):
        OutboxMessage.objects.create(
            target=erp.system,
            origin=crm.system,
            entity="deal",
            object_id=n,
            customer_id=customer.pk,
            event="deal.closed_won",
            stream="orders",
            operation="create",
            payload={"values": {"name": f"d{n}"}},
            next_attempt_at=timezone.now(),
        )
    connector, built = FakeConnector([]), []
    monkeypatch.setattr(sync, "connection_connector", lambda c: built.append(c) or connector)
    assert outbox_relay()["sent"] == 3
    assert len(built) == 1 and len(connector.pushed) == 3
