"""The matcher's thresholds per kind: the settings page, its service (validated, atomic,
audited), the suggestions learned from the stewards' labels, and that a change reaches
the matcher (``thresholds_current`` and ``proposals_for``).

Every authenticated request starts with the same four queries:

    1. the session          2. the user
    3. the user's own permissions    4. the permissions of the user's groups

and every full page ends with the user's groups (the role in the header).
"""

from __future__ import annotations

import itertools
import re

import pytest
from auditlog.models import LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.test import Client

from customers.errors import ApplicationError
from customers.identity.cluster import Thresholds
from customers.models import Customer, MatchCandidate, MatchSettings, NotDuplicate
from customers.services import resolve
from customers.services.resolve import (
    blocking_keys_write,
    match_record,
    model_train,
    proposals_for,
    thresholds_current,
)
from customers.services.stewardship import match_settings_update
from customers.stewardship_selectors import (
    SUGGEST_MIN_LABELS,
    Label,
    kind_suggestion,
    suggest_thresholds,
    threshold_labels,
    unscored_rejections,
)
from tests.customers.test_resolve import load_world

pytestmark = pytest.mark.django_db

PAGE = "/customers/match-settings/"
SAVE = {kind: f"/customers/match-settings/{kind}/" for kind in ("person", "organization")}
APPLY = {kind: f"/customers/match-settings/{kind}/apply/" for kind in ("person", "organization")}
READ_ONLY = [
    "customers.view_customer",
    "customers.view_matchcandidate",
    "customers.view_matchsettings",
]


# --- helpers ---------------------------------------------------------------------------


def html(response) -> str:
    return response.content.decode()


def text(response) -> str:
    content = re.sub(r"<[^>]+>", " ", html(response))
    return " ".join(content.replace("\xa0", " ").split())


def follow(client: Client, response) -> str:
    assert response.status_code == 302, response.status_code
    return text(client.get(response["Location"]))


@pytest.fixture
def login(client: Client, make_user):
    def login_as(role: str) -> Client:
        client.force_login(reader_user() if role == "reader" else make_user(role))
        return client

    return login_as


def reader_user() -> User:
    """A read-only role: sees the queue and the thresholds, changes neither."""
    group, _ = Group.objects.get_or_create(name="threshold-reader")
    for dotted in READ_ONLY:
        app_label, codename = dotted.split(".")
        group.permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    user = User.objects.create_user(username="reader-user", password="pw")
    user.groups.add(group)
    return user


def settings_of(kind: str) -> tuple[float, float, int]:
    row = MatchSettings.objects.get(kind=kind)
    return row.upper, row.lower, row.max_key_customers


def form_data(kind: str, upper, lower, guard=25) -> dict[str, object]:
    return {f"{kind}-upper": upper, f"{kind}-lower": lower, f"{kind}-max_key_customers": guard}


_serial = itertools.count()


def labelled_pairs(kind: str, labels: list[tuple[float, str]]) -> list[MatchCandidate]:
    """One candidate per (probability, status) between two fresh customers of ``kind``;
    status "not_same" is an auto-link a steward undid (the candidate stays auto-linked, the
    pair is remembered as not the same)."""
    customers = Customer.objects.bulk_create(
        Customer(kind=kind, name=f"{kind} {next(_serial)}") for _ in range(2 * len(labels))
    )
    candidates = []
    for (probability, status), (a, b) in zip(
        labels, zip(customers[::2], customers[1::2], strict=True), strict=True
    ):
        candidates.append(
            MatchCandidate(
                low=a,
                high=b,
                probability=probability,
                match_weight=1.0,
                evidence=[],
                status="auto_linked" if status == "not_same" else status,
            )
        )
        if status in ("rejected", "not_same"):
            NotDuplicate.objects.create(low=a, high=b, reason="test")
    return MatchCandidate.objects.bulk_create(candidates)


def steps(start: float, count: int, step: float = 0.001) -> list[float]:
    return [round(start + n * step, 6) for n in range(count)]


# --- the suggestion, as pure math ---------------------------------------------------------


