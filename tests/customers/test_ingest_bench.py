"""The ingest-path benchmark at a tiny size, on the test database (SQLite or PostgreSQL):
the loader writes what the ingest path reads, and the measurement's numbers add up."""

import pytest

from customers.identity import ingest_bench
from customers.identity.blocking import candidate_keys
from customers.identity.rules import identity_keys
from customers.models import Customer, ExternalRef, FieldProvenance, IdentityKey, TrainedModel
from customers.services.resolve import MATCH_FIELDS, match_record
from integrations.bench import update_docs

pytestmark = pytest.mark.django_db

CUSTOMERS, RECORDS, PAGE_RECORDS = 300, 20, 30


@pytest.fixture
def split():
    return ingest_bench.split_world(CUSTOMERS, records=RECORDS, page_records=PAGE_RECORDS, seed=3)


def test_split_holds_out_copies_of_loaded_people_and_people_never_seen(split):
    assert len(split.loaded) == CUSTOMERS
    assert (len(split.single), len(split.alone), len(split.pages)) == (
        RECORDS,
        RECORDS,
        PAGE_RECORDS,
    )
    loaded_people = {r.entity for r in split.loaded}
    incoming = split.single + split.alone + split.pages
    assert len({r.entity for r in incoming}) == len(incoming)  # one record per person
    assert not {r.external_id for r in incoming} & {r.external_id for r in split.loaded}
    for record in incoming:
        assert record.expect == ("duplicate" if record.entity in loaded_people else "new")
    expects = {r.expect for r in incoming}
    assert expects == {"duplicate", "new"}


def test_loader_writes_what_the_ingest_path_reads_and_the_numbers_add_up(split):
    summary = ingest_bench.load(split.loaded, train_sample=None)
    assert summary.customers == Customer.objects.count() == CUSTOMERS
    assert ExternalRef.objects.filter(system__name="crm").count() == CUSTOMERS
    assert TrainedModel.objects.filter(pk=summary.model_id).exists()
    assert FieldProvenance.objects.count() == summary.provenance > CUSTOMERS
    assert summary.checked >= 1
    # Deterministic and blocking keys are exactly what the rules and blocking_keys_write give.
    for customer in Customer.objects.all()[:40]:
        values = {f: getattr(customer, f) for f in ("kind", "email", "phone", "national_id")}
        expected = {
            (t, v) for t, v in identity_keys({k: v for k, v in values.items() if v}, "person")
        }
        stored = set(
            IdentityKey.objects.filter(customer=customer)
            .exclude(key_type="block")
            .values_list("key_type", "value")
        )
        assert stored == expected
        blocks = set(
            IdentityKey.objects.filter(customer=customer, key_type="block").values_list(
                "value", flat=True
            )
        )
        record = match_record({f: getattr(customer, f) for f in MATCH_FIELDS})
        assert blocks == set(candidate_keys(record, "person"))
    assert summary.identity_keys == IdentityKey.objects.exclude(key_type="block").count()
    assert summary.blocking_keys == IdentityKey.objects.filter(key_type="block").count()

    truth = dict(summary.truth)
    result = ingest_bench.measure(split, truth, page_size=20)

    single = result.single
    assert single["records"] == RECORDS
    for stage in ("total", "resolve", "decide", "write", "commit_and_rest"):
        q = single[stage]
        assert 0 <= q["p50"] <= q["p95"] <= q["p99"] <= q["max"], stage
    assert single["resolve"]["p50"] <= single["total"]["p50"]
    assert single["queries_median"] > 0
    for run, records in (("single", split.single), ("pages", split.pages)):
        outcomes = getattr(result, run)["outcomes"]
        counts = outcomes["counts"]
        assert sum(counts.values()) == len(records), run
        assert set(counts) <= {"key", "probabilistic", "created"}, run
        linked = counts.get("key", 0) + counts.get("probabilistic", 0)
        assert outcomes["correct_links"] + outcomes["wrong_links"] == linked
        assert outcomes["review"] <= counts.get("created", 0)
        assert outcomes["missed_in_review"] <= outcomes["missed"]
        duplicates = sum(r.expect == "duplicate" for r in records)
        assert (
            outcomes["correct_links"] + outcomes["missed"] >= duplicates - outcomes["wrong_links"]
        )
        # Links point at the right loaded people far more often than not.
        assert outcomes["correct_links"] >= 0.8 * linked
    # Every record applied is now known by its cross-reference, and each created customer
    # was remembered in the truth.
    applied = {r.external_id for r in split.single + split.pages}
    assert ExternalRef.objects.filter(system__name="shop", external_id__in=applied).count() == len(
        applied
    )
    assert len(truth) == Customer.objects.count()
    pages = result.pages
    assert pages["pages"] == -(-PAGE_RECORDS // 20) and pages["ms_per_record"] > 0
    alone = result.alone
    assert alone["records"] == RECORDS
    assert 0 <= alone["total"]["p50"] <= alone["total"]["p95"] <= alone["total"]["max"]
    assert alone["scored"] <= RECORDS and alone["would_link"] + alone["would_review"] <= RECORDS
    # The benchmark's wrappers are gone afterwards.
    from customers.services import apply, resolve

    assert apply._Batch.decide.__name__ == "decide"
    assert resolve.proposals_for.__name__ == "proposals_for"


def test_percentiles_are_ordered_and_in_milliseconds():
    q = ingest_bench.percentiles([0.001, 0.002, 0.003, 0.010])
    assert q["p50"] == pytest.approx(2.5)
    assert q["p50"] <= q["p95"] <= q["p99"] <= q["max"] == pytest.approx(10.0)
    assert ingest_bench.percentiles([])["p95"] == 0.0


def test_update_docs_replaces_only_its_section(tmp_path):
    path = tmp_path / "benchmarks.md"
    path.write_text("# Benchmarks\n\n## Identity resolution\n\nkept\n\n## Pipeline\n\nalso kept\n")
    title = f"## {ingest_bench.DOCS_SECTION}"
    # The pipeline benchmark's writer, told this section's title.
    update_docs(path, f"{title}\n\nfirst\n", title=ingest_bench.DOCS_SECTION)
    update_docs(path, f"{title}\n\nsecond\n", title=ingest_bench.DOCS_SECTION)
    text = path.read_text()
    assert text.count(title) == 1 and "second" in text and "first" not in text
    assert "kept" in text and "also kept" in text
