"""The data steward's pages: duplicates queue, side-by-side merge, ad-hoc merge, undo,
merge history on the 360 page, and the field-ownership matrix.

Query counts are pinned after creating many rows, with a comment naming each query. Every
authenticated request starts with the same four queries:

    1. the session          2. the user
    3. the user's own permissions    4. the permissions of the user's groups

and every full page ends with the user's groups (the role in the header).
"""

from __future__ import annotations

import re

import pytest
from auditlog.models import LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from customers.errors import ApplicationError
from customers.models import (
    Contact,
    Customer,
    Entity,
    ExternalRef,
    FieldOwnership,
    MatchCandidate,
    MergeRecord,
    NotDuplicate,
    SourceSystem,
    Ticket,
)
from customers.services.candidates import candidate_upsert
from customers.services.merge import customer_merge
from customers.services.stewardship import (
    field_ownership_create,
    field_ownership_update,
    pair_reject,
)
from customers.stewardship_selectors import MINUS
from tests.customers.test_merge import build_customer, db_state, rows_of

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}
EVIDENCE = [
    {"field": "name", "level": "exact", "weight": 6.6, "left": "Acme", "right": "Acme"},
    {"field": "phone", "level": "exact", "weight": 11.5, "left": "+1415", "right": "+1415"},
    {"field": "email", "level": "different", "weight": -4.3, "left": "a@x", "right": "b@y"},
    {"field": "tax_id", "level": "missing", "weight": 0, "left": "", "right": ""},
]
READ_ONLY = [
    "customers.view_customer",
    "customers.view_matchcandidate",
    "customers.view_mergerecord",
    "customers.view_fieldownership",
]


# --- fixtures and helpers ------------------------------------------------------------


@pytest.fixture
def systems(db) -> dict[str, SourceSystem]:
    crm, _ = SourceSystem.objects.get_or_create(
        name="crm", defaults={"label": "CRM", "kind": "crm", "trust_rank": 70}
    )
    erp, _ = SourceSystem.objects.get_or_create(
        name="erp", defaults={"label": "ERP", "kind": "billing", "trust_rank": 80}
    )
    return {"crm": crm, "erp": erp}


@pytest.fixture
def login(client: Client, make_user):
    def login_as(role: str) -> Client:
        if role == "auditor":
            client.force_login(auditor_user())
        else:
            client.force_login(make_user(role))
        return client

    return login_as


def auditor_user() -> User:
    """A read-only stewardship role: sees the queue, merges and the matrix, changes none."""
    group, _ = Group.objects.get_or_create(name="auditor")
    for dotted in READ_ONLY:
        app_label, codename = dotted.split(".")
        group.permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    user = User.objects.create_user(username="auditor-user", password="pw")
    user.groups.add(group)
    return user


def candidate_for(
    a: Customer,
    b: Customer,
    probability: float = 0.97,
    *,
    rule: str = "",
    source: str = "batch",
    evidence: list | None = None,
) -> MatchCandidate:
    candidate = candidate_upsert(
        a_id=a.pk,
        b_id=b.pk,
        probability=probability,
        match_weight=12.5,
        evidence=EVIDENCE if evidence is None else evidence,
        source=source,
        rule=rule,
    )
    assert candidate is not None
    return candidate


@pytest.fixture
def pair(systems) -> tuple[Customer, Customer, MatchCandidate]:
    """Two records of one company, the older from the CRM and ERP, queued for review."""
    one = build_customer(systems, "one", rows=2)
    two = build_customer(systems, "two", rows=3, owner="", website="", email="ap@acme-two.test")
    return one, two, candidate_for(one, two)


def html(response) -> str:
    return response.content.decode()


def text(response) -> str:
    content = re.sub(r"<[^>]+>", " ", html(response))
    return " ".join(content.replace("\xa0", " ").split())


def follow(client: Client, response) -> str:
    assert response.status_code == 302, response.status_code
    return text(client.get(response["Location"]))


def decide_url(candidate: MatchCandidate) -> str:
    return reverse("customers:candidate_decide", args=[candidate.pk])


# --- access ----------------------------------------------------------------------------

PAGES = ["/customers/duplicates/", "/customers/merge/", "/customers/ownership/"]


@pytest.mark.parametrize(
    "url",
    [*PAGES, "/customers/duplicates/1/", "/customers/1/merge-history/", "/customers/ownership/1/"],
)
def test_anonymous_is_redirected_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


@pytest.mark.parametrize("role", ["sales", "service", "finance", "partner"])
def test_other_roles_get_403_on_every_stewardship_endpoint(login, pair, role):
    one, two, candidate = pair
    record = customer_merge(survivor_id=one.pk, merged_id=two.pk)
    cell = FieldOwnership.objects.get(entity="customer", field="*")
    client = login(role)
    gets = [
        *PAGES,
        reverse("customers:candidate", args=[candidate.pk]),
        f"/customers/merge/?a={one.pk}&b={two.pk}",
        reverse("customers:merge_history", args=[one.pk]),
        reverse("customers:ownership_cell", args=[cell.pk]),
        reverse("customers:ownership_history", args=[cell.pk]),
        reverse("customers:ownership_edit", args=[cell.pk]),
    ]
    for url in gets:
        assert client.get(url, headers=HTMX).status_code == 403, url
    posts = [
        reverse("customers:duplicates_bulk_approve"),
        reverse("customers:candidate_preview", args=[candidate.pk]),
        decide_url(candidate),
        reverse("customers:merge_preview"),
        reverse("customers:merge_decide"),
        reverse("customers:merge_undo", args=[record.pk]),
        reverse("customers:ownership_edit", args=[cell.pk]),
        reverse("customers:ownership_add"),
    ]
    for url in posts:
        data = {"a": one.pk, "b": two.pk, "survivor": one.pk, "decision": "merge"}
        assert client.post(url, data).status_code == 403, url
    record.refresh_from_db()
    assert record.undone_at is None
    assert MergeRecord.objects.count() == 1


