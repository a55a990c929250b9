"""import_records end to end: the invariants of DESIGN.md that apply to file import."""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from customers.models import (
    Customer,
    ExternalRef,
    FieldProvenance,
    IdentityKey,
    Invoice,
    Order,
    Payment,
    PaymentStatus,
    SourceSystem,
    Ticket,
)
from customers.services import apply as apply_service
from integrations.models import InboundRecord, SyncRun

from .conftest import counts

pytestmark = pytest.mark.django_db

T1 = "2026-01-01T10:00:00Z"
T2 = "2026-01-02T10:00:00Z"
T3 = "2026-01-03T10:00:00Z"


def snapshot() -> dict:
    """Everything the pipeline writes, to compare before and after."""
    return {
        "customers": list(Customer.objects.order_by("pk").values()),
        "refs": list(ExternalRef.objects.order_by("pk").values()),
        "provenance": list(FieldProvenance.objects.order_by("pk").values()),
        "keys": list(IdentityKey.objects.order_by("pk").values()),
        "landing": list(InboundRecord.objects.order_by("pk").values()),
    }


def test_import_creates_customers_with_provenance(importer):
    out = importer.crm_customers(
        [
            ["C1", "Acme Inc", "Info@Acme.com", "(415) 555-0100", "US", "Customer", T1],
            ["C2", "Globex GmbH", "kontakt@globex.de", "030 1234567", "DE", "Lead", T1],
        ]
    )
    assert counts(out) == {
        "read": 2,
        "landed": 2,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "stale": 0,
        "failed": 0,
    }
    acme = Customer.objects.get(name="Acme Inc")
    assert acme.email == "info@acme.com"
    assert acme.phone == "+14155550100"
    assert acme.lifecycle_stage == "customer"
    globex = Customer.objects.get(name="Globex GmbH")
    assert globex.phone == "+49301234567"
    prov = FieldProvenance.objects.get(entity="customer", object_id=acme.pk, field="email")
    record = InboundRecord.objects.get(external_id="C1")
    assert prov.system.name == "crm"
    assert prov.record_id == record.pk
    assert prov.source_updated_at.isoformat() == "2026-01-01T10:00:00+00:00"
    assert record.status == "applied" and record.outcome == "created"
    assert record.customer_id == acme.pk
    ref = ExternalRef.objects.get(system__name="crm", entity="customer", external_id="C1")
    assert ref.customer_id == acme.pk == ref.object_id
    run = SyncRun.objects.get()
    assert (run.status, run.fetched, run.created) == ("succeeded", 2, 2)


def test_every_row_is_landed_and_bad_rows_do_not_stop_the_file(importer):
    rows = [
        ["C1", "Acme", "info@acme.com", "", "US", "Customer", T1],
        ["C2", "Bad mail", "not-an-email", "", "US", "Lead", T1],
        ["C3", "Bad phone", "ok@bad-phone.com", "12", "US", "Lead", T1],
        ["C4", "Bad date", "ok@bad-date.com", "", "US", "Lead", "yesterday-ish"],
        ["C5", "Bad stage", "ok@bad-stage.com", "", "US", "Wizard", T1],
        ["C6", "Bad country", "ok@bad-country.com", "", "Atlantis", "Lead", T1],
        ["", "No id", "noid@x.com", "", "US", "Lead", T1],
        ["C7", "Too", "many", "cells", "US", "Lead", T1, "extra"],
        ["C8", "Initech", "hello@initech.com", "", "US", "Lead", T1],
    ]
    out = importer.crm_customers(rows)
    c = counts(out)
    assert c["read"] == 9 == c["landed"]
    assert c["created"] == 2 and c["failed"] == 7
    assert sum(c[k] for k in ("created", "updated", "unchanged", "stale", "failed")) == c["read"]
    assert InboundRecord.objects.count() == 9
    errors = dict(InboundRecord.objects.filter(status="failed").values_list("position", "error"))
    assert "not a valid e-mail address" in errors[3]
    assert "not a valid phone number" in errors[4]
    assert "not a timestamp" in errors[5]
    assert "'Wizard' is not one of" in errors[6]
    assert "not a known country" in errors[7]
    assert "missing external id" in errors[8]
    assert "8 cells, the header has 7" in errors[9]
    # The payload of a failed row is kept whole, for the steward and for replay.
    bad = InboundRecord.objects.get(position=3)
    assert bad.payload["email"] == "not-an-email" and bad.attempts == 1
    assert "row 3 (C2): email: 'not-an-email' is not a valid e-mail address" in out
    assert SyncRun.objects.get().status == "partial"


