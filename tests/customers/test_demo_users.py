"""demo_users: one user per role, and the partner's object permissions."""

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from guardian.models import UserObjectPermission
from guardian.shortcuts import assign_perm, get_objects_for_user

from customers.management.commands.demo_users import PARTNER_LIMIT, PARTNER_OWNER, ROLES
from customers.models import Customer

pytestmark = pytest.mark.django_db


def run() -> str:
    out = io.StringIO()
    call_command("demo_users", stdout=out)
    return out.getvalue()


def visible_to_partner() -> set[int]:
    partner = User.objects.get(username="partner")
    return set(
        get_objects_for_user(partner, "customers.view_customer").values_list("pk", flat=True)
    )


@pytest.fixture
def territory():
    """More partner-owned customers than the partner may see, a merged one, and others."""
    shared = [
        Customer.objects.create(name=f"Partner account {n}", owner=PARTNER_OWNER)
        for n in range(PARTNER_LIMIT + 3)
    ]
    Customer.objects.create(
        name="Merged partner account", owner=PARTNER_OWNER, status=Customer.Status.MERGED
    )
    others = [
        Customer.objects.create(name=f"Direct account {n}", owner="Olivia Bennett")
        for n in range(3)
    ]
    return shared, others


def test_creates_one_user_per_role_with_its_group(monkeypatch):
    monkeypatch.setenv("DEMO_PASSWORD", "s3cret-demo")
    output = run()
    users = {u.username: u for u in User.objects.filter(username__in=ROLES)}
    assert set(users) == {"sales", "service", "finance", "steward", "admin", "partner"}
    for role, user in users.items():
        assert list(user.groups.values_list("name", flat=True)) == [role]
        assert user.check_password("s3cret-demo")
        assert user.is_active
        assert (user.is_staff, user.is_superuser) == (
            (True, True) if role == "admin" else (False, False)
        )
    assert "s3cret-demo" in output
    assert all(role in output for role in ROLES)
    # Model permissions come from the groups: finance may see payments, sales may not.
    assert users["finance"].has_perm("customers.view_payment")
    assert not users["sales"].has_perm("customers.view_payment")


def test_default_password(monkeypatch):
    monkeypatch.delenv("DEMO_PASSWORD", raising=False)
    output = run()
    assert User.objects.get(username="steward").check_password("concord-demo")
    assert "concord-demo" in output


def test_partner_sees_exactly_the_first_territory_customers(territory):
    shared, others = territory
    run()
    expected = {c.pk for c in shared[:PARTNER_LIMIT]}
    assert visible_to_partner() == expected
    partner = User.objects.get(username="partner")
    assert partner.has_perm("customers.view_customer", shared[0])
    assert not partner.has_perm("customers.view_customer", others[0])
    assert not partner.has_perm("customers.view_customer")  # no global permission
    assert not partner.has_perm("customers.change_customer", shared[0])


def test_running_twice_is_idempotent_and_drops_stale_shares(territory, monkeypatch):
    shared, others = territory
    run()
    partner = User.objects.get(username="partner")
    # A share left over from an earlier demo: not in the territory any more.
    assign_perm("customers.view_customer", partner, others[0])
    monkeypatch.setenv("DEMO_PASSWORD", "changed")
    run()
    assert User.objects.filter(username__in=ROLES).count() == len(ROLES)
    assert visible_to_partner() == {c.pk for c in shared[:PARTNER_LIMIT]}
    assert UserObjectPermission.objects.filter(user=partner).count() == PARTNER_LIMIT
    assert User.objects.get(username="admin").check_password("changed")
    assert User.objects.get(username="admin").groups.count() == 1


def test_without_customers_the_partner_sees_nothing_and_is_told_why():
    output = run()
    assert visible_to_partner() == set()
    assert "seed_demo" in output