@pytest.mark.parametrize(
    "method, name",
    [
        ("get", "customers:candidate"),
        ("post", "customers:candidate_preview"),
        ("post", "customers:candidate_decide"),
        ("post", "customers:merge_undo"),
        ("get", "customers:merge_history"),
        ("get", "customers:ownership_cell"),
        ("get", "customers:ownership_edit"),
        ("post", "customers:ownership_edit"),
        ("get", "customers:ownership_history"),
    ],
)
def test_unknown_ids_are_404(login, method, name):
    client = login("steward")
    response = getattr(client, method)(reverse(name, args=[987654]), headers=HTMX)
    assert response.status_code == 404


def test_unknown_customer_in_an_adhoc_pair_is_404(login, pair):
    one, _, _ = pair
    client = login("steward")
    assert client.get("/customers/merge/", {"a": one.pk, "b": 987654}).status_code == 404
    data = {"a": one.pk, "b": 987654, "survivor": one.pk, "decision": "merge"}
    assert client.post(reverse("customers:merge_decide"), data).status_code == 404
    assert client.post(reverse("customers:merge_preview"), data).status_code == 404


def test_read_only_role_sees_the_pages_but_every_write_is_403(login, pair):
    one, two, candidate = pair
    record = customer_merge(survivor_id=one.pk, merged_id=two.pk)
    cell = FieldOwnership.objects.get(entity="customer", field="*")
    client = login("auditor")
    for url in [
        *PAGES,
        reverse("customers:candidate", args=[candidate.pk]),
        reverse("customers:merge_history", args=[one.pk]),
        reverse("customers:ownership_history", args=[cell.pk]),
    ]:
        assert client.get(url).status_code == 200, url
    page = html(client.get(reverse("customers:candidate", args=[candidate.pk])))
    assert 'value="merge"' not in page and "may look at this pair but not decide" in page
    assert "Undo merge" not in html(client.get(reverse("customers:merge_history", args=[one.pk])))
    assert "Edit</button>" not in html(client.get("/customers/ownership/"))

    data = {"survivor": one.pk, "decision": "reject", "a": one.pk, "b": two.pk}
    assert client.post(decide_url(candidate), data).status_code == 403
    assert client.post(reverse("customers:merge_decide"), data).status_code == 403
    assert client.post(reverse("customers:merge_undo", args=[record.pk])).status_code == 403
    assert client.post(reverse("customers:duplicates_bulk_approve")).status_code == 403
    edit = reverse("customers:ownership_edit", args=[cell.pk])
    assert client.get(edit, headers=HTMX).status_code == 403
    assert client.post(edit, {f"cell{cell.pk}-direction": "none"}).status_code == 403
    assert client.post(reverse("customers:ownership_add")).status_code == 403
    record.refresh_from_db()
    assert record.undone_at is None
    assert not NotDuplicate.objects.exists()


def test_nav_links_follow_permissions(login):
    steward = html(login("steward").get("/customers/"))
    assert 'href="/customers/duplicates/"' in steward
    assert 'href="/customers/ownership/"' in steward
    sales = html(login("sales").get("/customers/"))
    assert "/customers/duplicates/" not in sales and "/customers/ownership/" not in sales


# --- the duplicates queue --------------------------------------------------------------


def test_queue_shows_pairs_with_systems_score_and_evidence(login, pair):
    one, two, candidate = pair
    response = login("steward").get("/customers/duplicates/")
    page, words = html(response), text(response)
    assert response.status_code == 200
    for expected in ("Acme one", "Acme two", "97.0%", "weight 12.5", "Batch", "Model"):
        assert expected in words, expected
    assert f'href="/customers/{one.pk}/"' in page and f'href="/customers/{two.pk}/"' in page
    # The systems of each customer
    assert page.count('<span class="sys">CRM</span><span class="sys">ERP</span>') == 2
    assert '<span class="score-bar"><span class="hi" style="width: 97%">' in page
    assert re.search(r'class="ev ev-agree"[^>]*>Name <span class="ev-level">exact', page)
    assert 'class="ev ev-agree"' in page and "+11.5" in words
    assert re.search(r'class="ev ev-disagree"[^>]*>E-mail <span class="ev-level">different', page)
    assert f"{MINUS}4.3" in words
    assert "Tax ID" not in words  # missing on a side: no evidence, not shown in the queue
    assert f'href="/customers/duplicates/{candidate.pk}/?next=' in page