def test_jsonl_bad_lines_are_landed_with_their_text(importer):
    path = importer.tmp_path / "bad.jsonl"
    path.write_text('{"id": "C1", "company": "Acme", "updated": "2026-01-01"}\nnot json\n[1,2]\n')
    out = importer.run(
        "crm",
        "customer",
        {"external_id": "id", "updated_at": "updated", "fields": {"company": "name"}},
        path,
    )
    assert counts(out)["created"] == 1 and counts(out)["failed"] == 2
    raw = InboundRecord.objects.get(position=2)
    assert raw.payload == {"_raw": "not json"} and "invalid JSON" in raw.error
    assert "expected a JSON object" in InboundRecord.objects.get(position=3).error


def test_reimport_is_idempotent(importer):
    rows = [
        ["C1", "Acme", "info@acme.com", "+1 415 555 0100", "US", "Customer", T1],
        ["C2", "Globex", "kontakt@globex.de", "", "DE", "Lead", T1],
        ["C3", "Bad", "nope", "", "US", "Lead", T1],
    ]
    importer.crm_customers(rows)
    before = snapshot()
    out = io.StringIO()
    call_command("export_crossref", stdout=out)
    crossref_before = out.getvalue()
    second = counts(importer.crm_customers(rows))
    # The failed row is retried (and fails again); the others are unchanged.
    assert second == {
        "read": 3,
        "landed": 0,
        "created": 0,
        "updated": 0,
        "unchanged": 2,
        "stale": 0,
        "failed": 1,
    }
    after = snapshot()
    for table in ("customers", "refs", "provenance", "keys"):
        assert after[table] == before[table], table
    assert len(after["landing"]) == len(before["landing"])
    assert InboundRecord.objects.get(external_id="C3").attempts == 2
    out = io.StringIO()
    call_command("export_crossref", stdout=out)
    assert out.getvalue() == crossref_before


def test_duplicate_rows_in_one_file_land_once(importer):
    row = ["C1", "Acme", "info@acme.com", "", "US", "Customer", T1]
    c = counts(importer.crm_customers([row, row, row]))
    assert c["read"] == 3 and c["landed"] == 1 and c["created"] == 1 and c["unchanged"] == 2
    assert Customer.objects.count() == 1


def test_older_update_is_stale_and_not_applied(importer):
    importer.crm_customers([["C1", "Acme New", "info@acme.com", "", "US", "Customer", T3]])
    out = importer.crm_customers([["C1", "Acme Old", "old@acme.com", "", "US", "Lead", T2]])
    assert counts(out)["stale"] == 1
    acme = Customer.objects.get()
    assert (acme.name, acme.email, acme.lifecycle_stage) == (
        "Acme New",
        "info@acme.com",
        "customer",
    )
    assert InboundRecord.objects.get(payload__company="Acme Old").status == "stale"
    prov = FieldProvenance.objects.get(entity="customer", field="name")
    assert prov.value == "Acme New"


def test_versions_in_one_file_apply_in_order_without_oscillation(importer):
    out = importer.crm_customers(
        [
            ["C1", "Acme v2", "info@acme.com", "", "US", "Customer", T2],
            ["C1", "Acme v1", "info@acme.com", "", "US", "Lead", T1],
            ["C1", "Acme v3", "info@acme.com", "", "US", "Customer", T3],
        ]
    )
    assert counts(out) | {} == counts(out)
    c = counts(out)
    assert (c["created"], c["stale"], c["updated"]) == (1, 1, 1)
    assert Customer.objects.get().name == "Acme v3"


