"""seed_demo: a deterministic demo world, loaded through the real import pipeline."""

import csv
import datetime as dt
import io
import json
import os
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db.models import Sum
from django.utils import timezone

from customers.models import (
    Customer,
    ExternalRef,
    FieldProvenance,
    IdentityKey,
    Invoice,
    Order,
    PaymentStatus,
    Ticket,
)
from integrations.demo.export import DATASETS, build_world
from integrations.models import InboundRecord, SyncRun
from integrations.pipeline.mapping import Mapping
from integrations.simulators import World, generate

pytestmark = pytest.mark.django_db

SMALL = 40
OUTCOMES = ("created", "updated", "unchanged", "stale", "failed")


def seed(out: Path, *, customers: int = SMALL, seed_value: int = 3, **extra) -> str:
    stdout = io.StringIO()
    call_command(
        "seed_demo", customers=customers, seed=seed_value, out=str(out), stdout=stdout, **extra
    )
    return stdout.getvalue()


@pytest.fixture
def world(tmp_path):
    """A small world, seeded once through --if-empty on an empty hub (so that path seeds)."""
    output = seed(tmp_path, if_empty=True)
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    with (tmp_path / "truth.csv").open(encoding="utf-8") as f:
        truth = list(csv.DictReader(f))
    return SimpleNamespace(dir=tmp_path, output=output, manifest=manifest, truth=truth)


def customer_of(system: str, external_id: str) -> int:
    return ExternalRef.objects.get(
        system__name=system, entity="customer", external_id=external_id
    ).customer_id


def snapshot() -> dict:
    return {
        "customers": list(Customer.objects.order_by("pk").values()),
        "refs": list(ExternalRef.objects.order_by("pk").values()),
        "provenance": list(FieldProvenance.objects.order_by("pk").values()),
        "keys": list(IdentityKey.objects.order_by("pk").values()),
        "invoices": list(Invoice.objects.order_by("pk").values()),
        "tickets": list(Ticket.objects.order_by("pk").values()),
    }


# -- the generator ----------------------------------------------------------------------


def test_same_seed_same_bytes_different_seed_different_data():
    today = dt.date(2026, 3, 1)
    first = build_world(customers=SMALL, seed=11, today=today).files
    again = build_world(customers=SMALL, seed=11, today=today).files
    other = build_world(customers=SMALL, seed=12, today=today).files
    assert first == again
    assert set(first) == set(other)
    for dataset in DATASETS:
        assert first[dataset.file] != other[dataset.file], dataset.file
        # Every file reads with its mapping (the mapping itself is valid).
        Mapping.load(dataset.mapping_path, entity=dataset.entity)


def test_same_bytes_in_another_process_with_another_hash_seed(tmp_path):
    """Nothing depends on set or dict ordering of strings (hash randomization)."""
    today = dt.date(2026, 3, 1)
    code = (
        "import django, datetime, sys; django.setup();"
        "from integrations.demo.export import build_world;"
        f"build_world(customers={SMALL}, seed=11, today=datetime.date(2026, 3, 1))"
        ".write(sys.argv[1])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242", "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        check=True,
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
    )
    here = build_world(customers=SMALL, seed=11, today=today).files
    for rel, text in here.items():
        assert (tmp_path / rel).read_bytes() == text.encode("utf-8"), rel


def test_the_files_are_the_simulators_world():
    """One generator: the exports hold the records the HTTP simulators serve for the seed
    (plus the planted bad rows, and older versions written after the newer ones)."""
    today = dt.date(2026, 3, 1)
    files = build_world(customers=SMALL, seed=11, today=today).files
    now = dt.datetime.combine(today, dt.time.min, tzinfo=dt.UTC).timestamp()
    crm, erp, helpdesk = (
        World.generate(system, customers=SMALL, seed=11, now=now)
        for system in ("crm", "erp", "helpdesk")
    )

    def exported(file: str, key: str, value: str) -> dict:
        """{key: value} of a file's rows; the first version of a record wins."""
        if file.endswith(".csv"):
            rows = list(csv.DictReader(io.StringIO(files[file])))
        else:
            rows = [json.loads(line) for line in files[file].splitlines()]
        found: dict = {}
        for row in rows:
            found.setdefault(str(row[key]), row[value])
        return found

    def served(world, obj: str, value: str, keep=lambda data: True) -> dict:
        return {r.id: r.data[value] for r in world.records(obj) if keep(r.data)}

    companies = exported("crm/companies.csv", "Record ID", "Company name")
    assert companies == served(crm, "companies", "name")
    people = exported("crm/people.csv", "Record ID", "Email")
    contacts = exported("crm/contacts.csv", "Record ID", "Email")
    assert served(crm, "contacts", "email").items() < (people | contacts).items()
    assert len(people) + len(contacts) == len(crm.records("contacts")) + 2  # two bad rows
    deals = exported("crm/deals.csv", "Record ID", "Deal Name")
    assert deals == served(crm, "deals", "dealname")
    assert exported("erp/customers.jsonl", "id", "email") == served(erp, "customers", "email")
    paid = exported("erp/invoices.csv", "Invoice ID", "Amount Paid")
    cents = served(erp, "invoices", "amount_paid")
    assert len(paid) == len(cents) + 1  # a bad row
    assert all(Decimal(paid[i]) == Decimal(c) / 100 for i, c in cents.items())
    users = exported("helpdesk/users.jsonl", "id", "email")
    end_users = served(helpdesk, "users", "email", lambda d: d["role"] == "end-user")
    assert end_users.items() < users.items() and len(users) == len(end_users) + 1
    tickets = exported("helpdesk/tickets.jsonl", "id", "subject")
    assert served(helpdesk, "tickets", "subject").items() < tickets.items()


