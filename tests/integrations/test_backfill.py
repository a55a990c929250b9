"""Parallel file import (integrations.backfill) and the identity lock that makes it safe.

Worker processes and threads really commit on their own connections, so these tests use
transactional test databases, and the parallel paths need PostgreSQL (on SQLite an import
with ``workers`` runs in one process, which is tested too).
"""

from __future__ import annotations

import csv
import threading
import time
from pathlib import Path

import pytest
from django.db import connection, connections, transaction

from customers.models import Customer, Entity, ExternalRef, SourceSystem
from customers.services.apply import ApplyItem, records_apply
from integrations import bench
from integrations.backfill import BackfillError
from integrations.models import InboundRecord, SyncRun
from integrations.pipeline.mapping import Mapping
from integrations.services import file_import, pending_records_process

needs_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="worker processes need PostgreSQL"
)
# The flush after each test would also delete what migrations created (roles, field
# ownership, content types) for the tests after it: serialized_rollback restores them.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

MAPPING = Mapping.from_dict(bench.MAPPING, entity="customer")
T1 = "2026-02-01T10:00:00Z"


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(bench.HEADER)
        writer.writerows(rows)
    return path


def grouping() -> set[frozenset[str]]:
    """Which external ids ended up as one customer."""
    groups: dict[int, set[str]] = {}
    for customer_id, external_id in ExternalRef.objects.filter(entity="customer").values_list(
        "customer_id", "external_id"
    ):
        groups.setdefault(customer_id, set()).add(external_id)
    return {frozenset(ids) for ids in groups.values()}


def wipe() -> None:
    """Forget one import (the tables an import writes), keeping the systems."""
    from customers.models import FieldProvenance, IdentityKey

    for model in (FieldProvenance, IdentityKey, ExternalRef, InboundRecord, SyncRun, Customer):
        model.objects.all().delete()


@needs_postgresql
def test_two_workers_resolve_exactly_like_one(tmp_path):
    # Generated rows: persons and organisations, ~5 % duplicates under other ids, bad rows.
    path = write_csv(tmp_path / "customers.csv", bench.generate_rows(3000, seed=5))
    parallel = file_import(
        system_name="crm", entity="customer", mapping=MAPPING, path=path, page_size=250, workers=2
    )
    parallel_groups = grouping()
    run = SyncRun.objects.get(pk=parallel.run_id)
    wipe()
    single = file_import(
        system_name="crm", entity="customer", mapping=MAPPING, path=path, page_size=250
    )

    assert parallel.as_dict() == single.as_dict()
    assert parallel.linked == single.linked > 0
    assert parallel_groups == grouping()
    # The run's own counters (incremented by both workers) add up and match the summary.
    assert run.status == SyncRun.Status.PARTIAL  # the generated file has bad rows
    assert run.fetched == run.outcome_total == parallel.read == 3000
    assert run.created == parallel.counts["created"]


@needs_postgresql
def test_later_versions_of_a_record_win_whichever_worker_has_it(tmp_path):
    rows = [
        [
            f"C{n}",
            "company",
            f"Company {n}",
            "",
            "",
            f"c{n}@corp{n}.test",
            "",
            "",
            "",
            "",
            "",
            "",
            T1,
        ]
        for n in range(400)
    ]
    # Same id, same source time, later in the file: the later row must be applied last.
    rows += [
        [
            f"C{n}",
            "company",
            f"Renamed {n}",
            "",
            "",
            f"c{n}@corp{n}.test",
            "",
            "",
            "",
            "",
            "",
            "",
            T1,
        ]
        for n in range(0, 400, 7)
    ]
    path = write_csv(tmp_path / "versions.csv", rows)

    file_import(
        system_name="crm", entity="customer", mapping=MAPPING, path=path, page_size=50, workers=2
    )

    names = dict(
        ExternalRef.objects.filter(entity="customer").values_list("external_id", "customer__name")
    )
    assert len(names) == 400
    assert all(names[f"C{n}"] == f"Renamed {n}" for n in range(0, 400, 7))
    assert names["C1"] == "Company 1"