def test_queue_orders_by_probability_then_by_rows_at_stake(login, systems):
    small = [build_customer(systems, f"s{i}", rows=1) for i in range(2)]
    big = [build_customer(systems, f"b{i}", rows=4) for i in range(2)]
    best = [build_customer(systems, f"t{i}", rows=1) for i in range(2)]
    candidate_for(*small, 0.9)
    candidate_for(*big, 0.9)
    candidate_for(*best, 0.99)
    response = login("steward").get("/customers/duplicates/")
    page = html(response)
    order = [page.index(f">Acme {tag}0<") for tag in ("t", "b", "s")]
    assert order == sorted(order)
    assert "24 rows" in text(response) and "6 rows" in text(response)


def test_queue_filters(login, systems):
    crm_only = SourceSystem.objects.create(name="hubspot", label="HubSpot", kind="crm")
    people = [build_customer(systems, f"p{i}", rows=1, kind="person") for i in range(2)]
    orgs = [build_customer(systems, f"o{i}", rows=1) for i in range(4)]
    candidate_for(*people, 0.95)
    candidate_for(orgs[0], orgs[1], 0.6)
    deferred = candidate_for(orgs[2], orgs[3], 0.8)
    MatchCandidate.objects.filter(pk=deferred.pk).update(status="deferred")
    ExternalRef.objects.create(
        system=crm_only,
        entity=Entity.CUSTOMER,
        external_id="hs-1",
        object_id=orgs[1].pk,
        customer=orgs[1],
    )
    client = login("steward")

    def shown(**params) -> set[str]:
        page = text(client.get("/customers/duplicates/", params, headers=HTMX))
        return set(re.findall(r"Acme ([po]\d)", page))

    assert shown() == {"p0", "p1", "o0", "o1"}
    assert shown(kind="person") == {"p0", "p1"}
    assert shown(kind="organization") == {"o0", "o1"}
    assert shown(min_score="90") == {"p0", "p1"}
    assert shown(max_score="70") == {"o0", "o1"}
    assert shown(min_score="70", max_score="99") == {"p0", "p1"}
    assert shown(system=str(crm_only.pk)) == {"o0", "o1"}
    assert shown(status="deferred") == {"o2", "o3"}
    assert shown(status="decided") == set()
    assert shown(min_score="oops") == {"p0", "p1", "o0", "o1"}  # a bad value filters nothing
    assert "matching the filter" in text(client.get("/customers/duplicates/", {"kind": "person"}))


def test_queue_with_htmx_renders_only_the_results(login, pair):
    response = login("steward").get("/customers/duplicates/", headers=HTMX)
    assert "<html" not in html(response) and "Acme one" in html(response)
    assert response["Vary"] == "HX-Request, Cookie" or "HX-Request" in response["Vary"]


def test_empty_queue_has_an_empty_state(login):
    assert "The queue is empty" in text(login("steward").get("/customers/duplicates/"))


def test_queue_query_count_does_not_grow_with_candidates(
    login, systems, django_assert_max_num_queries
):
    customers = [build_customer(systems, f"c{i}", rows=1) for i in range(70)]
    for a, b in zip(customers[::2], customers[1::2], strict=True):
        candidate_for(a, b, 0.9)
    MergeRecord.objects.create(
        survivor=customers[0], merged=customers[1], snapshot={}, automatic=True
    )
    client = login("steward")
    # 1-4 session, user, permissions · 5 systems for the filter · 6 count · 7 the page of
    # candidates with both customers and their row counts (correlated subqueries) ·
    # 8 the systems of the customers on the page · 9 candidates grouped by rule, source and
    # status (tabs, labels, precision) · 10 automatic merges and how many were undone ·
    # 11 the thresholds in force (match settings) · 12 the user's groups (header)
    with django_assert_max_num_queries(12):
        response = client.get("/customers/duplicates/")
    assert html(response).count('class="pair-side"') == 70  # 35 pairs of two customers
    # The htmx partial skips the labels and the header: 1-4 · 5 systems · 6 count · 7 page ·
    # 8 systems of the customers on the page
    with django_assert_max_num_queries(8):
        client.get("/customers/duplicates/", {"page": 1}, headers=HTMX)


def test_labels_summary_counts_decisions_and_estimates_precision(login, systems):
    customers = [build_customer(systems, f"c{i}", rows=1) for i in range(48)]
    pairs = list(zip(customers[::2], customers[1::2], strict=True))
    # 12 pairs by rule "email": 9 merged, 3 rejected (75%); 6 by the model: all merged.
    statuses = ["merged"] * 9 + ["rejected"] * 3
    for (a, b), status in zip(pairs[:12], statuses, strict=True):
        MatchCandidate.objects.filter(pk=candidate_for(a, b, rule="email").pk).update(status=status)
    for a, b in pairs[12:18]:
        MatchCandidate.objects.filter(pk=candidate_for(a, b).pk).update(status="merged")
    # 4 ingest auto-links and 2 pending at 99.5%.
    for a, b in pairs[18:22]:
        MatchCandidate.objects.filter(pk=candidate_for(a, b, source="ingest").pk).update(
            status="auto_linked"
        )
    for a, b in pairs[22:24]:
        candidate_for(a, b, 0.995)
    # 21 automatic merges, 1 undone: 24 auto-links judged (4 + 20 + the undone one), 1 wrong.
    for n in range(21):
        MergeRecord.objects.create(
            survivor=customers[0],
            merged=customers[1],
            snapshot={},
            automatic=True,
            undone_at=timezone.now() if n == 0 else None,
        )
    # A steward's merge is not an auto-link.
    MergeRecord.objects.create(survivor=customers[0], merged=customers[1], snapshot={})
    words = text(login("steward").get("/customers/duplicates/"))
    assert "Merged 15 by stewards" in words
    assert "Not the same 3" in words
    assert "Auto-linked 4" in words
    assert "Auto-link precision 96% 1 undone of 25" in words
    assert (
        "Precision of auto-links 96% over 25 decisions: consider raising the upper threshold."
        in words
    )
    assert "email 9 3 75%" in words
    assert "Probabilistic match 6 0 100%" in words
    assert "email: precision 75% over 12 decisions — review this rule." in words
    assert "2 pending pairs score 99% or more" in words