def labels_of(pairs: list[tuple[float, bool]]) -> list[Label]:
    return [Label(p, match) for p, match in pairs]


def test_no_labels_suggest_nothing():
    s = suggest_thresholds([], upper=0.99, lower=0.8)
    assert (s.labels, s.matches, s.suggested_upper, s.suggested_lower) == (0, 0, None, None)
    assert s.at_upper.labels == 0 and s.at_upper.precision is None
    assert "No labelled pairs yet" in s.upper_note and "No labelled pairs yet" in s.lower_note
    assert not s.applicable
    assert (s.new_upper, s.new_lower) == (0.99, 0.8)


def test_too_few_labels_say_so_instead_of_guessing():
    labels = labels_of([(p, True) for p in steps(0.90, SUGGEST_MIN_LABELS - 1)])
    s = suggest_thresholds(labels, upper=0.99, lower=0.8)
    assert s.suggested_upper is None and s.suggested_lower is None
    assert (
        s.upper_note
        == "Too few labels: 19 labelled pairs, 20 needed before suggesting a threshold."
    )
    assert not s.applicable


def test_all_positives_suggest_the_lowest_labelled_score_as_upper_and_no_lower():
    probabilities = steps(0.85, 30)  # 0.850 … 0.879, all approved
    s = suggest_thresholds(labels_of([(p, True) for p in probabilities]), upper=0.99, lower=0.8)
    assert s.suggested_upper.threshold == 0.85
    assert (s.suggested_upper.labels, s.suggested_upper.matches) == (30, 30)
    assert s.suggested_upper.precision == 1.0
    assert s.suggested_lower is None
    assert "still finds duplicates" in s.lower_note
    assert s.applicable and (s.new_upper, s.new_lower) == (0.85, 0.8)


def test_all_negatives_suggest_raising_the_lower_threshold_only():
    probabilities = steps(0.80, 30)  # 0.800 … 0.829, all rejected
    s = suggest_thresholds(labels_of([(p, False) for p in probabilities]), upper=0.99, lower=0.8)
    assert s.suggested_upper is None
    assert "do not support auto-linking lower" in s.upper_note
    # The highest cut with labels below it: every one of the 29 below 0.829 was rejected.
    assert s.suggested_lower.threshold == 0.829
    assert (s.suggested_lower.labels, s.suggested_lower.non_matches) == (29, 29)
    assert s.suggested_lower.rejected_share == 1.0
    assert s.applicable and (s.new_upper, s.new_lower) == (0.99, 0.829)


def test_a_mixed_queue_suggests_both_cuts_with_their_evidence():
    # 30 rejections at 0.80-0.829, then 100 approvals at 0.90-0.999 with one rejection at
    # 0.95 among them; 2 approvals already above the current upper threshold.
    labels = [(p, False) for p in steps(0.80, 30)]
    labels += [(p, True) for p in steps(0.90, 100)]
    labels += [(0.9505, False)]
    s = suggest_thresholds(labels_of(labels), upper=0.99, lower=0.8)
    # At 0.90: 100 approvals out of 101 labels at or above = 99.0%: the lowest cut that
    # reaches the target (0.829 and below bring the rejections in).
    assert s.suggested_upper.threshold == 0.90
    assert (s.suggested_upper.labels, s.suggested_upper.matches) == (101, 100)
    assert s.suggested_upper.precision_text == "99%"
    # Cuts up to 0.901 have ≥ 95% rejections below them, but the lower threshold must sit
    # below the suggested upper one (0.90): the highest labelled cut there is 0.829, with
    # the 29 rejections under it.
    assert s.suggested_lower is not None and s.suggested_lower.threshold == 0.829
    assert s.at_upper.labels == 10 and s.at_upper.precision == 1.0  # 0.990 … 0.999
    assert s.applicable and (s.new_upper, s.new_lower) == (0.90, 0.829)


def test_precision_exactly_at_the_target_counts():
    labels = [(0.95, True)] * 99 + [(0.96, False)]
    s = suggest_thresholds(labels_of(labels), upper=0.99, lower=0.8)
    assert s.suggested_upper.threshold == 0.95
    assert (s.suggested_upper.labels, s.suggested_upper.matches) == (100, 99)


