"""Webhooks in batches: a burst lands one event per request (one query each once the
connection is cached) and one debounced drain applies the system's pending events in
batches through the pipeline. The signature rules stay as they were: a bad signature or an
old timestamp is 401, logged and never landed; a disabled connection is refused.
Concurrent drains on PostgreSQL: test_webhooks_concurrency.py."""

from __future__ import annotations

import json
import time

import pytest
from django.core.cache import cache
from django.db import connection as db_connection
from django.db import transaction
from django.test.utils import CaptureQueriesContext

from customers.models import Customer, ExternalRef, SourceSystem
from integrations import crypto, tasks, webhook_drain
from integrations.connectors.rest import sign_webhook
from integrations.models import Connection, InboundRecord
from integrations.services import pending_records_process
from integrations.webhook_drain import webhook_events_claim, webhook_events_process
from integrations.webhooks import WebhookRejected, webhook_receive, webhook_receivers_clear

pytestmark = pytest.mark.django_db

SECRET = "whsec_batch"
MAPPING = {
    "external_id": "id",
    "updated_at": "updatedAt",
    "fields": {"properties.name": "name", "properties.email": "email"},
}
POSTGRES_ONLY = pytest.mark.skipif(
    db_connection.vendor != "postgresql",
    reason="row locks: SQLite ignores SELECT … FOR UPDATE (it has one writer at a time); "
    "CI (.ci/run) runs this on PostgreSQL",
)


def company(n: int, name: str | None = None, second: int = 0) -> dict:
    return {
        "id": f"c{n}",
        "updatedAt": f"2026-03-01T10:00:{second:02d}Z",
        "properties": {"name": name or f"Company {n}", "email": f"hello@company{n}.example.org"},
    }


def event(event_id: str, record: dict) -> bytes:
    return json.dumps({"id": event_id, "type": "company.updated", "data": {"object": record}})


def signed(body: bytes | str, secret: str = SECRET, stamp: int | None = None) -> dict:
    body = body.encode() if isinstance(body, str) else body
    return {"x-concord-signature": sign_webhook(secret, body, stamp)}


def receive(body: bytes | str, **kwargs):
    body = body.encode() if isinstance(body, str) else body
    return webhook_receive(system_name="shop", headers=signed(body, **kwargs), body=body)


def make_shop() -> Connection:
    system = SourceSystem.objects.create(name="shop", kind="crm")
    return Connection.objects.create(
        system=system,
        connector="rest",
        config={
            "base_url": "http://127.0.0.1:9",
            "streams": {
                "companies": {"path": "/companies", "entity": "customer", "mapping": MAPPING}
            },
            "webhook": {
                "tolerance_seconds": 300,
                "events": {"company.updated": {"stream": "companies"}},
            },
        },
        credentials_encrypted=crypto.encrypt({"webhook_secret": SECRET}),
    )


@pytest.fixture(autouse=True)
def _fresh_caches():
    cache.clear()
    webhook_receivers_clear()
    yield
    cache.clear()
    webhook_receivers_clear()


@pytest.fixture
def shop() -> Connection:
    return make_shop()


@pytest.fixture
def queued(monkeypatch) -> list[dict]:
    """Tasks enqueued as a real broker would get them (not run eagerly)."""
    sent: list[dict] = []
    task = tasks.process_webhook_events
    monkeypatch.setattr(task.app.conf, "task_always_eager", False)
    monkeypatch.setattr(
        task,
        "apply_async",
        lambda args, countdown: sent.append({"args": args, "countdown": countdown}),
    )
    return sent


def post(client, body: str, **kwargs):
    return client.post(
        "/hooks/shop/", data=body, content_type="application/json", headers=signed(body, **kwargs)
    )


def claim_queries(captured) -> list[str]:
    return [
        q["sql"] for q in captured if 'NOT ("integrations_inboundrecord"."event_id"' in q["sql"]
    ]


# -- burst → one drain, in batches ---------------------------------------------------------