# --- bulk approve ----------------------------------------------------------------------


def test_bulk_approve_confirms_first_then_merges_only_above_the_score(login, systems):
    customers = [build_customer(systems, f"c{i}", rows=1) for i in range(6)]
    high = [candidate_for(customers[0], customers[1], 0.995)]
    high.append(candidate_for(customers[2], customers[3], 0.99))
    low = candidate_for(customers[4], customers[5], 0.97)
    client = login("steward")
    url = reverse("customers:duplicates_bulk_approve")

    confirm = client.post(url, {"min_score": "99"})
    assert confirm.status_code == 200
    words = text(confirm)
    assert "Merge 2 pairs scoring 99% or more?" in words
    assert "Acme c0" in words and "Acme c4" not in words
    assert not MergeRecord.objects.exists()

    done = client.post(url, {"min_score": "99", "confirm": "1"})
    assert "Merged 2 pairs scoring 99% or more." in follow(client, done)
    assert {c.status for c in MatchCandidate.objects.filter(pk__in=[c.pk for c in high])} == {
        "merged"
    }
    low.refresh_from_db()
    assert low.status == "pending"
    assert Customer.objects.get(pk=customers[1].pk).status == "merged"
    assert Customer.objects.get(pk=customers[5].pk).status == "active"


def test_bulk_approve_refuses_a_score_below_fifty(login, pair):
    client = login("steward")
    response = client.post(reverse("customers:duplicates_bulk_approve"), {"min_score": "20"})
    assert "Enter a score between 50 and 100%." in follow(client, response)
    assert not MergeRecord.objects.exists()


# --- the side-by-side merge --------------------------------------------------------------


def test_merge_page_shows_both_records_the_preselection_moves_and_evidence(login, pair):
    one, two, candidate = pair
    response = login("steward").get(reverse("customers:candidate", args=[candidate.pk]))
    page, words = html(response), text(response)
    assert "Survives Acme one" in words and "Merged into it Acme two" in words
    # Every non-empty canonical field is a row; those that differ have radios.
    for label in ("Name", "Legal name", "E-mail", "Phone", "Website", "City", "Country"):
        assert f'<th scope="row" class="field-name">{label}</th>' in page, label
    assert "Empty in both:" in words and "Tax ID" in words
    assert f'name="f_email" value="{one.pk}" checked' in page
    assert f'name="f_email" value="{two.pk}"' in page
    assert 'name="f_phone"' not in page  # same in both: nothing to choose
    assert "same in both" in words
    assert "from CRM · " in words and "from ERP · " in words
    assert "only value" in words  # website: only the survivor has one
    # Rows that would move from #two: 3 of each kind, its refs and keys.
    for moved in ("3 contacts", "3 deals", "3 orders", "3 invoices", "3 tickets"):
        assert moved in words, moved
    # The evidence table
    assert "Why the matcher paired them" in words
    assert re.search(r'ev-row-disagree">\s*<td class="strong">E-mail', page)
    assert "+11.5" in words and f"{MINUS}4.3" in words
    # The default survivor is the older customer; the other can be chosen instead.
    assert f"?survivor={two.pk}" in page
    assert 'value="merge"' in page and 'value="reject"' in page and 'value="defer"' in page
    # The pre-selected golden record is shown before anything is written.
    assert "Merged record" in words and "billing@acme-one.test" in words


def test_merge_page_can_keep_the_other_customer(login, pair):
    _, two, candidate = pair
    url = reverse("customers:candidate", args=[candidate.pk])
    words = text(login("steward").get(url, {"survivor": two.pk}))
    assert "Survives Acme two" in words and "Merged into it Acme one" in words


def test_merge_page_query_count(login, pair, django_assert_max_num_queries):
    one, _, candidate = pair
    client = login("steward")
    # 1-4 session, user, permissions · 5 the candidate with both customers · 6 ownership
    # matrix · 7 provenance of both · 8-16 one count per moved table (contacts, deals,
    # orders, invoices, payments, tickets, consents, source records, identity keys) ·
    # 17 not-duplicate check · 18 the systems of both customers · 19 the user's groups
    with django_assert_max_num_queries(19):
        response = client.get(reverse("customers:candidate", args=[candidate.pk]))
    assert response.status_code == 200
    # The preview partial: the same reads without the header
    with django_assert_max_num_queries(18):
        response = client.post(
            reverse("customers:candidate_preview", args=[candidate.pk]),
            {"survivor": one.pk},
            headers=HTMX,
        )
    assert response.status_code == 200