def test_ties_are_never_split():
    # 30 approvals and one rejection all at 0.95: a cut at 0.95 takes all 31 (96.8%).
    tied = [(0.95, True)] * 30 + [(0.95, False)]
    s = suggest_thresholds(labels_of(tied), upper=0.99, lower=0.8)
    assert s.suggested_upper is None
    # 25 approvals at 0.97 on top: the cut stops there, above the tie.
    s = suggest_thresholds(labels_of([*tied, *[(0.97, True)] * 25]), upper=0.99, lower=0.8)
    assert s.suggested_upper.threshold == 0.97
    assert (s.suggested_upper.labels, s.suggested_upper.matches) == (25, 25)
    # Counted labels are the same as repeated ones.
    counted = [Label(0.95, True, 30), Label(0.95, False, 1), Label(0.97, True, 25)]
    assert suggest_thresholds(counted, upper=0.99, lower=0.8) == s


def test_a_lower_cut_that_is_not_below_the_upper_threshold_is_dropped():
    labels = [(p, False) for p in steps(0.90, 30)]  # all rejected, up to 0.929
    s = suggest_thresholds(labels_of(labels), upper=0.92, lower=0.8)
    assert s.suggested_lower is None
    assert "is not below the current upper threshold (92%)" in s.lower_note
    assert not s.applicable


def test_an_upper_cut_below_the_lower_threshold_cannot_be_applied():
    labels = [(p, True) for p in steps(0.60, 25)]
    s = suggest_thresholds(labels_of(labels), upper=0.99, lower=0.8)
    assert s.suggested_upper.threshold == 0.60
    assert "lower that one first" in s.conflict
    assert not s.applicable


def test_precision_at_the_current_upper_threshold_flags_bad_auto_links():
    labels = [(0.995, True)] * 18 + [(0.996, False)] * 2
    s = suggest_thresholds(labels_of(labels), upper=0.99, lower=0.8)
    assert (s.at_upper.labels, s.at_upper.matches) == (20, 18)
    assert s.at_upper.precision_text == "90%"
    assert s.at_upper_low
    assert s.suggested_upper is None


# --- the labels, from the database --------------------------------------------------------


def test_labels_are_steward_decisions_with_their_stored_probability():
    labelled_pairs(
        "person",
        [
            (0.91, "merged"),  # approved
            (0.92, "rejected"),  # rejected
            (0.999, "not_same"),  # auto-linked, undone by a steward
            (0.998, "auto_linked"),  # auto-linked, never looked at: no label
            (0.85, "pending"),
            (0.86, "deferred"),
        ],
    )
    labelled_pairs("organization", [(0.95, "merged"), (0.95, "merged")])
    a, b = Customer.objects.bulk_create(
        [Customer(kind="person", name="x"), Customer(kind="person", name="y")]
    )
    NotDuplicate.objects.create(low=a, high=b)  # an ad-hoc rejection: no score
    labels = threshold_labels()
    assert sorted(labels["person"], key=lambda label: label.probability) == [
        Label(0.91, True, 1),
        Label(0.92, False, 1),
        Label(0.999, False, 1),
    ]
    assert labels["organization"] == [Label(0.95, True, 2)]
    assert threshold_labels("organization").keys() == {"organization"}
    assert unscored_rejections() == {"person": 1}


# --- the page -----------------------------------------------------------------------------


def test_anonymous_is_sent_to_login(client):
    for response in (client.get(PAGE), client.post(SAVE["person"], form_data("person", 0.9, 0.5))):
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")
    assert settings_of("person") == (0.99, 0.8, 25)


@pytest.mark.parametrize("role", ["sales", "service", "finance", "partner"])
def test_other_roles_get_403(login, role):
    client = login(role)
    assert client.get(PAGE).status_code == 403
    assert client.post(SAVE["person"], form_data("person", 0.9, 0.5)).status_code == 403
    assert client.post(APPLY["person"], {"upper": 0.9, "lower": 0.5}).status_code == 403
    # 403 before any lookup: kinds that do not exist look the same as those that do.
    assert client.post("/customers/match-settings/robot/", {}).status_code == 403
    assert settings_of("person") == (0.99, 0.8, 25)


