"""python manage.py demo_users — one demo user per role, and the partner's shared customers.

Idempotent: users are created or updated (group, flags, password), and the partner's
object permissions are set to exactly the customers of the partner territory.
"""

from __future__ import annotations

import os

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from guardian.shortcuts import assign_perm, get_objects_for_user, remove_perm

from customers.models import Customer

ROLES = ("sales", "service", "finance", "steward", "admin", "partner")
DEFAULT_PASSWORD = "concord-demo"
# The CRM account owner of the demo's partner territory (integrations.demo plants it on a
# few companies); the partner user may see exactly those customers.
PARTNER_OWNER = "Northwind Partners (Benelux)"
PARTNER_LIMIT = 25
PARTNER_PERM = "customers.view_customer"


def partner_customers() -> list[Customer]:
    """The customers shared with the demo partner: active, owned by the partner territory.

    A world without that territory (the simulators' world) shares the first organizations
    instead, so the partner always has something to read.
    """
    active = Customer.objects.filter(status=Customer.Status.ACTIVE).order_by("pk")
    territory = list(active.filter(owner=PARTNER_OWNER)[:PARTNER_LIMIT])
    return territory or list(active.filter(kind=Customer.Kind.ORGANIZATION)[:PARTNER_LIMIT])


class Command(BaseCommand):
    help = (
        "Create or update one demo user per role (sales, service, finance, steward, admin, "
        "partner) with the password from DEMO_PASSWORD, and share the partner territory's "
        "customers with the partner user."
    )

    def handle(self, *args, **opts):
        password = os.environ.get("DEMO_PASSWORD") or DEFAULT_PASSWORD
        groups = {g.name: g for g in Group.objects.filter(name__in=ROLES)}
        missing = [role for role in ROLES if role not in groups]
        if missing:
            raise CommandError(
                f"missing role groups {', '.join(missing)}: run `python manage.py migrate` first"
            )
        with transaction.atomic():
            users = {role: _user_for_role(role, groups[role], password) for role in ROLES}
            shared = _share_with_partner(users["partner"])
        for role in ROLES:
            extra = " (staff, superuser)" if role == "admin" else ""
            if role == "partner":
                extra = f" (API only; sees {shared} shared customers)"
            self.stdout.write(f"  {role:<8} group {role}{extra}")
        self.stdout.write(f"Demo users ready. Password for all of them: {password}")
        if shared == 0:
            self.stdout.write(
                "No partner-territory customers yet: run `python manage.py seed_demo`, "
                "then demo_users again."
            )


def _user_for_role(role: str, group: Group, password: str) -> User:
    user, _ = User.objects.get_or_create(username=role)
    user.is_active = True
    user.is_staff = user.is_superuser = role == "admin"
    user.email = f"{role}@concord.example"
    user.set_password(password)
    user.save()
    user.groups.set([group])
    return user


def _share_with_partner(partner: User) -> int:
    """Give the partner view permission on exactly the partner customers; returns the count."""
    wanted = partner_customers()
    wanted_ids = {c.pk for c in wanted}
    # Only object permissions count here: the partner group has no global permissions.
    current = get_objects_for_user(
        partner,
        PARTNER_PERM,
        Customer,
        use_groups=False,
        accept_global_perms=False,
        with_superuser=False,
    )
    stale = current.exclude(pk__in=wanted_ids)
    if stale.exists():
        remove_perm(PARTNER_PERM, partner, stale)
    if wanted:
        # A queryset makes guardian assign in bulk, skipping permissions already held.
        assign_perm(PARTNER_PERM, partner, Customer.objects.filter(pk__in=wanted_ids))
    return len(wanted)