def test_approve_merges_with_the_chosen_values_and_lands_on_the_survivor(login, pair):
    one, two, candidate = pair
    before = rows_of(two.pk)
    client = login("steward")
    data = {"survivor": one.pk, "decision": "merge", "f_email": two.pk, "f_name": one.pk}
    response = client.post(decide_url(candidate), data)
    assert response["Location"] == f"/customers/{one.pk}/"
    words = follow(client, response)
    assert f"Merged “Acme two” (#{two.pk}) into “Acme one”." in words

    one.refresh_from_db()
    two.refresh_from_db()
    candidate.refresh_from_db()
    assert (two.status, two.merged_into_id) == ("merged", one.pk)
    assert candidate.status == "merged"
    assert one.email == "ap@acme-two.test"  # the steward's choice
    assert one.name == "Acme one"
    assert rows_of(two.pk)["contacts"] == 0
    assert Contact.objects.filter(customer=one).count() == 2 + before["contacts"]
    assert Ticket.objects.filter(customer=one).count() == 2 + before["tickets"]
    record = MergeRecord.objects.get()
    assert record.field_choices["email"] == "merged" and record.merged_by.username == "steward-user"


def test_approve_with_the_newer_customer_surviving(login, pair):
    one, two, candidate = pair
    client = login("steward")
    client.post(decide_url(candidate), {"survivor": two.pk, "decision": "merge"})
    one.refresh_from_db()
    assert (one.status, one.merged_into_id) == ("merged", two.pk)


def test_reject_remembers_not_the_same_and_leaves_the_queue(login, pair):
    one, two, candidate = pair
    client = login("steward")
    queue = "/customers/duplicates/?kind=organization"
    data = {"survivor": one.pk, "decision": "reject", "reason": "Two shops", "next": queue}
    response = client.post(decide_url(candidate), data)
    assert response["Location"] == queue
    assert "are marked as not the same customer" in follow(client, response)
    candidate.refresh_from_db()
    assert candidate.status == "rejected"
    assert NotDuplicate.objects.get(low=one, high=two).reason == "Two shops"
    assert "Acme one" not in text(client.get("/customers/duplicates/"))
    assert "Acme one" in text(client.get("/customers/duplicates/", {"status": "decided"}))
    assert Customer.objects.filter(status="active").count() == 2


def test_next_must_be_local(login, pair):
    one, _, candidate = pair
    data = {"survivor": one.pk, "decision": "defer", "next": "https://evil.test/"}
    response = login("steward").post(decide_url(candidate), data)
    assert response["Location"] == "/customers/duplicates/"


def test_defer_parks_the_pair(login, pair):
    one, _, candidate = pair
    client = login("steward")
    response = client.post(decide_url(candidate), {"survivor": one.pk, "decision": "defer"})
    assert "Deferred “Acme one” and “Acme two”." in follow(client, response)
    candidate.refresh_from_db()
    assert candidate.status == "deferred"
    assert "Acme one" in text(client.get("/customers/duplicates/", {"status": "deferred"}))
    # A deferred pair can still be merged, but not deferred again.
    page = html(client.get(reverse("customers:candidate", args=[candidate.pk])))
    assert 'value="merge"' in page and 'value="defer"' not in page


def test_a_not_the_same_pair_shows_the_problem_and_cannot_be_merged(login, pair):
    one, two, candidate = pair
    NotDuplicate.objects.create(low=one, high=two, reason="legal says so")
    client = login("steward")
    page = html(client.get(reverse("customers:candidate", args=[candidate.pk])))
    assert "were marked as not the same customer; they cannot be merged" in page
    assert re.search(r'value="merge" class="btn btn-primary btn-block" disabled', page)

    before = db_state()
    data = {"survivor": one.pk, "decision": "merge", "f_email": two.pk}
    response = client.post(decide_url(candidate), data)
    assert response.status_code == 200  # the page again, with the message and the choices
    words = text(response)
    assert "they cannot be merged" in words
    assert f'name="f_email" value="{two.pk}" checked' in html(response)
    assert "changed by you" in words
    assert db_state() == before


def test_a_decided_candidate_cannot_be_decided_again(login, pair):
    one, _, candidate = pair
    client = login("steward")
    client.post(decide_url(candidate), {"survivor": one.pk, "decision": "reject"})
    response = client.post(decide_url(candidate), {"survivor": one.pk, "decision": "merge"})
    assert response.status_code == 200
    assert "was already decided (not the same)" in text(response)
    assert "This pair was decided: not the same" in text(response)
    assert not MergeRecord.objects.exists()


def test_a_decision_needs_a_survivor_of_the_pair(login, pair, systems):
    _, _, candidate = pair
    stranger = build_customer(systems, "x", rows=1)
    client = login("steward")
    response = client.post(decide_url(candidate), {"survivor": stranger.pk, "decision": "merge"})
    assert "Choose the surviving customer and a decision." in text(response)
    assert not MergeRecord.objects.exists()