def test_read_only_role_sees_the_thresholds_but_cannot_post(login):
    labelled_pairs("person", [(p, "merged") for p in steps(0.90, 25)])
    client = login("reader")
    response = client.get(PAGE)
    assert response.status_code == 200
    words = text(response)
    assert "Your role may look at the thresholds but not change them." in words
    assert "Upper threshold: 90%" in words  # the suggestion is shown …
    assert "Apply suggestion" not in words and 'name="person-upper"' not in html(response)
    assert client.post(SAVE["person"], form_data("person", 0.9, 0.5)).status_code == 403
    assert client.post(APPLY["person"], {"upper": "0.9", "lower": "0.8"}).status_code == 403
    assert settings_of("person") == (0.99, 0.8, 25)
    assert not LogEntry.objects.get_for_model(MatchSettings).exists()
    # The queue links to the page for whoever may see it.
    assert f'href="{PAGE}"' in html(client.get("/customers/duplicates/"))


def test_unknown_kind_is_404(login):
    client = login("steward")
    assert client.post("/customers/match-settings/robot/", {}).status_code == 404
    assert client.post("/customers/match-settings/robot/apply/", {}).status_code == 404


def test_page_shows_thresholds_suggestions_and_history_with_fixed_queries(
    login, make_user, django_assert_max_num_queries
):
    labelled_pairs("person", [(p, "rejected") for p in steps(0.80, 30)])
    labelled_pairs("person", [(p, "merged") for p in steps(0.90, 60)])
    labelled_pairs("organization", [(0.93, "merged")] * 5)
    admin = make_user("admin")
    for n in range(5):
        match_settings_update(
            kind="organization", upper=0.99, lower=0.5 + n / 100, max_key_customers=25, user=admin
        )
    client = login("steward")
    # 1-4 session, user, permissions · 5 the thresholds of both kinds with their editors ·
    # 6 the labels grouped by kind, probability and decision · 7 "not the same" pairs without
    # a score · 8 the content type of MatchSettings (cached after the first request) ·
    # 9 its log entries with their actors · 10 the user's groups (header)
    with django_assert_max_num_queries(10):
        response = client.get(PAGE)
    assert response.status_code == 200
    words = text(response)
    for expected in (
        "Matching settings",
        "Person Defaults of the first migration",
        "Auto-link at 99% or more · review queue from 80% · new customer below 80% · a key "
        "shared by more than 25 customers stops linking.",
        "90 labelled pairs: 60 approved as duplicates, 30 marked not the same.",
        "Upper threshold: 90% (0.9) — 60 of 60 labelled pairs at or above it were duplicates, "
        "precision 100%.",
        "Lower threshold: 82.9% (0.829) — 29 of 29 labelled pairs below it were not the same "
        "(100%).",
        "Organization Last changed by admin-user",
        "5 labelled pairs: 5 approved as duplicates, 0 marked not the same.",
        "Too few labels: 5 labelled pairs, 20 needed before suggesting a threshold.",
        "Apply suggestion",
        "Lower threshold (review) 0.53 → 0.54",
    ):
        assert expected in words, expected
    page = html(response)
    assert page.count("Apply suggestion") == 1  # people only
    assert page.count('name="person-upper"') == 1 and page.count('name="organization-upper"') == 1
    assert words.count("admin-user") >= 5  # one history row per change