def test_field_level_staleness_across_systems(importer):
    """Newest-wins fields (tickets) keep the newest value whatever the arrival order."""
    importer.crm_customers([["C1", "Acme", "info@acme.com", "", "US", "Customer", T1]])
    mapping = {
        "external_id": "id",
        "updated_at": "updated",
        "refs": {"customer": "org"},
        "fields": {"subject": "subject", "status": "status"},
    }
    importer.run(
        "crm",
        "ticket",
        mapping,
        importer.write_jsonl(
            [{"id": "T1", "org": "C1", "subject": "Printer", "status": "open", "updated": T1}]
        ),
    )
    ticket = Ticket.objects.get()
    # The same ticket and customer known to the help desk, linked via the cross-reference.
    helpdesk = SourceSystem.objects.create(name="helpdesk", kind="helpdesk")
    for entity, external_id, object_id in (
        ("ticket", "Z1", ticket.pk),
        ("customer", "U1", ticket.customer_id),
    ):
        ExternalRef.objects.create(
            system=helpdesk,
            entity=entity,
            external_id=external_id,
            object_id=object_id,
            customer=ticket.customer,
        )
    newer = {"id": "Z1", "org": "U1", "subject": "Printer", "status": "solved", "updated": T3}
    older = {"id": "Z1", "org": "U1", "subject": "Printer", "status": "pending", "updated": T2}
    importer.run("helpdesk", "ticket", mapping, importer.write_jsonl([newer]))
    out = importer.run("helpdesk", "ticket", mapping, importer.write_jsonl([older]))
    assert counts(out)["stale"] == 1
    ticket.refresh_from_db()
    assert ticket.status == "solved"


def test_system_of_record_wins_and_others_fill_blanks(importer):
    importer.crm_customers([["C1", "Acme", "info@acme.com", "", "US", "Customer", T1]])
    erp_mapping = {
        "external_id": "no",
        "updated_at": "updated",
        "fields": {
            "name": "name",
            "legal": "legal_name",
            "mail": "email",
            "vat": "tax_id",
            "country": "country",
        },
    }
    out = importer.run(
        "erp",
        "customer",
        erp_mapping,
        importer.write_jsonl(
            [
                {
                    "no": "E1",
                    "name": "ACME (erp)",
                    "legal": "Acme Incorporated",
                    "mail": "INFO@acme.com",
                    "vat": "US-99",
                    "country": "US",
                    "updated": T3,
                },
            ]
        ),
        "--kind",
        "billing",
    )
    assert counts(out)["updated"] == 1
    acme = Customer.objects.get()
    # The CRM owns the name: a newer ERP value does not replace it.
    assert acme.name == "Acme"
    # The ERP owns the legal name and the tax id.
    assert acme.legal_name == "Acme Incorporated" and acme.tax_id == "US99"
    record = InboundRecord.objects.get(external_id="E1")
    assert record.matched_by == "email"
    assert "name" in record.detail["rejected"]
    # The CRM cannot overwrite what billing owns, even later.
    importer.crm_customers([["C1", "Acme", "info@acme.com", "", "GB", "Customer", "2026-02-01"]])
    acme.refresh_from_db()
    assert acme.country == "US"


def test_deterministic_linking_across_systems(importer):
    importer.crm_customers(
        [
            ["C1", "Acme", "Jane.Doe+crm@gmail.com", "", "US", "Customer", T1],
            ["C2", "Globex", "", "+49 30 1234567", "DE", "Lead", T1],
            ["C3", "Initech", "contact@initech.com", "", "US", "Lead", T1],
            ["C4", "Hooli", "a@hooli.com", "", "US", "Lead", T1],
        ]
    )
    mapping = {
        "external_id": "id",
        "fields": {
            "n": "name",
            "e": "email",
            "p": "phone",
            "c": "country",
            "w": "website",
            "t": "tax_id",
        },
    }
    out = importer.run(
        "helpdesk",
        "customer",
        mapping,
        importer.write_jsonl(
            [
                {"id": "H1", "n": "Acme Support", "e": "janedoe@gmail.com"},  # gmail dots and +tag
                {"id": "H2", "n": "Globex", "p": "030 1234567", "c": "DE"},  # phone formats
                {"id": "H3", "n": "Initech", "w": "https://www.initech.com/"},  # org domain
                {"id": "H4", "n": "Someone", "w": "https://gmail.com"},  # free-mail: never a key
                {"id": "H5", "n": "Hooli", "e": "a@hooli.com", "t": "DE111", "c": "DE"},
            ]
        ),
    )
    refs = dict(ExternalRef.objects.values_list("external_id", "customer_id"))
    assert refs["H1"] == refs["C1"]
    assert refs["H2"] == refs["C2"]
    assert refs["H3"] == refs["C3"]
    assert refs["H4"] not in {refs["C1"], refs["C2"], refs["C3"], refs["C4"]}
    assert counts(out)["updated"] == 4 and counts(out)["created"] == 1
    # A different tax id is another customer, whatever e-mail they share.
    out = importer.run(
        "erp",
        "customer",
        mapping,
        importer.write_jsonl(
            [
                {"id": "E5", "n": "Hooli GmbH", "e": "a@hooli.com", "t": "DE222", "c": "DE"},
            ]
        ),
    )
    assert counts(out)["created"] == 1