def test_the_partner_territory_is_the_one_demo_users_shares():
    from customers.management.commands.demo_users import PARTNER_OWNER

    assert generate.PARTNER_OWNER == PARTNER_OWNER
    assert generate.OWNER_NAMES[generate.PARTNER_OWNER_ID] == PARTNER_OWNER


def test_world_is_consistent_with_itself():
    """Orders add up to their lines; invoices' amount paid is what their charges paid."""
    world = build_world(customers=SMALL, seed=5, today=dt.date(2026, 3, 1))
    rows = list(csv.DictReader(io.StringIO(world.files["erp/orders.csv"])))
    for row in rows:
        lines = json.loads(row["Lines"])
        net = sum(Decimal(li["unit_price"]) * li["quantity"] for li in lines)
        assert Decimal(row["Net Total"]) == net
    paid = defaultdict(Decimal)
    for line in world.files["erp/payments.jsonl"].splitlines():
        charge = json.loads(line)
        if charge["status"] == "succeeded":
            paid[charge["invoice"]] += Decimal(charge["amount"])
    stale = {s["external_id"] for s in world.manifest["planted"]["stale"]}
    invoices = csv.DictReader(io.StringIO(world.files["erp/invoices.csv"]))
    seen = set()
    for row in invoices:
        if row["Invoice ID"] in seen and row["Invoice ID"] in stale:
            continue  # the planted older version, written after the newer one
        seen.add(row["Invoice ID"])
        assert Decimal(row["Amount Paid"]) == paid[row["Invoice ID"]], row["Invoice ID"]


# -- loading ----------------------------------------------------------------------------


def test_small_world_loads_with_counts_adding_up(world):
    lines = {line.split()[1]: line for line in world.output.splitlines() if "  read " in line}
    assert list(lines) == [*(d.file for d in DATASETS), "read"][: len(lines)]
    runs = list(SyncRun.objects.order_by("pk"))
    assert len(runs) == len(DATASETS)
    for run, dataset, planned in zip(runs, DATASETS, world.manifest["datasets"], strict=True):
        assert (run.system.name, run.entity) == (dataset.system, dataset.entity)
        assert run.fetched == planned["rows"] == run.outcome_total
        assert run.status in ("succeeded", "partial")
        assert f"read {run.fetched:>5}" in lines[dataset.file]
        assert run.system.kind == dataset.kind
    totals = {o: sum(getattr(r, o) for r in runs) for o in OUTCOMES}
    assert sum(totals.values()) == sum(r.fetched for r in runs)
    assert totals["failed"] == len(world.manifest["planted"]["bad_rows"])
    assert totals["stale"] == len(world.manifest["planted"]["stale"])
    assert "total" in world.output
    assert Customer.objects.count() == world.manifest["expected"]["customers"]
    # Landing holds every record read (identical redeliveries would be landed once).
    assert InboundRecord.objects.count() == sum(r.fetched for r in runs)


def test_planted_cross_system_duplicates_are_one_customer(world):
    planted = world.manifest["planted"]
    assert planted["cross_system_examples"]
    for example in planted["cross_system_examples"]:
        ids = {customer_of(system, xid) for system, xid in example["refs"].items()}
        assert len(ids) == 1, example
    for dup in planted["duplicates_within_system"]:
        ids = {customer_of(dup["system"], xid) for xid in dup["refs"]}
        expected = 1 if dup["expected"].startswith("linked") else 2
        assert len(ids) == expected, dup
    for unlinked in planted["unlinked_across_systems"]:
        assert customer_of("crm", unlinked["refs"]["crm"]) != customer_of(
            "erp", unlinked["refs"]["erp"]
        )
    # The whole truth: every real customer's records resolve to one hub customer, except
    # the planted records no deterministic key can link.
    groups = defaultdict(set)
    for row in world.truth:
        if not row["role"].startswith("unlinked"):
            groups[row["true_customer"]].add(customer_of(row["system"], row["external_id"]))
    assert all(len(ids) == 1 for ids in groups.values())
    assert len({next(iter(ids)) for ids in groups.values()}) == len(groups)
    linked_kinds = {row["role"] for row in world.truth}
    assert {"linked:domain", "duplicate:domain", "duplicate:tax_id"} <= linked_kinds


