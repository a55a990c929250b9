"""A real Celery worker on Redis, killed with SIGKILL in the middle of a sync and started
again, ends in exactly the state of a clean run (DESIGN.md invariants 1 and 2).

The pull goes through the HubSpot preset against the CRM simulator over HTTP, slowed down
so that it takes several seconds over dozens of pages. The worker (prefork, as in the
Procfile) runs the production task path: ``sync_stream`` with ``acks_late``, Redis keeping
the message the dead worker took until its visibility timeout, the next worker restoring
it when it starts, waiting for the dead worker's stream lease (StreamBusy → retry), and
resuming from the cursor stored after the last landed page. The result is compared with
a full pull afterwards (nothing to do) and with a clean, uninterrupted run of the same
pull into an emptied hub (the same state, keyed by source ids).

Needs PostgreSQL (the worker process must see the test's committed rows) and Redis: on
the embedded SQLite setup without Redis it is skipped; CI runs it. It uses a queue of
its own on the configured broker, but kombu keeps unacknowledged messages per Redis
database and these workers restore any older than 5 s: do not point it at a Redis
database that long-running workers use.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import redis
from celery import Celery
from django.conf import settings
from django.db import connection as db_connection
from django.forms.models import model_to_dict
from django.utils import timezone

from customers.models import Customer, ExternalRef, FieldProvenance, MatchCandidate
from integrations import sync
from integrations.connections import connection_upsert
from integrations.connectors.presets import preset_config
from integrations.connectors.rest import parse_time
from integrations.models import (
    Connection,
    InboundRecord,
    OutboxMessage,
    RateBucket,
    StreamState,
    SyncRun,
)
from integrations.simulators import DEFAULT_CREDENTIALS, World, start_simulator

from .workers import Worker, database_url, queue_purge, redis_url, unacked_for_queue, wait_for

pytestmark = [
    # The worker process reads what this test commits, so no wrapping transaction;
    # serialized_rollback restores the rows migrations created (roles, field ownership).
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

STREAM = "companies"
CUSTOMERS, SEED = 640, 11  # 385 CRM companies (and persons, who are contacts)
PAGE_SIZE = 10  # 39 pages
SLOW_MS = 200  # every simulator request waits this long: a pull takes over 7.6 s
VISIBILITY_TIMEOUT = 5  # Redis redelivers an unacknowledged task after this many seconds
LEASE_SECONDS = 4  # a dead worker's stream lease expires after this many seconds
OLD_CURSOR = "2000-01-01T00:00:00.000Z"  # an earlier incremental sync got this far
TASK = "integrations.tasks.sync_stream"


@pytest.fixture
def broker() -> Iterator[tuple[str, redis.Redis, str]]:
    """(Redis URL, client, a queue of our own), purged before and after; skips unless the
    database is PostgreSQL and Redis answers."""
    if db_connection.vendor != "postgresql":
        pytest.skip(
            "needs PostgreSQL (DATABASE_URL=postgres://...): a worker process must read "
            "the rows this test commits; CI runs it"
        )
    url = redis_url()
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        pytest.skip(f"needs Redis at {url}, which does not answer PING ({exc}); CI runs it")
    queue = f"concord-kill-test-{uuid.uuid4().hex[:12]}"
    queue_purge(client, queue)
    yield url, client, queue
    queue_purge(client, queue)
    client.close()


@pytest.fixture
def crm_sim():
    world = World.generate("crm", customers=CUSTOMERS, seed=SEED)
    sim = start_simulator("crm", world=world, port=0, faults={"slow_ms": SLOW_MS})
    yield sim
    sim.stop()


@pytest.fixture
def workers(broker, tmp_path) -> Iterator[Callable[[], Worker]]:
    """Start real workers on our queue; every one is killed at the end whatever happens."""
    url, _client, queue = broker
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": database_url(db_connection.settings_dict),
        "CELERY_BROKER_URL": url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        "CONCORD_STREAM_LEASE_SECONDS": str(LEASE_SECONDS),
        "CONCORD_VAR_DIR": str(tmp_path / "var"),
        # The same key as this process, so the worker can decrypt the credentials.
        "SECRET_KEY": settings.SECRET_KEY,
        "CONCORD_ENCRYPTION_KEYS": ",".join(settings.CONCORD_ENCRYPTION_KEYS),
        "PYTHONUNBUFFERED": "1",
    }
    started: list[Worker] = []

    def start() -> Worker:
        name = f"{queue}-{len(started) + 1}"
        worker = Worker(name=name, queue=queue, env=env, log=tmp_path / f"{name}.log")
        started.append(worker.start())
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=5)


def crm_connection(sim) -> Connection:
    config = preset_config("hubspot", sim.url)
    companies = config["streams"][STREAM]
    companies["params"]["limit"] = PAGE_SIZE
    companies["incremental"]["request"]["body"]["limit"] = PAGE_SIZE
    return connection_upsert(
        system_name="crm",
        kind="crm",
        preset="hubspot",
        config=config,
        credentials={"token": DEFAULT_CREDENTIALS["crm"]["access_token"]},
        rate_limit_per_second=1000.0,
    )


def landed(connection: Connection) -> int:
    return InboundRecord.objects.filter(system=connection.system, stream=STREAM).count()


def snapshot(connection: Connection) -> dict:
    """Everything the sync wrote, keyed by source ids: no surrogate ids, no wall-clock
    times, so a run into an emptied hub can be compared with it."""
    system = connection.system
    refs = ExternalRef.objects.filter(system=system, entity="customer").select_related("customer")
    ids_of: dict[int, tuple[str, ...]] = {}
    for ref in refs:
        ids_of[ref.customer_id] = tuple(sorted((*ids_of.get(ref.customer_id, ()), ref.external_id)))
    records = InboundRecord.objects.filter(system=system)
    content_of = dict(records.values_list("pk", "content_hash"))
    skip = ("id", "created_at", "updated_at", "merged_into")
    return {
        "customers": {ref.external_id: model_to_dict(ref.customer, exclude=skip) for ref in refs},
        "same_customer": set(ids_of.values()),
        "customer_count": Customer.objects.count(),
        "refs": sorted(
            (r.external_id, r.payload_hash, r.source_updated_at, r.tombstoned_at) for r in refs
        ),
        "records": Counter(
            records.values_list(
                "external_id", "content_hash", "status", "outcome", "matched_by", "error"
            )
        ),
        "provenance": Counter(
            (ids_of.get(object_id), field, value, system_name, source_time, content_of[record])
            for object_id, field, value, system_name, source_time, record in (
                FieldProvenance.objects.values_list(
                    "object_id", "field", "value", "system__name", "source_updated_at", "record_id"
                )
            )
        ),
        "candidates": Counter(
            (ids_of.get(low), ids_of.get(high), status, rule)
            for low, high, status, rule in MatchCandidate.objects.values_list(
                "low", "high", "status", "rule"
            )
        ),
        "cursor": StreamState.objects.get(connection=connection, stream=STREAM).cursor,
    }


def hub_empty() -> None:
    """Remove what the sync wrote (a clean run starts from nothing); the connection stays."""
    for model in (FieldProvenance, MatchCandidate, ExternalRef, InboundRecord, SyncRun):
        model.objects.all().delete()
    for model in (StreamState, RateBucket, OutboxMessage, Customer):
        model.objects.all().delete()


@pytest.mark.parametrize(
    "stored_cursor",
    [
        # First sync: the plain list comes in id order, so the high-water mark is stored
        # only once the whole list is landed; the resumed run walks the list again.
        "",
        # Incremental: the search is sorted by modification time, so the cursor is
        # stored after each landed page; the resumed run goes on from there.
        OLD_CURSOR,
    ],
    ids=["first-sync", "incremental"],
)
def test_worker_killed_mid_sync_and_restarted_ends_in_the_clean_state(
    broker, crm_sim, workers, stored_cursor
):
    url, client, queue = broker
    connection = crm_connection(crm_sim)
    if stored_cursor:
        StreamState.objects.create(connection=connection, stream=STREAM, cursor=stored_cursor)
    # The hub's ids of HubSpot companies carry their object type (docs/connectors.md).
    companies = {f"company:{r.id}" for r in crm_sim.world.records(STREAM)}
    total = len(companies)
    assert total > 10 * PAGE_SIZE

    first = workers()
    sender = Celery("concord-kill-test", broker=url, set_as_current=False)
    sender.conf.broker_transport_options = {"visibility_timeout": VISIBILITY_TIMEOUT}
    try:
        sender.send_task(TASK, args=[connection.pk, STREAM], queue=queue)
    finally:
        sender.close()

    second = None

    def logs() -> str:
        return "\n".join(w.tail() for w in (first, *([second] if second else [])))

    started = time.monotonic()

    def running_long_enough():
        if not first.alive():
            raise AssertionError(f"the worker died by itself\n{logs()}")
        run = SyncRun.objects.filter(stream=STREAM).first()
        # Past its first lease period, so a live worker must have renewed its lease.
        return (
            run is not None
            and timezone.now() - run.started_at >= dt.timedelta(seconds=LEASE_SECONDS + 1)
            and landed(connection) >= total // 4
        )

    wait_for(
        running_long_enough,
        timeout=60,
        what=f"the first worker to sync for {LEASE_SECONDS + 1} s",
        detail=logs,
    )
    # The worker is alive and pulling: it still holds the stream, so no other worker
    # could take it from under it.
    state = StreamState.objects.get(connection=connection, stream=STREAM)
    assert state.lease_until and state.lease_until > timezone.now(), (
        f"a live worker lost its lease: it ran out at {state.lease_until}, "
        f"{landed(connection)} of {total} landed"
    )
    first.kill()
    killed_after = time.monotonic() - started

    # Mid-way: some pages landed, the run never finished, the dead worker's lease stands.
    at_kill = landed(connection)
    assert 0 < at_kill < total, f"{at_kill} of {total} landed when killed"
    killed = SyncRun.objects.get(stream=STREAM)
    assert (killed.status, killed.finished_at) == ("running", None)
    state.refresh_from_db()
    assert state.lease_owner, "the killed worker's lease is gone"
    if stored_cursor:
        # Sorted pages: the cursor moved page by page and covers only landed pages.
        assert state.cursor not in ("", stored_cursor)
        assert state.cursor == killed.cursor_after
        covered = InboundRecord.objects.filter(system=connection.system, stream=STREAM)
        newest = max(parse_time(r.payload["updatedAt"], "auto") for r in covered)
        assert parse_time(state.cursor, "auto") <= newest
    else:
        assert state.cursor == "", "an unsorted walk stored a cursor before its end"
    # acks_late: Redis still holds the message the dead worker took, unacknowledged.
    unacked = unacked_for_queue(client, queue)
    assert len(unacked) == 1, f"unacknowledged messages of our queue: {unacked}"
    (delivered_at,) = unacked.values()

    # A worker restores unacknowledged messages older than the visibility timeout when it
    # starts (and then in sweeps about every 100 s): start it once that time has come.
    time.sleep(max(0.0, delivered_at + VISIBILITY_TIMEOUT + 0.5 - time.time()))
    second = workers()

    def finished():
        if not second.alive():
            raise AssertionError(f"the second worker died\n{logs()}")
        return SyncRun.objects.filter(stream=STREAM).exclude(status="running").first()

    resumed = wait_for(finished, timeout=60, what="the redelivered sync to finish", detail=logs)
    wait_for(
        lambda: not unacked_for_queue(client, queue) and not client.llen(queue),
        timeout=15,
        what="the worker to acknowledge the task",
        detail=logs,
    )
    second.stop()
    resumed_after = time.monotonic() - started

    # One killed run, one resumed run that finished cleanly from where the cursor was.
    runs = list(SyncRun.objects.filter(stream=STREAM).order_by("pk"))
    assert [r.pk for r in runs] == [killed.pk, resumed.pk], logs()
    killed.refresh_from_db()
    assert killed.status == "running"
    assert resumed.status == "succeeded", f"{resumed.status}: {resumed.error}\n{logs()}"
    assert resumed.cursor_before == state.cursor
    assert resumed.failed == 0 and resumed.stale == 0
    if stored_cursor:
        assert resumed.fetched < total, "the resumed run started over instead of resuming"
    else:
        assert resumed.fetched == total

    # Nothing lost, nothing twice: every company landed once (its content does not
    # change), none left pending, one cross-reference each.
    records = InboundRecord.objects.filter(system=connection.system, stream=STREAM)
    assert Counter(records.values_list("external_id", flat=True)) == Counter(companies)
    assert not records.exclude(status="applied").exists(), Counter(
        records.values_list("status", flat=True)
    )
    refs = ExternalRef.objects.filter(system=connection.system, entity="customer")
    assert Counter(refs.values_list("external_id", flat=True)) == Counter(companies)
    # The cursor is the high-water mark of the whole stream; the lease is free.
    newest = max(records, key=lambda r: parse_time(r.payload["updatedAt"], "auto"))
    state.refresh_from_db()
    assert (state.cursor, state.lease_owner, state.lease_until) == (
        newest.payload["updatedAt"],
        "",
        None,
    )
    assert resumed.cursor_after == state.cursor

    # Idempotent: a full pull of the same source afterwards finds nothing to do.
    killed_and_resumed = snapshot(connection)
    crm_sim.faults.reset()
    again = sync.stream_sync(connection_id=connection.pk, stream=STREAM, full=True)
    assert (again.status, again.fetched, again.unchanged) == ("succeeded", total, total)
    assert (again.created, again.updated, again.stale, again.failed, again.landed) == (
        0,
        0,
        0,
        0,
        0,
    )
    assert snapshot(connection) == killed_and_resumed

    # And it is the state of a clean run: the same pull, uninterrupted, into an empty hub.
    hub_empty()
    if stored_cursor:
        StreamState.objects.create(connection=connection, stream=STREAM, cursor=stored_cursor)
    clean = sync.stream_sync(connection_id=connection.pk, stream=STREAM)
    assert (clean.status, clean.fetched) == ("succeeded", total)
    clean_state = snapshot(connection)
    for part, value in killed_and_resumed.items():
        assert value == clean_state[part], f"{part} differs from a clean run"

    print(
        f"\n{'incremental' if stored_cursor else 'first sync'}: killed after {killed_after:.1f} s"
        f" with {at_kill}/{total} landed; resumed and acknowledged at {resumed_after:.1f} s"
        f" (resumed run fetched {resumed.fetched}, created {resumed.created}, "
        f"unchanged {resumed.unchanged}, retries {resumed.retries})"
    )