def test_a_burst_enqueues_one_drain_that_applies_everything_in_batches(
    client, shop, queued, settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(100):
            assert post(client, event(f"evt_{n}", company(n))).status_code == 202
    # 100 accepted events, one drain enqueued, a second ahead (the debounce window).
    assert queued == [{"args": [shop.system_id], "countdown": 1}]
    assert InboundRecord.objects.filter(status="pending").count() == 100
    assert not Customer.objects.exists()

    settings.CONCORD_PAGE_SIZE = 40
    with CaptureQueriesContext(db_connection) as captured:
        result = tasks.process_webhook_events(*queued[0]["args"])
    assert result["batches"] == 3  # 40 + 40 + 20
    assert (result["read"], result["created"], result["failed"]) == (100, 100, 0)
    # One claim per batch, and one more that found nothing pending.
    assert len(claim_queries(captured)) == 4
    # Queries grow with the batches, not the events: about a dozen per batch (claim, then
    # the pipeline's lookups and writes for the page), well under one per event.
    statements = [q["sql"] for q in captured if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]
    assert len(statements) <= 3 * 20, statements
    assert InboundRecord.objects.filter(status="applied").count() == 100
    assert Customer.objects.count() == 100
    # The drain cleared the debounce flag when it started: the next event asks again.
    with django_capture_on_commit_callbacks(execute=True):
        post(client, event("evt_new", company(100)))
    assert len(queued) == 2


def test_events_while_the_flag_is_set_are_seen_by_the_queued_drain(shop, queued):
    """The flag lives no longer than the countdown: whoever sees it is committed first."""
    for n in range(3):
        receipt = receive(event(f"evt_{n}", company(n)))
        webhook_drain.webhook_drain_enqueue(receipt.system_id)
    assert len(queued) == 1
    assert cache.get(webhook_drain.FLAG_KEY.format(shop.system_id)) == 1
    assert queued[0]["countdown"] >= webhook_drain.drain_delay_seconds()
    tasks.process_webhook_events(shop.system_id)
    assert InboundRecord.objects.filter(status="applied").count() == 3
    assert cache.get(webhook_drain.FLAG_KEY.format(shop.system_id)) is None


def test_eager_mode_applies_each_accepted_event_at_once(
    client, shop, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        for n in range(3):
            assert post(client, event(f"evt_{n}", company(n))).status_code == 202
    assert InboundRecord.objects.filter(status="applied").count() == 3


def test_the_pending_sweep_covers_webhook_events(shop):
    """The safety net when no drain ran (broker down, worker lost): the beat task."""
    receive(event("evt_1", company(1)))
    summary = pending_records_process(older_than_seconds=0)
    assert summary.counts["created"] == 1
    assert InboundRecord.objects.get().status == "applied"


def test_drain_leaves_pulled_records_and_other_systems_alone(shop):
    other = make_other_system()
    receive(event("evt_1", company(1)))
    pulled = InboundRecord.objects.create(
        system=shop.system,
        entity="customer",
        stream="companies",
        payload=company(2),
        content_hash="pulled",
        external_id="c2",
    )
    elsewhere = InboundRecord.objects.create(
        system=other,
        entity="customer",
        stream="companies",
        payload=company(3),
        content_hash="other",
        external_id="c3",
        event_id="evt_1",
    )
    assert webhook_events_process(system_id=shop.system_id).as_dict()["read"] == 1
    pulled.refresh_from_db()
    elsewhere.refresh_from_db()
    assert (pulled.status, elsewhere.status) == ("pending", "pending")


def make_other_system() -> SourceSystem:
    return SourceSystem.objects.create(name="other", kind="crm")


# -- idempotency and order -----------------------------------------------------------------


def test_a_redelivered_event_id_is_not_applied_twice(shop):
    first = receive(event("evt_1", company(1)))
    again = receive(event("evt_1", company(1)))
    assert (first.duplicate, again.duplicate, again.record_id) == (False, True, first.record_id)
    assert webhook_events_process(system_id=shop.system_id).summary.counts["created"] == 1
    # Redelivered after it was applied, even with other content: nothing new lands.
    late = receive(event("evt_1", company(1, name="Changed")))
    assert (late.duplicate, late.record_id) == (True, first.record_id)
    assert webhook_events_process(system_id=shop.system_id).batches == 0
    record = InboundRecord.objects.get()
    assert (record.status, record.attempts) == ("applied", 1)
    assert Customer.objects.get().name == "Company 1"


@pytest.mark.parametrize("batch_size", [1, 100])
def test_out_of_order_updates_of_one_record_end_in_the_newest(shop, batch_size):
    # Delivered: oldest, newest, then a late one from between.
    receive(event("evt_a", company(1, name="First", second=1)))
    receive(event("evt_c", company(1, name="Newest", second=3)))
    receive(event("evt_b", company(1, name="Middle", second=2)))
    drained = webhook_events_process(system_id=shop.system_id, batch_size=batch_size)
    assert drained.batches == (3 if batch_size == 1 else 1)
    assert Customer.objects.get().name == "Newest"
    statuses = dict(InboundRecord.objects.values_list("event_id", "status"))
    assert statuses == {"evt_a": "applied", "evt_c": "applied", "evt_b": "stale"}
    ref = ExternalRef.objects.get(system=shop.system, external_id="c1")
    assert ref.source_updated_at.second == 3


def test_a_poisoned_event_goes_to_the_dead_letters_and_the_rest_apply(shop):
    for n in range(5):
        record = company(n)
        if n == 2:
            record["updatedAt"] = "the day before yesterday"
        receive(event(f"evt_{n}", record))
    drained = webhook_events_process(system_id=shop.system_id)
    assert (drained.summary.counts["created"], drained.summary.counts["failed"]) == (4, 1)
    poisoned = InboundRecord.objects.get(event_id="evt_2")
    assert poisoned.status == "failed" and poisoned.error
    assert [p.record_id for p in drained.summary.problems] == [poisoned.pk]
    assert InboundRecord.objects.filter(status="applied").count() == 4
    # A dead letter is not claimed again by the next drain; replay is an operator's call.
    assert webhook_events_process(system_id=shop.system_id).batches == 0


# -- claims and concurrency ----------------------------------------------------------------


@POSTGRES_ONLY
def test_the_claim_locks_rows_and_skips_locked_ones(shop):
    receive(event("evt_1", company(1)))
    with CaptureQueriesContext(db_connection) as captured, transaction.atomic():
        webhook_events_claim(system_id=shop.system_id, limit=10)
    (sql,) = claim_queries(captured)
    assert 'FOR UPDATE OF "integrations_inboundrecord" SKIP LOCKED' in sql
    assert "LIMIT 10" in sql


# -- receiving: queries and security -------------------------------------------------------


def test_receive_query_count_is_pinned(shop):
    with CaptureQueriesContext(db_connection) as cold:
        assert not receive(event("evt_1", company(1))).duplicate
    # 1. SELECT the enabled connection of "shop" (joined to its system), cached after;
    # 2. INSERT … SELECT … FROM connection WHERE enabled AND updated_at = <cached>
    #    ON CONFLICT DO NOTHING RETURNING id: the landing.
    assert len(cold) == 2, [q["sql"] for q in cold]
    with CaptureQueriesContext(db_connection) as warm:
        receipt = receive(event("evt_2", company(2)))
    # 1. the landing INSERT, nothing else: the cached connector verified the signature.
    assert len(warm) == 1, [q["sql"] for q in warm]
    assert warm[0]["sql"].startswith('INSERT INTO "integrations_inboundrecord"')
    assert "ON CONFLICT DO NOTHING" in warm[0]["sql"]
    assert receipt.record_id == InboundRecord.objects.get(event_id="evt_2").pk
    with CaptureQueriesContext(db_connection) as redelivery:
        assert receive(event("evt_2", company(2))).duplicate
    # 1. the INSERT (lands nothing); 2. is the connection still as cached? 3. the event's
    # landed row.
    assert len(redelivery) == 3, [q["sql"] for q in redelivery]


def test_bad_signature_is_401_logged_and_never_landed(client, shop, caplog):
    receive(event("evt_0", company(0)))  # the connection is now cached
    body = event("evt_1", company(1))
    with caplog.at_level("WARNING", logger="integrations.webhooks"):
        response = post(client, body, secret="not-the-secret")
    assert response.status_code == 401
    assert "rejected: bad signature or timestamp" in caplog.text
    old = post(client, body, stamp=int(time.time()) - 301)  # outside the tolerance
    assert old.status_code == 401
    assert not InboundRecord.objects.filter(event_id="evt_1").exists()


def test_a_connection_disabled_elsewhere_is_refused_despite_the_cache(shop):
    receive(event("evt_0", company(0)))
    # Another process disables it: no signal reaches this one's cache.
    Connection.objects.filter(pk=shop.pk).update(enabled=False)
    with pytest.raises(WebhookRejected, match="no enabled connection"):
        receive(event("evt_1", company(1)))
    with pytest.raises(WebhookRejected):
        receive(json.dumps({"id": "evt_2", "type": "ping"}))  # unrouted: refused too
    assert not InboundRecord.objects.filter(event_id__in=["evt_1", "evt_2"]).exists()


def test_a_secret_rotated_elsewhere_takes_effect_at_once(shop):
    from django.utils import timezone

    receive(event("evt_0", company(0)))
    Connection.objects.filter(pk=shop.pk).update(
        credentials_encrypted=crypto.encrypt({"webhook_secret": "whsec_new"}),
        updated_at=timezone.now(),
    )
    with pytest.raises(WebhookRejected, match="invalid signature"):
        receive(event("evt_1", company(1)))  # the old secret, cached until now
    assert not receive(event("evt_2", company(2)), secret="whsec_new").duplicate
    assert not InboundRecord.objects.filter(event_id="evt_1").exists()


def test_saving_the_connection_in_this_process_drops_the_cache(shop):
    receive(event("evt_0", company(0)))
    shop.credentials_encrypted = crypto.encrypt({"webhook_secret": "whsec_new"})
    shop.save()
    with CaptureQueriesContext(db_connection) as captured:
        assert not receive(event("evt_1", company(1)), secret="whsec_new").duplicate
    assert len(captured) == 2  # loaded again, then landed