def test_records_in_one_batch_link_to_each_other(importer):
    out = importer.crm_customers(
        [
            ["C1", "Acme", "info@acme.com", "", "US", "Customer", T1],
            ["C2", "Acme duplicate", "INFO@acme.com", "", "US", "Customer", T1],
        ]
    )
    assert counts(out)["created"] == 1 and counts(out)["updated"] == 1
    assert Customer.objects.count() == 1


def test_related_entities_and_payment_status(importer):
    importer.crm_customers([["C1", "Acme", "info@acme.com", "", "US", "Customer", T1]])
    order_map = {
        "external_id": "id",
        "refs": {"customer": "cust"},
        "fields": {
            "number": "number",
            "date": "order_date",
            "total": "total",
            "cur": "currency",
            "lines": "lines",
        },
    }
    importer.run(
        "crm",
        "order",
        order_map,
        importer.write_jsonl(
            [
                {
                    "id": "O1",
                    "cust": "C1",
                    "number": "SO-1",
                    "date": "2026-01-05",
                    "total": "150",
                    "cur": "usd",
                    "lines": [
                        {"sku": "A", "quantity": 2, "unit_price": "50"},
                        {"sku": "B", "quantity": 1, "unit_price": 50},
                    ],
                },
            ]
        ),
    )
    order = Order.objects.get()
    assert order.currency == "USD" and [line.sku for line in order.lines.all()] == ["A", "B"]
    inv_map = {
        "external_id": "id",
        "refs": {"customer": "cust"},
        "fields": {
            "n": "number",
            "amount": "amount",
            "paid": "amount_paid",
            "due": "due_date",
            "status": "status",
        },
    }
    importer.run(
        "crm",
        "invoice",
        inv_map,
        importer.write_jsonl(
            [
                {
                    "id": "I1",
                    "cust": "C1",
                    "n": "INV-1",
                    "amount": "100",
                    "paid": "100",
                    "due": "2020-01-01",
                },
                {
                    "id": "I2",
                    "cust": "C1",
                    "n": "INV-2",
                    "amount": "100",
                    "paid": "40",
                    "due": "2999-01-01",
                },
                {
                    "id": "I3",
                    "cust": "C1",
                    "n": "INV-3",
                    "amount": "100",
                    "paid": "40",
                    "due": "2020-01-01",
                },
                {"id": "I4", "cust": "C1", "n": "INV-4", "amount": "100", "due": "2999-01-01"},
                {"id": "I5", "cust": "C1", "n": "INV-5", "amount": "100", "status": "void"},
            ]
        ),
    )
    status = {i.number: i.payment_status for i in Invoice.objects.all()}
    assert status == {
        "INV-1": PaymentStatus.PAID,
        "INV-2": PaymentStatus.PARTIALLY_PAID,
        "INV-3": PaymentStatus.OVERDUE,
        "INV-4": PaymentStatus.OPEN,
        "INV-5": PaymentStatus.VOID,
    }
    assert Invoice.objects.get(number="INV-3").open_balance == 60


def test_out_of_order_payment_fails_then_replays(importer):
    importer.crm_customers([["C1", "Acme", "info@acme.com", "", "US", "Customer", T1]])
    pay_map = {
        "external_id": "id",
        "refs": {"customer": "cust", "invoice": "inv"},
        "fields": {"amount": "amount", "at": "paid_at"},
    }
    out = importer.run(
        "crm",
        "payment",
        pay_map,
        importer.write_jsonl(
            [
                {"id": "P1", "cust": "C1", "inv": "I1", "amount": "25.50", "at": 1767261600},
            ]
        ),
    )
    assert counts(out)["failed"] == 1
    assert "invoice 'I1' is not known in crm" in InboundRecord.objects.get(external_id="P1").error
    inv_map = {
        "external_id": "id",
        "refs": {"customer": "cust"},
        "fields": {"n": "number", "amount": "amount"},
    }
    importer.run(
        "crm",
        "invoice",
        inv_map,
        importer.write_jsonl([{"id": "I1", "cust": "C1", "n": "INV-1", "amount": "100"}]),
    )
    out = io.StringIO()
    call_command("replay_failed", stdout=out)
    assert "1 created" in out.getvalue()
    payment = Payment.objects.get()
    assert payment.invoice.number == "INV-1" and str(payment.amount) == "25.50"
    record = InboundRecord.objects.get(external_id="P1")
    assert (record.status, record.attempts, record.error) == ("applied", 2, "")