def test_post_updates_the_thresholds_and_audits_the_change(login):
    client = login("steward")
    response = client.post(SAVE["person"], form_data("person", "0.97", "0.6", 10))
    assert response.status_code == 302 and response["Location"].endswith("#kind-person")
    words = follow(client, response)
    assert (
        "Person: auto-link at 97% or more, review queue from 60%, keys shared by more than 10 "
        "customers stop linking." in words
    )
    row = MatchSettings.objects.get(kind="person")
    assert (row.upper, row.lower, row.max_key_customers) == (0.97, 0.6, 10)
    assert row.updated_by.username == "steward-user"
    assert settings_of("organization") == (0.99, 0.8, 25)  # the other kind is untouched
    entry = LogEntry.objects.get_for_object(row).get()
    assert entry.actor.username == "steward-user"
    assert entry.changes_dict["upper"] == ["0.99", "0.97"]
    assert entry.changes_dict["lower"] == ["0.8", "0.6"]
    assert entry.changes_dict["max_key_customers"] == ["25", "10"]
    for change in (
        "Upper threshold (auto-link) 0.99 → 0.97",
        "Lower threshold (review) 0.8 → 0.6",
        "Shared-key guard 25 → 10",
    ):
        assert change in words, change
    # The queue shows what is in force now.
    assert "Person: auto-link at 97% or more, review from 60%" in text(
        client.get("/customers/duplicates/")
    )
    # Posting the same values again changes (and audits) nothing.
    again = client.post(SAVE["person"], form_data("person", "0.97", "0.6", 10))
    assert "Person: nothing changed." in follow(client, again)
    assert LogEntry.objects.get_for_object(row).count() == 1


@pytest.mark.parametrize(
    "upper, lower, guard, message",
    [
        ("0.9", "0.9", 25, "The lower threshold must be below the upper threshold"),
        ("0.8", "0.9", 25, "The lower threshold must be below the upper threshold"),
        ("0.9", "0", 25, "The lower threshold must be above 0"),
        ("0.9", "-0.1", 25, "The lower threshold must be above 0"),
        ("1.01", "0.5", 25, "The upper threshold cannot be above 1"),
        ("0.9", "0.5", 1, "The shared-key guard must be at least 2"),
        ("0.9", "0.5", "", "Enter the shared-key guard"),
        ("high", "0.5", 25, "Enter the upper threshold as a number"),
        ("nan", "0.5", 25, "Enter the upper threshold as a number"),
    ],
)
def test_invalid_input_is_rejected_with_a_message_and_changes_nothing(
    login, upper, lower, guard, message
):
    client = login("steward")
    response = client.post(SAVE["person"], form_data("person", upper, lower, guard))
    assert response.status_code == 200
    words = text(response)
    assert "Person: nothing saved. Correct the thresholds below." in words
    assert message in words
    assert 'class="field-error"' in html(response)
    assert settings_of("person") == (0.99, 0.8, 25)
    assert not LogEntry.objects.get_for_model(MatchSettings).exists()


def test_the_service_validates_and_audits_outside_a_request(make_user):
    steward = make_user("steward")
    for kwargs, message in [
        ({"upper": 0.8, "lower": 0.8}, "must be below the upper threshold"),
        ({"upper": 0.9, "lower": 0.0}, "must be above 0"),
        ({"upper": 1.5, "lower": 0.5}, "cannot be above 1"),
        ({"upper": float("nan"), "lower": 0.5}, "must be a number"),
        ({"upper": 0.9, "lower": 0.5, "max_key_customers": 1}, "between 2 and 100,000"),
        ({"upper": 0.9, "lower": 0.5, "max_key_customers": 2.5}, "whole number"),
        ({"upper": 0.9, "lower": 0.5, "kind": "robot"}, "Unknown kind"),
    ]:
        arguments = {"kind": "person", "max_key_customers": 25, "user": steward, **kwargs}
        with pytest.raises(ApplicationError, match=message):
            match_settings_update(**arguments)
    assert settings_of("person") == (0.99, 0.8, 25)
    row = match_settings_update(
        kind="person", upper=1, lower=0.5, max_key_customers=2, user=steward
    )
    assert settings_of("person") == (1.0, 0.5, 2) and row.updated_by == steward
    entry = LogEntry.objects.get_for_object(row).get()
    assert entry.actor == steward  # no request, no middleware: the service names the actor