def test_invoices_are_overdue_partly_paid_and_tickets_have_resolution_times(world):
    today = timezone.localdate()
    statuses = {i.payment_status_on(today) for i in Invoice.objects.all()}
    assert {PaymentStatus.OVERDUE, PaymentStatus.PARTIALLY_PAID, PaymentStatus.PAID} <= statuses
    assert Invoice.objects.overdue(today).exists()
    for invoice in Invoice.objects.filter(payments__isnull=False).distinct()[:50]:
        succeeded = invoice.payments.filter(status="succeeded").aggregate(s=Sum("amount"))["s"]
        assert invoice.amount_paid == (succeeded or 0)
    order = Order.objects.filter(lines__isnull=False).first()
    assert order.total == sum(line.amount for line in order.lines.all())
    solved = [t for t in Ticket.objects.all() if t.resolution_time is not None]
    assert solved and all(t.resolution_time > dt.timedelta(0) for t in solved)
    assert Ticket.objects.filter(resolved_at__isnull=True, status__in=["new", "open", "pending"])


def test_conflicts_and_stale_versions_follow_the_ownership_matrix(world):
    planted = world.manifest["planted"]
    for conflict in planted["conflicts"]:
        customer = Customer.objects.get(pk=customer_of("crm", conflict["crm_record"]))
        if conflict["field"] == "legal_name":
            assert customer.legal_name == conflict["erp"]  # billing owns the legal name
        else:
            assert customer.phone == conflict["crm"]  # the CRM owns the phone
            record = InboundRecord.objects.get(
                system__name="helpdesk",
                entity="customer",
                external_id=conflict["helpdesk_record"],
            )
            assert "phone" in record.detail.get("rejected", [])
    assert planted["stale"]
    for stale in planted["stale"]:
        records = InboundRecord.objects.filter(
            system__name=stale["system"],
            entity=stale["entity"],
            external_id=stale["external_id"],
        ).order_by("pk")
        assert [r.status for r in records] == ["applied", "stale"], stale
        newer = records[0]
        ref = ExternalRef.objects.get(
            system__name=stale["system"],
            entity=stale["entity"],
            external_id=stale["external_id"],
        )
        assert ref.source_updated_at == newer.source_updated_at
    # The older CRM versions said "Subscriber"; the newer lifecycle stage stays.
    companies = [s for s in planted["stale"] if s["entity"] == "customer"]
    assert companies
    for stale in companies:
        customer = Customer.objects.get(pk=customer_of("crm", stale["external_id"]))
        assert customer.lifecycle_stage not in ("", "subscriber")


def test_bad_rows_are_failed_records_with_their_errors_and_payloads(world):
    bad = world.manifest["planted"]["bad_rows"]
    assert {b["entity"] for b in bad} >= {"customer", "contact", "invoice", "order", "ticket"}
    for row in bad:
        record = InboundRecord.objects.get(
            system__name=row["system"], entity=row["entity"], external_id=row["external_id"]
        )
        assert record.status == InboundRecord.Status.FAILED, row
        assert row["error_contains"] in record.error, (row, record.error)
        assert record.payload and record.attempts <= 1
    assert InboundRecord.objects.filter(status="failed").count() == len(bad)


def test_running_twice_changes_nothing(world):
    before = snapshot()
    output = seed(world.dir)
    runs = list(SyncRun.objects.order_by("pk"))[len(DATASETS) :]
    assert len(runs) == len(DATASETS)
    bad = len(world.manifest["planted"]["bad_rows"])
    assert sum(r.created + r.updated + r.stale for r in runs) == 0
    # Failed records are retried on redelivery (they may have been fixed upstream) and
    # fail again; everything else is unchanged.
    assert sum(r.failed for r in runs) == bad
    assert sum(r.unchanged for r in runs) == sum(r.fetched for r in runs) - bad
    assert snapshot() == before
    assert "created     0" in output.splitlines()[-2]


def test_if_empty_skips_when_customers_exist(world):
    before = SyncRun.objects.count()
    output = seed(world.dir, if_empty=True)
    assert "skipped" in output
    assert SyncRun.objects.count() == before


def test_demo_users_share_the_planted_partner_territory(world):
    from guardian.shortcuts import get_objects_for_user

    call_command("demo_users", stdout=io.StringIO())
    territory = world.manifest["planted"]["partner_territory"]
    expected = {customer_of("crm", xid) for xid in territory["crm_records"]}
    assert expected
    partner = Customer.objects.model._meta.apps.get_model("auth", "User").objects.get(
        username="partner"
    )
    visible = set(
        get_objects_for_user(partner, "customers.view_customer").values_list("pk", flat=True)
    )
    assert visible == expected