def test_unknown_customer_reference_fails_with_clear_error(importer):
    mapping = {"external_id": "id", "refs": {"customer": "cust"}, "fields": {"s": "subject"}}
    out = importer.run(
        "helpdesk",
        "ticket",
        mapping,
        importer.write_jsonl(
            [{"id": "T1", "cust": "nobody", "s": "Help"}, {"id": "T2", "s": "No customer"}]
        ),
    )
    assert counts(out)["failed"] == 2
    errors = dict(InboundRecord.objects.values_list("external_id", "error"))
    assert "customer 'nobody' is not known in helpdesk" in errors["T1"]
    assert "missing reference to the customer" in errors["T2"]


def test_dry_run_writes_nothing_and_previews_the_real_run(importer):
    rows = [
        ["C1", "Acme", "info@acme.com", "", "US", "Customer", T1],
        ["C2", "Acme again", "INFO@ACME.com", "", "US", "Customer", T1],
        ["C3", "Bad", "nope", "", "US", "Lead", T1],
    ]
    before = snapshot() | {"runs": SyncRun.objects.count()}
    preview = importer.crm_customers(rows, "--dry-run")
    assert "DRY RUN" in preview
    assert snapshot() | {"runs": SyncRun.objects.count()} == before
    real = importer.crm_customers(rows)
    assert {k: v for k, v in counts(preview).items()} == counts(real)


def test_unreadable_file_is_an_error_and_writes_nothing(importer, tmp_path):
    mapping = importer.mapping({"external_id": "id", "fields": {"n": "name"}})
    with pytest.raises(CommandError, match="no such file"):
        call_command(
            "import_records",
            str(tmp_path / "missing.csv"),
            "--system",
            "crm",
            "--entity",
            "customer",
            "--mapping",
            str(mapping),
        )
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(CommandError, match="empty"):
        call_command(
            "import_records",
            str(empty),
            "--system",
            "crm",
            "--entity",
            "customer",
            "--mapping",
            str(mapping),
        )
    assert not SyncRun.objects.exists() and not InboundRecord.objects.exists()


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"fields": {"n": "name"}}, "external_id"),
        ({"external_id": "id", "fields": {"n": "nickname"}}, "not canonical fields of customer"),
        ({"external_id": "id", "fields": {}}, '"fields"'),
        ({"external_id": "id", "fields": {"n": "name"}, "refs": {"invoice": "x"}}, "refs"),
    ],
)
def test_bad_mapping_is_a_clear_error(importer, mapping, message):
    path = importer.write_csv(["id", "n"], [["1", "x"]])
    with pytest.raises(CommandError, match=message):
        importer.run("crm", "customer", mapping, path)