def test_apply_suggestion_goes_through_the_service(login):
    labelled_pairs("person", [(p, "rejected") for p in steps(0.80, 30)])
    labelled_pairs("person", [(p, "merged") for p in steps(0.90, 60)])
    client = login("steward")
    page = html(client.get(PAGE))
    shown = dict(re.findall(r'<input type="hidden" name="(upper|lower)" value="([^"]+)">', page))
    assert shown == {"upper": "0.9", "lower": "0.829"}
    response = client.post(APPLY["person"], shown)
    words = follow(client, response)
    assert "Suggestion applied. Person: auto-link at 90% or more, review queue from 82.9%" in words
    assert settings_of("person") == (0.9, 0.829, 25)
    entry = LogEntry.objects.get_for_model(MatchSettings).get()
    assert entry.actor.username == "steward-user"
    assert entry.changes_dict["upper"] == ["0.99", "0.9"]
    # Applied: the suggestion is the threshold in force, nothing left to apply.
    assert kind_suggestion(MatchSettings.objects.get(kind="person")).applicable is False
    assert "That is the threshold in force." in words
    assert "Apply suggestion" not in words


def test_apply_refuses_a_stale_or_missing_suggestion(login):
    labelled_pairs("person", [(p, "merged") for p in steps(0.90, 25)])
    client = login("steward")
    # The labels changed since the page showed 0.9: five rejections at the bottom.
    labelled_pairs("person", [(0.901, "rejected")] * 5)
    response = client.post(APPLY["person"], {"upper": "0.9", "lower": "0.8"})
    assert "the suggestion changed since the page was loaded" in follow(client, response)
    assert settings_of("person") == (0.99, 0.8, 25)
    # Organizations have no labels: nothing to apply.
    response = client.post(APPLY["organization"], {"upper": "0.9", "lower": "0.8"})
    assert "Organization: there is no suggestion to apply." in follow(client, response)
    assert settings_of("organization") == (0.99, 0.8, 25)
    assert not LogEntry.objects.get_for_model(MatchSettings).exists()


# --- the matcher follows the thresholds -------------------------------------------------


def test_changed_thresholds_reach_thresholds_current(make_user):
    steward = make_user("steward")
    match_settings_update(
        kind="organization", upper=0.97, lower=0.6, max_key_customers=7, user=steward
    )
    thresholds, guards = thresholds_current()
    assert thresholds["organization"] == Thresholds(upper=0.97, lower=0.6)
    assert thresholds["person"] == Thresholds(upper=0.99, lower=0.8)
    assert guards == {"organization": 7, "person": 25}


def test_changed_thresholds_change_what_the_matcher_proposes(make_user, monkeypatch):
    """One incoming record, three verdicts as a steward moves the thresholds: linked,
    then sent to review, then a new customer."""
    monkeypatch.setitem(resolve._model_cache, "pk", None)  # ids repeat across rolled-back tests
    steward = make_user("steward")
    load_world(200, seed=5)
    model_train()
    blocking_keys_write(customers=Customer.objects.all())
    # An existing person arriving again with a mistyped e-mail: a strong match, not certain.
    record, target, probability = None, None, None
    for row in Customer.objects.filter(kind="person").exclude(email="").values():
        incoming = {**match_record(row), "kind": "person", "email": "x" + row["email"]}
        proposal = proposals_for([incoming])[0]
        if proposal.link_to and proposal.score.probability < 1.0:
            record, target, probability = incoming, proposal.link_to, proposal.score.probability
            break
    assert record is not None, "no linked record below certainty in this world"
    assert probability >= 0.99  # linked at the default upper threshold

    # Raise the upper threshold above its score: the pair goes to the review queue.
    upper = (probability + 1.0) / 2
    match_settings_update(kind="person", upper=upper, lower=0.8, max_key_customers=25, user=steward)
    proposal = proposals_for([record])[0]
    assert proposal.link_to is None
    assert target in [customer_id for customer_id, _ in proposal.review]

    # Raise the lower threshold above it too: a new customer, nothing queued for it.
    lower = (probability + upper) / 2
    match_settings_update(
        kind="person", upper=upper, lower=lower, max_key_customers=25, user=steward
    )
    proposal = proposals_for([record])[0]
    assert proposal.link_to is None
    assert target not in [customer_id for customer_id, _ in proposal.review]

    # Organizations' thresholds do not move people.
    match_settings_update(
        kind="organization", upper=0.5, lower=0.1, max_key_customers=25, user=steward
    )
    assert proposals_for([record])[0].link_to is None