def test_preview_writes_nothing_and_shows_the_chosen_values(login, pair):
    one, two, candidate = pair
    client = login("steward")
    url = reverse("customers:candidate_preview", args=[candidate.pk])
    before = db_state()
    counts = (MergeRecord.objects.count(), NotDuplicate.objects.count(), LogEntry.objects.count())
    response = client.post(url, {"survivor": one.pk, "f_email": two.pk}, headers=HTMX)
    assert response.status_code == 200
    page = html(response)
    assert "<html" not in page and 'class="golden"' in page
    assert "ap@acme-two.test" in page and "billing@acme-one.test" not in page
    assert f"from #{two.pk}" in page
    assert db_state() == before
    assert counts == (
        MergeRecord.objects.count(),
        NotDuplicate.objects.count(),
        LogEntry.objects.count(),
    )
    candidate.refresh_from_db()
    assert candidate.status == "pending"
    # Without htmx (no JavaScript) the whole page comes back with the preview.
    full = client.post(url, {"survivor": one.pk, "f_email": two.pk})
    assert "<html" in html(full) and "Preview with your choices" in html(full)


# --- ad-hoc merge ----------------------------------------------------------------------


def test_adhoc_page_compares_any_two_customers(login, systems):
    one = build_customer(systems, "one", rows=1)
    two = build_customer(systems, "two", rows=1)
    client = login("steward")
    response = client.get("/customers/merge/", {"a": two.pk, "b": one.pk})
    words = text(response)
    assert response.status_code == 200
    assert "Compare two customers" in words and "Survives Acme one" in words
    assert "Why the matcher paired them" not in words
    page = html(response)
    assert f'name="a" value="{one.pk}"' in page and 'value="defer"' not in page
    assert 'action="/customers/merge/decide/"' in page


def test_adhoc_page_without_ids_asks_for_them(login):
    client = login("steward")
    assert "Compare two customers" in text(client.get("/customers/merge/"))
    response = client.get("/customers/merge/", {"a": 3, "b": 3})
    assert response.status_code == 400
    assert "Enter two different customers." in text(response)


def test_adhoc_pair_already_queued_opens_its_candidate(login, pair):
    one, two, candidate = pair
    response = login("steward").get("/customers/merge/", {"a": two.pk, "b": one.pk})
    assert response["Location"] == reverse("customers:candidate", args=[candidate.pk])


def test_adhoc_merge_and_reject(login, systems):
    one = build_customer(systems, "one", rows=1)
    two = build_customer(systems, "two", rows=1)
    three = build_customer(systems, "three", rows=1)
    client = login("steward")
    url = reverse("customers:merge_decide")
    data = {"a": one.pk, "b": two.pk, "survivor": two.pk, "decision": "merge", "f_name": one.pk}
    response = client.post(url, data)
    assert response["Location"] == f"/customers/{two.pk}/"
    two.refresh_from_db()
    assert two.name == "Acme one"
    assert Customer.objects.get(pk=one.pk).merged_into_id == two.pk
    assert MergeRecord.objects.get().candidate is None

    data = {"a": two.pk, "b": three.pk, "survivor": two.pk, "decision": "reject"}
    response = client.post(url, data)
    assert "are marked as not the same customer" in follow(client, response)
    assert NotDuplicate.objects.filter(low=two, high=three).exists()
    # Merging them now is refused, with the reason, and nothing changes.
    data["decision"] = "merge"
    response = client.post(url, data)
    assert "they cannot be merged" in text(response)
    assert Customer.objects.get(pk=three.pk).status == "active"


def test_pair_reject_decides_an_open_candidate_and_is_idempotent(pair, make_user):
    one, two, candidate = pair
    steward = make_user("steward")
    record = pair_reject(a_id=two.pk, b_id=one.pk, user=steward, reason="no")
    assert (record.low_id, record.high_id, record.reason) == (one.pk, two.pk, "no")
    candidate.refresh_from_db()
    assert (candidate.status, candidate.decided_by) == ("rejected", steward)
    assert pair_reject(a_id=one.pk, b_id=two.pk, user=steward).pk == record.pk
    with pytest.raises(ApplicationError, match="always the same as itself"):
        pair_reject(a_id=one.pk, b_id=one.pk, user=steward)
    with pytest.raises(ApplicationError, match="does not exist"):
        pair_reject(a_id=one.pk, b_id=987654, user=steward)


# --- merge history and undo --------------------------------------------------------------


def test_360_page_loads_the_merge_history_for_stewards_only(login, pair):
    one, _, _ = pair
    url = reverse("customers:merge_history", args=[one.pk])
    assert f'hx-get="{url}"' in html(login("steward").get(f"/customers/{one.pk}/"))
    assert url not in html(login("sales").get(f"/customers/{one.pk}/"))


def test_merge_history_lists_merges_both_ways_with_undo(login, pair, systems, make_user):
    one, two, _ = pair
    three = build_customer(systems, "three", rows=1)
    first = customer_merge(survivor_id=one.pk, merged_id=two.pk, user=make_user("admin"))
    client = login("steward")
    response = client.get(reverse("customers:merge_history", args=[one.pk]), headers=HTMX)
    words = text(response)
    assert "<html" not in html(response)
    assert f"Acme two #{two.pk} merged into this customer" in words
    assert "admin-user" in words and "In effect" in words
    assert f'action="/customers/merges/{first.pk}/undo/"' in html(response)
    customer_merge(survivor_id=three.pk, merged_id=one.pk, automatic=True)
    words = text(client.get(reverse("customers:merge_history", args=[one.pk])))
    assert f"This customer was merged into Acme three #{three.pk}" in words
    assert "Automatic" in words


