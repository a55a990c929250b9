"""Whole-population resolution: clustering guards, NotDuplicate, evaluation. No database."""

import numpy as np
import pytest

from customers.identity.batch import resolve_population
from customers.identity.cluster import (
    CannotLink,
    Thresholds,
    cluster_pairs,
    connected_components,
    decide,
)
from customers.identity.evaluation import (
    deterministic_baseline,
    generate_world,
    pairwise_metrics,
)
from customers.identity.model import dob_compatible, train


@pytest.fixture(scope="module")
def model():
    return train(generate_world(4000, seed=1, organization_share=0.2).records, seed=1)


def person(rid, first, last, **extra):
    return {"id": rid, "kind": "person", "first_name": first, "last_name": last, **extra}


def together(result, a, b):
    return any(a in c and b in c for c in result.clusters)


def suggested(result, a, b):
    return any({p.left, p.right} == {a, b} for p in result.review_pairs)


def test_duplicates_link_and_strangers_do_not(model):
    records = [
        person("crm:1", "Robert", "Quillfeather", email="rq@gmail.com", birth_date="1971-02-03"),
        person("erp:1", "Bob", "Quillfeather", email="RQ@gmail.com", phone="+447700900001"),
        person("shop:1", "Anna", "Marchetti", email="anna.m@yahoo.com", birth_date="1990-01-01"),
    ]
    result = resolve_population(iter(records), model=model)  # any iterable will do
    assert together(result, "crm:1", "erp:1")
    assert not together(result, "crm:1", "shop:1")
    assert len(result.labels) == 3 and result.labels[0] == result.labels[1]


def test_cannot_link_rules_stop_a_transitive_merge(model):
    # A=B by e-mail, B=C by phone and name; A and C have different national ids and birth
    # dates, so the chain must break.
    records = [
        person("a", "Jonas", "Ferreira", email="jf@web.de", national_id="111222333",
               birth_date="1980-05-17"),
        person("b", "Jonas", "Ferreira", email="jf@web.de", phone="+4915112345678"),
        person("c", "Jonas", "Ferreira", phone="+4915112345678", national_id="999888777",
               birth_date="1962-11-30"),
    ]  # fmt: skip
    result = resolve_population(records, model=model)
    assert not together(result, "a", "c")
    assert together(result, "a", "b") or together(result, "b", "c")


def test_cluster_size_is_capped_and_refusals_go_to_review():
    n = 10
    ia, ib = np.arange(n - 1), np.arange(1, n)  # a chain of strong links
    result = cluster_pairs(
        n, ia, ib, np.full(n - 1, 0.999), thresholds=Thresholds(0.9, 0.5), max_cluster_size=3
    )
    _, sizes = np.unique(result.labels, return_counts=True)
    assert sizes.max() == 3
    assert "size_cap" in result.review[3]
    assert result.stats["links_refused"]["size_cap"] >= 1


def test_cannot_link_pairs_and_ids_split_components():
    # 0-1-2-3 all strongly linked; 0 and 3 have different tax ids, 1 and 2 must stay apart.
    rules = CannotLink(
        exact={"tax_id": np.array([7, -1, -1, 8])}, pairs=(np.array([1]), np.array([2]))
    )
    result = cluster_pairs(
        4,
        np.array([0, 1, 2]),
        np.array([1, 2, 3]),
        np.array([0.99, 0.999, 0.98]),
        thresholds=Thresholds(0.9, 0.5),
        rules=rules,
    )
    labels = result.labels
    assert labels[1] != labels[2] and labels[0] != labels[3]
    assert labels[0] == labels[1] and labels[2] == labels[3]


def test_a_shared_role_mailbox_or_switchboard_does_not_chain_people(model):
    people = [
        person(f"crm:{k}", first, last, email="info@acme-widgets.com", phone="+15417543010",
               birth_date=f"19{60 + k}-0{1 + k % 9}-1{k % 9}")
        for k, (first, last) in enumerate(
            [("Ann", "Baker"), ("Carl", "Dunn"), ("Eve", "Fox"), ("Gus", "Hale"),
             ("Ida", "Jones"), ("Ken", "Long"), ("Lea", "Moss"), ("Max", "Nash"),
             ("Ned", "Orr"), ("Ona", "Park")]
        )
    ]  # fmt: skip
    result = resolve_population(people, model=model)
    assert len(result.clusters) == len(people)
    suppressed = result.stats["kinds"]["person"]["shared_keys_examples"]
    assert {"field": "phone", "value": "+15417543010"} in [
        {"field": s["field"], "value": s["value"]} for s in suppressed
    ]


