"""Concurrent webhook drains on PostgreSQL, each on its own database connection.

Kept apart from test_webhooks_batch.py because these tests commit (transaction=True): a
file of only such tests is scheduled after the others, so the flush that ends them
cannot take the migrations' rows (roles, field ownership) from tests that run later on
the same worker."""

from __future__ import annotations

import threading
import time

import pytest
from django.core.cache import cache
from django.db import connection as db_connection
from django.db import connections, transaction

from customers.models import Customer, ExternalRef
from integrations.models import InboundRecord
from integrations.webhook_drain import webhook_events_process
from integrations.webhooks import webhook_receivers_clear

from .test_webhooks_batch import company, event, make_shop, receive

pytestmark = [
    pytest.mark.skipif(
        db_connection.vendor != "postgresql",
        reason="row locks and concurrent writers: SQLite ignores SELECT … FOR UPDATE (it has "
        "one writer at a time); CI (.ci/run) runs this on PostgreSQL",
    ),
    # Threads read what this test commits; serialized_rollback restores the rows
    # migrations created (roles, field ownership).
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


@pytest.fixture(autouse=True)
def _fresh_caches():
    cache.clear()
    webhook_receivers_clear()
    yield
    cache.clear()
    webhook_receivers_clear()


def _own_connection(fn, *args):
    """Run ``fn(*args)`` in a thread with its own database connection; return its result."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as exc:
            out["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_two_concurrent_drains_apply_every_event_exactly_once():
    shop = make_shop()
    for n in range(120):
        # 80 records, 40 of them updated twice: order matters within a record.
        receive(event(f"evt_{n}", company(n % 80, name=f"v{n}", second=n // 80)))
    runs = [
        _own_connection(lambda: webhook_events_process(system_id=shop.system_id, batch_size=15))
        for _ in range(2)
    ]
    for thread, _ in runs:
        thread.join(120)
    results = [out.get("value") or out.get("error") for _, out in runs]
    assert all(not isinstance(r, BaseException) for r in results), results
    assert sum(r.summary.read for r in results) == 120
    assert sum(r.batches for r in results) == 8  # 120 / 15, split between the two
    assert set(InboundRecord.objects.values_list("attempts", flat=True)) == {1}
    assert InboundRecord.objects.filter(status="applied").count() == 120
    assert Customer.objects.count() == 80
    names = dict(ExternalRef.objects.values_list("external_id", "customer__name"))
    assert names["c0"] == "v80" and names["c50"] == "v50"


def test_a_drain_skips_rows_another_transaction_holds():
    shop = make_shop()
    for n in range(6):
        receive(event(f"evt_{n}", company(n)))
    held = list(InboundRecord.objects.order_by("pk").values_list("pk", flat=True)[:2])
    locked, release = threading.Event(), threading.Event()

    def hold():  # a replay or the pending sweep working on two of them
        with transaction.atomic():
            list(InboundRecord.objects.select_for_update().filter(pk__in=held))
            locked.set()
            release.wait(30)

    holder, _ = _own_connection(hold)
    assert locked.wait(30)
    started = time.monotonic()
    drainer, out = _own_connection(lambda: webhook_events_process(system_id=shop.system_id))
    drainer.join(30)
    release.set()
    holder.join(30)
    assert time.monotonic() - started < 10, "the drain waited for the locked rows"
    assert out["value"].summary.read == 4
    pending = set(InboundRecord.objects.filter(status="pending").values_list("pk", flat=True))
    assert pending == set(held)
    # The next drain takes what was held.
    assert webhook_events_process(system_id=shop.system_id).summary.read == 2