def test_merge_history_query_count(login, pair, systems, django_assert_max_num_queries):
    one, _, _ = pair
    for n in range(5):
        other = build_customer(systems, f"m{n}", rows=1)
        customer_merge(survivor_id=one.pk, merged_id=other.pk)
    client = login("steward")
    # 1-4 session, user, permissions · 5 customer · 6 its merges with both customers and
    # the users who merged and undid them
    with django_assert_max_num_queries(6):
        response = client.get(reverse("customers:merge_history", args=[one.pk]), headers=HTMX)
    assert html(response).count('class="btn btn-sm">Undo merge</button>') == 5


def test_undo_restores_the_merged_customer(login, pair):
    one, two, candidate = pair
    client = login("steward")
    client.post(decide_url(candidate), {"survivor": one.pk, "decision": "merge"})
    record = MergeRecord.objects.get()
    response = client.post(reverse("customers:merge_undo", args=[record.pk]))
    assert response["Location"] == f"/customers/{two.pk}/"
    words = follow(client, response)
    assert f"Merge #{record.pk} undone: “Acme two” is a customer of its own again" in words
    two.refresh_from_db()
    assert (two.status, two.merged_into_id) == ("active", None)
    assert rows_of(two.pk)["contacts"] == 3
    record.refresh_from_db()
    assert record.undone_by.username == "steward-user"
    # Undone twice: a clear message on the survivor's page.
    response = client.post(reverse("customers:merge_undo", args=[record.pk]))
    assert response["Location"] == f"/customers/{one.pk}/"
    assert f"Merge #{record.pk} was not undone: Merge #{record.pk} was already undone." in (
        follow(client, response)
    )


def test_undo_is_refused_while_the_survivor_is_merged_on(login, pair, systems):
    one, two, _ = pair
    three = build_customer(systems, "three", rows=1)
    first = customer_merge(survivor_id=one.pk, merged_id=two.pk)
    later = customer_merge(survivor_id=three.pk, merged_id=one.pk)
    client = login("steward")
    response = client.post(reverse("customers:merge_undo", args=[first.pk]), follow=True)
    assert response.redirect_chain[-1][0] == f"/customers/{three.pk}/"  # one's survivor
    words = text(response)
    assert f"undo merge #{later.pk} first" in words
    assert Customer.objects.get(pk=two.pk).status == "merged"


def test_sales_cannot_undo(login, pair):
    one, two, _ = pair
    record = customer_merge(survivor_id=one.pk, merged_id=two.pk)
    assert login("sales").post(reverse("customers:merge_undo", args=[record.pk])).status_code == 403
    assert Customer.objects.get(pk=two.pk).status == "merged"


# --- the ownership matrix --------------------------------------------------------------


def test_ownership_page_shows_the_matrix(login):
    words = text(login("steward").get("/customers/ownership/"))
    for expected in (
        "Customer",
        "All other fields",
        "Any CRM system",
        "⇄ Both ways",
        "Tax ID",
        "Any ERP / billing system",
        "← Into the hub",
        "System of record wins",
        "Newest wins (audited)",
        "Default matrix",
        "Give a field a rule of its own",
    ):
        assert expected in words, expected


def test_ownership_page_query_count(login, systems, django_assert_max_num_queries):
    for n in range(20):
        SourceSystem.objects.create(name=f"sys{n}", kind="other")
    for name in ("email", "phone", "website", "owner", "name"):
        FieldOwnership.objects.create(entity="customer", field=name, owner_kind="crm")
    client = login("steward")
    # 1-4 session, user, permissions · 5 every cell with its system and editor ·
    # 6 systems (owner choices of the add form) · 7 the user's groups (header)
    with django_assert_max_num_queries(7):
        response = client.get("/customers/ownership/")
    assert html(response).count('<tr id="cell-') == FieldOwnership.objects.count()


def test_ownership_inline_edit_saves_and_is_audited(login, systems, django_assert_max_num_queries):
    cell = FieldOwnership.objects.get(entity="customer", field="tax_id")
    client = login("steward")
    edit = reverse("customers:ownership_edit", args=[cell.pk])
    form = client.get(edit, headers=HTMX)
    assert f'<form id="cell-form-{cell.pk}"' in html(form)
    assert f'form="cell-form-{cell.pk}"' in html(form)
    entries = LogEntry.objects.get_for_object(cell).count()

    prefix = f"cell{cell.pk}"
    data = {
        f"{prefix}-owner": f"system:{systems['erp'].pk}",
        f"{prefix}-direction": "both",
        f"{prefix}-conflict_rule": "most_trusted",
    }
    response = client.post(edit, data, headers=HTMX)
    assert response.status_code == 200
    words = text(response)
    assert "<html" not in html(response)
    assert "ERP" in words and "⇄ Both ways" in words and "Most trusted source" in words
    assert "steward-user" in words and "saved" in words
    cell.refresh_from_db()
    assert (cell.owner_system, cell.owner_kind, cell.direction, cell.conflict_rule) == (
        systems["erp"],
        "",
        "both",
        "most_trusted",
    )
    assert cell.updated_by.username == "steward-user"
    log = LogEntry.objects.get_for_object(cell)
    assert log.count() == entries + 1
    entry = log.latest("timestamp")
    assert entry.actor.username == "steward-user"
    assert entry.changes_dict["direction"] == ["inbound", "both"]

    # 1-4 session, user, permissions · 5 the cell · 6 its log entries with their actors
    # (the content type is cached) · 7 the systems the entries name
    with django_assert_max_num_queries(7):
        history = client.get(reverse("customers:ownership_history", args=[cell.pk]), headers=HTMX)
    words = text(history)
    assert "steward-user" in words
    assert "Direction Inbound → Both" in words
    assert "Conflict rule System of record wins → Most trusted source" in words
    assert "System of record ERP" in words
    assert "System of record (kind) ERP / billing → —" in words