def test_not_duplicate_pairs_are_never_linked_nor_suggested(model):
    records = [
        person("a", "Priya", "Raghunathan", email="priya.r@gmail.com", birth_date="1985-07-04"),
        person("b", "Priya", "Raghunathan", email="priya.r@gmail.com", phone="+447700900555"),
        person("c", "Priya", "Raghunathan", phone="+447700900555", birth_date="1985-07-04"),
    ]
    linked = resolve_population(records, model=model)
    assert together(linked, "a", "b") and together(linked, "a", "c")

    kept_apart = resolve_population(records, model=model, not_duplicate={("a", "c")})
    assert not together(kept_apart, "a", "c")
    assert not suggested(kept_apart, "a", "c")
    only_pair = resolve_population(records[:2], model=model, not_duplicate={("b", "a")})
    assert not together(only_pair, "a", "b") and not suggested(only_pair, "a", "b")


def test_thresholds_are_per_kind(model):
    records = [
        person("a", "Tomasz", "Wieczorek", email="tw@onet.pl", birth_date="1979-03-02"),
        person("b", "Tomasz", "Wieczorek", email="tw@onet.pl"),
    ]
    assert together(resolve_population(records, model=model), "a", "b")
    strict = {"person": Thresholds(upper=1.0, lower=0.0)}
    result = resolve_population(records, model=model, thresholds=strict)
    assert not together(result, "a", "b") and suggested(result, "a", "b")
    assert decide(0.99, "person") == "link"
    assert decide(0.5, "person", {"person": Thresholds(0.9, 0.3)}) == "review"
    assert decide(0.1, "organization") == "new"
    assert decide(0.999, "person", auto_link=False) == "review"
    assert decide(0.999, "person", cannot_link=True) == "new"
    with pytest.raises(ValueError):
        Thresholds(upper=0.2, lower=0.5)


def test_same_company_name_in_other_countries_is_another_company(model):
    records = [
        {"id": "1", "kind": "organization", "name": "Globex GmbH", "tax_id": "DE136695976",
         "country": "DE", "website": "globex.de"},
        {"id": "2", "kind": "organization", "name": "GLOBEX GMBH", "country": "DE",
         "website": "https://www.globex.de/", "phone": "+49301234567"},
        {"id": "3", "kind": "organization", "name": "Globex Inc.", "tax_id": "US123456789",
         "country": "US", "website": "globex.com"},
    ]  # fmt: skip
    result = resolve_population(records, model=model)
    assert together(result, "1", "2")
    assert not together(result, "1", "3") and not together(result, "2", "3")


def test_birth_date_compatibility():
    assert dob_compatible(19800517, 19800517)
    assert dob_compatible(19800507, 19800705)  # day and month transposed
    assert dob_compatible(19800517, 19810517)  # year typo
    assert dob_compatible(19691231, 19701231)  # year off by one
    assert dob_compatible(0, 19701231)  # unknown
    assert not dob_compatible(19800517, 19620330)


def test_pairwise_metrics_and_components():
    truth = np.array([0, 0, 0, 1, 1, 2])
    perfect = pairwise_metrics(truth.copy(), truth)
    assert (perfect.precision, perfect.recall, perfect.f1) == (1.0, 1.0, 1.0)
    clusters = [[0, 1], [2], [3, 4, 5]]  # misses 0-2 and 1-2, wrongly adds 3-5 and 4-5
    m = pairwise_metrics(clusters, truth)
    assert (m.true_positives, m.predicted_pairs, m.true_pairs) == (2, 4, 4)
    assert m.precision == 0.5 and m.recall == 0.5
    labels = connected_components(6, np.array([0, 1, 4]), np.array([1, 2, 5]))
    assert labels.tolist() == [0, 0, 0, 3, 4, 4]


def test_generator_is_deterministic_per_seed():
    a, b = generate_world(300, seed=5), generate_world(300, seed=5)
    assert a.records == b.records and (a.truth == b.truth).all()
    assert generate_world(300, seed=6).records != a.records
    assert all("id" in r and "kind" in r and "_entity" not in r for r in a.records)


def test_model_beats_the_deterministic_baseline_with_high_precision():
    world = generate_world(6000, seed=3, organization_share=0.1)
    result = resolve_population(world.records, seed=3)
    ours = pairwise_metrics(result.labels, world.truth)
    baseline = pairwise_metrics(deterministic_baseline(world.records), world.truth)
    assert ours.precision >= 0.98
    assert ours.f1 > baseline.f1 + 0.1
    assert result.stats["kinds"]["person"]["blocking"]["pairs"] < 10 * len(world.records)
    assert result.stats["kinds"]["person"]["clustering"]["largest_cluster"] <= 25