def test_malformed_mapping_json(importer, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    path = importer.write_csv(["id", "n"], [["1", "x"]])
    with pytest.raises(CommandError, match="not valid JSON"):
        call_command(
            "import_records",
            str(path),
            "--system",
            "crm",
            "--entity",
            "customer",
            "--mapping",
            str(bad),
        )


def test_poisoned_record_is_isolated(importer, monkeypatch):
    real = apply_service.records_apply

    def poisoned(*, system, entity, items, **kwargs):
        if any(i.external_id == "C2" for i in items):
            raise RuntimeError("boom")
        return real(system=system, entity=entity, items=items, **kwargs)

    monkeypatch.setattr("integrations.pipeline.process.records_apply", poisoned)
    out = importer.crm_customers(
        [
            ["C1", "Acme", "info@acme.com", "", "US", "Customer", T1],
            ["C2", "Poison", "p@poison.com", "", "US", "Customer", T1],
            ["C3", "Globex", "k@globex.de", "", "DE", "Lead", T1],
        ]
    )
    c = counts(out)
    assert (c["created"], c["failed"]) == (2, 1)
    assert "could not be applied: boom" in InboundRecord.objects.get(external_id="C2").error


def test_pending_records_are_picked_up_by_the_sweep(importer, monkeypatch):
    """A record landed by an importer that died before processing is not lost."""

    def crash(**kwargs):
        raise SystemExit("killed")

    monkeypatch.setattr("integrations.services.records_process", crash)
    with pytest.raises(SystemExit):
        importer.crm_customers([["C1", "Acme", "info@acme.com", "", "US", "Customer", T1]])
    monkeypatch.undo()
    record = InboundRecord.objects.get()
    assert record.status == "pending" and not Customer.objects.exists()
    from integrations.tasks import process_pending_records

    result = process_pending_records.apply(kwargs={}).get()
    assert result["read"] == 0  # still inside the grace period
    from integrations import services

    summary = services.pending_records_process(older_than_seconds=0)
    assert summary.counts["created"] == 1
    assert Customer.objects.get().name == "Acme"


def test_queries_per_page_do_not_grow_with_rows(importer, settings):
    """Set-based pipeline: lookups per page are independent of its size, writes are bulk.

    SQLite splits bulk statements at its parameter limit, so writes may grow by a few
    statements per hundred rows there; on PostgreSQL each bulk write is one statement.
    """
    settings.CONCORD_PAGE_SIZE = 1000

    def queries_for(n: int, prefix: str) -> tuple[int, int]:
        rows = [
            [f"{prefix}{i}", f"Company {prefix}{i}", f"x{i}@{prefix}{i}.example.org", "US", T1]
            for i in range(n)
        ]
        path = importer.write_csv(["id", "company", "email", "country", "updated"], rows)
        mapping = importer.mapping(
            {
                "external_id": "id",
                "updated_at": "updated",
                "fields": {"company": "name", "email": "email", "country": "country"},
            }
        )
        with CaptureQueriesContext(connection) as ctx:
            call_command(
                "import_records",
                str(path),
                "--system",
                "crm",
                "--entity",
                "customer",
                "--mapping",
                str(mapping),
                stdout=io.StringIO(),
            )
        sqls = [q["sql"] for q in ctx.captured_queries]
        return sum(s.startswith("SELECT") for s in sqls), len(sqls)

    (small_reads, small_total), (large_reads, large_total) = (
        queries_for(10, "a"),
        queries_for(400, "b"),
    )
    assert Customer.objects.count() == 410
    # The second import finds the system instead of creating it (one audit query less).
    assert large_reads <= small_reads, (small_reads, large_reads)
    assert large_total <= small_total + 40, (small_total, large_total)


def test_export_crossref_follows_merges(importer, tmp_path):
    importer.crm_customers(
        [
            ["C1", "Acme", "info@acme.com", "", "US", "Customer", T1],
            ["C2", "Globex", "k@globex.de", "", "DE", "Lead", T1],
        ]
    )
    acme, globex = Customer.objects.get(name="Acme"), Customer.objects.get(name="Globex")
    Customer.objects.filter(pk=globex.pk).update(status="merged", merged_into=acme)
    out_file = tmp_path / "xref.csv"
    call_command("export_crossref", "--out", str(out_file), stderr=io.StringIO())
    lines = out_file.read_text().splitlines()
    assert lines[0] == "system,entity,external_id,customer_id"
    assert lines[1:] == [f"crm,customer,C1,{acme.pk}", f"crm,customer,C2,{acme.pk}"]


def test_mapping_value_maps_and_nested_paths(importer):
    mapping = {
        "external_id": "id",
        "updated_at": "updated",
        "fields": {
            "properties.name": "name",
            "properties.stage": "lifecycle_stage",
            "properties.contact.email": "email",
        },
        "values": {"lifecycle_stage": {"marketingqualifiedlead": "lead"}},
    }
    importer.run(
        "hubspot",
        "customer",
        mapping,
        importer.write_jsonl(
            [
                {
                    "id": 7,
                    "updated": 1767261600,
                    "properties": {
                        "name": "Acme",
                        "stage": "MarketingQualifiedLead",
                        "contact": {"email": "a@acme.com"},
                    },
                },
            ]
        ),
    )
    acme = Customer.objects.get()
    assert (acme.lifecycle_stage, acme.email) == ("lead", "a@acme.com")
    assert acme.external_refs.get().system.kind == "crm"
    assert json.loads(json.dumps(InboundRecord.objects.get().payload))["id"] == 7