def test_ownership_edit_without_htmx_redirects_with_a_message(login):
    cell = FieldOwnership.objects.get(entity="ticket", field="*")
    client = login("steward")
    prefix = f"cell{cell.pk}"
    data = {f"{prefix}-owner": "kind:crm", f"{prefix}-direction": "none"}
    data[f"{prefix}-conflict_rule"] = "newest_wins"
    response = client.post(reverse("customers:ownership_edit", args=[cell.pk]), data)
    assert response["Location"] == f"/customers/ownership/#cell-{cell.pk}"
    assert "ticket.* saved." in follow(client, response)
    cell.refresh_from_db()
    assert (cell.owner_kind, cell.direction) == ("crm", "none")


def test_ownership_edit_rejects_bad_input(login):
    cell = FieldOwnership.objects.get(entity="customer", field="*")
    prefix = f"cell{cell.pk}"
    data = {f"{prefix}-owner": "kind:crm", f"{prefix}-direction": "sideways"}
    data[f"{prefix}-conflict_rule"] = "system_wins"
    client = login("steward")
    response = client.post(reverse("customers:ownership_edit", args=[cell.pk]), data, headers=HTMX)
    assert response.status_code == 200
    assert "row-editing" in html(response) and "Select a valid choice" in text(response)
    cell.refresh_from_db()
    assert cell.direction == "both"


def test_ownership_cell_cancel_returns_the_row(login):
    cell = FieldOwnership.objects.get(entity="customer", field="*")
    response = login("steward").get(
        reverse("customers:ownership_cell", args=[cell.pk]), headers=HTMX
    )
    assert html(response).lstrip().startswith(f'<tr id="cell-{cell.pk}"')


def test_ownership_add_a_row_for_one_field(login, systems):
    client = login("steward")
    page = html(client.get("/customers/ownership/"))
    assert 'value="customer:email"' in page
    assert 'value="customer:tax_id"' not in page  # has a row already
    assert 'value="customer:email_verified"' not in page  # input only, never stored
    data = {"cell": "customer:email", "owner": "kind:billing", "direction": "inbound"}
    data["conflict_rule"] = "newest_wins"
    response = client.post(reverse("customers:ownership_add"), data)
    cell = FieldOwnership.objects.get(entity="customer", field="email")
    assert response["Location"] == f"/customers/ownership/#cell-{cell.pk}"
    assert "customer.E-mail has a row of its own now." in follow(client, response)
    assert (cell.owner_kind, cell.conflict_rule, cell.updated_by.username) == (
        "billing",
        "newest_wins",
        "steward-user",
    )
    created = LogEntry.objects.get_for_object(cell).get()
    assert created.action == LogEntry.Action.CREATE
    # The same field again is no longer offered, and a forged post is refused.
    response = client.post(reverse("customers:ownership_add"), data)
    assert response.status_code == 200
    assert "Select a valid choice" in text(response)
    assert FieldOwnership.objects.filter(entity="customer", field="email").count() == 1


def test_an_input_only_field_gets_no_row_in_the_matrix(make_user):
    with pytest.raises(ApplicationError, match="never stored"):
        field_ownership_create(
            entity="customer",
            field="email_verified",
            user=make_user("steward"),
            owner_kind="crm",
            owner_system_id=None,
            direction="inbound",
            conflict_rule="system_wins",
        )


def test_ownership_service_validates(make_user):
    cell = FieldOwnership.objects.get(entity="customer", field="*")
    steward = make_user("steward")
    kwargs = {"cell_id": cell.pk, "user": steward, "owner_kind": "crm", "owner_system_id": None}
    with pytest.raises(ApplicationError, match="Unknown direction"):
        field_ownership_update(**kwargs, direction="up", conflict_rule="system_wins")
    with pytest.raises(ApplicationError, match="Unknown conflict rule"):
        field_ownership_update(**kwargs, direction="both", conflict_rule="coin_flip")
    with pytest.raises(ApplicationError, match="does not exist"):
        field_ownership_update(
            **{**kwargs, "owner_system_id": 987654}, direction="both", conflict_rule="system_wins"
        )


def test_sales_cannot_edit_the_matrix(login):
    cell = FieldOwnership.objects.get(entity="customer", field="*")
    client = login("sales")
    prefix = f"cell{cell.pk}"
    data = {f"{prefix}-owner": "", f"{prefix}-direction": "none"}
    data[f"{prefix}-conflict_rule"] = "newest_wins"
    assert client.post(reverse("customers:ownership_edit", args=[cell.pk]), data).status_code == 403
    cell.refresh_from_db()
    assert cell.direction == "both"
    assert not LogEntry.objects.get_for_object(cell).exists()