def _raise(exc_text: str):
    raise RuntimeError(exc_text)


def _sigkill():
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)  # no report, no cleanup: like the OOM killer


@needs_postgresql
@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (lambda: _raise("disk on fire"), "disk on fire"),  # the worker reports its error
        (_sigkill, "exited abnormally"),  # the worker dies silently: noticed, no hang
    ],
    ids=["exception", "sigkill"],
)
def test_a_failing_worker_fails_the_import_and_the_run(tmp_path, monkeypatch, failure, message):
    from integrations import services

    path = write_csv(tmp_path / "customers.csv", bench.generate_rows(900, seed=3))
    real_run_page = services.run_page
    calls = {"n": 0}

    def run_page(**kwargs):
        calls["n"] += 1  # per process: the forked workers count their own pages
        if calls["n"] == 2:
            failure()
        return real_run_page(**kwargs)

    # Patched before the fork, so the worker processes inherit it.
    monkeypatch.setattr(services, "run_page", run_page)
    with pytest.raises(BackfillError, match=message):
        file_import(
            system_name="crm",
            entity="customer",
            mapping=MAPPING,
            path=path,
            page_size=100,
            workers=2,
        )
    run = SyncRun.objects.get()
    assert run.status == SyncRun.Status.FAILED
    assert message in run.error
    # Nothing received is lost: every landed row is applied, or pending for the sweep (a
    # worker may have been stopped between landing a page and processing it).
    assert InboundRecord.objects.count() >= run.landed > 0
    pending = InboundRecord.objects.filter(status=InboundRecord.Status.PENDING).count()
    assert pending_records_process(older_than_seconds=0).read == pending
    assert not InboundRecord.objects.filter(status=InboundRecord.Status.PENDING).exists()


def test_workers_on_sqlite_import_in_one_process(tmp_path):
    if connection.vendor == "postgresql":
        pytest.skip("the SQLite fallback")
    path = write_csv(tmp_path / "customers.csv", bench.generate_rows(300, seed=4))
    summary = file_import(
        system_name="crm", entity="customer", mapping=MAPPING, path=path, workers=2
    )
    assert summary.read == summary.total == 300
    assert Customer.objects.count() == summary.counts["created"] > 0


def test_workers_must_be_positive(tmp_path):
    path = write_csv(tmp_path / "customers.csv", bench.generate_rows(10, seed=4))
    with pytest.raises(Exception, match="workers must be 1 or more"):
        file_import(system_name="crm", entity="customer", mapping=MAPPING, path=path, workers=0)


@needs_postgresql
def test_the_identity_lock_makes_concurrent_writers_link_instead_of_duplicating():
    crm = SourceSystem.objects.create(name="crm", kind="crm")
    erp = SourceSystem.objects.create(name="erp", kind="erp")
    values = {"name": "Alice Adams", "email": "alice@adams.test", "kind": "person"}
    first_applied = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with transaction.atomic():
                records_apply(
                    system=crm,
                    entity=Entity.CUSTOMER,
                    items=[ApplyItem("crm-1", _when(), "h1", dict(values))],
                )
                first_applied.set()
                time.sleep(0.5)  # still uncommitted while the second writer arrives
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            first_applied.set()
        finally:
            connections.close_all()

    def second() -> None:
        try:
            first_applied.wait(5)
            with transaction.atomic():
                records_apply(
                    system=erp,
                    entity=Entity.CUSTOMER,
                    items=[ApplyItem("erp-9", _when(), "h2", dict(values))],
                )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors
    # Without the lock the second writer cannot see the first's uncommitted customer and
    # creates another "alice@adams.test".
    assert Customer.objects.count() == 1
    assert set(ExternalRef.objects.values_list("system__name", "customer_id")) == {
        ("crm", Customer.objects.get().pk),
        ("erp", Customer.objects.get().pk),
    }


def _when():
    import datetime as dt

    return dt.datetime(2026, 2, 1, 10, 0, tzinfo=dt.UTC)
