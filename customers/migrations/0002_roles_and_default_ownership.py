"""Roles as groups with model permissions, and the default field-ownership matrix."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

VIEW_360 = [
    "customers.view_customer",
    "customers.view_contact",
    "customers.view_deal",
    "customers.view_order",
    "customers.view_orderline",
    "customers.view_externalref",
    "customers.view_fieldprovenance",
    "customers.view_sourcesystem",
    "customers.view_payment_status",
    "customers.view_invoice",
]
ROLES = {
    "sales": [*VIEW_360, "customers.view_ticket"],
    "service": [*VIEW_360, "customers.view_ticket"],
    "finance": [*VIEW_360, "customers.view_payment"],
    "steward": [
        *VIEW_360,
        "customers.view_ticket",
        "customers.view_payment",
        "customers.change_customer",
        "customers.view_fieldownership",
        "customers.change_fieldownership",
        "customers.view_identitykey",
        "integrations.view_inboundrecord",
        "integrations.change_inboundrecord",
        "integrations.view_syncrun",
    ],
    "admin": "*",
    "partner": [],
}

# entity, field, owner kind, direction, conflict rule
DEFAULT_MATRIX = [
    ("customer", "*", "crm", "both", "system_wins"),
    ("customer", "tax_id", "billing", "inbound", "system_wins"),
    ("customer", "legal_name", "billing", "inbound", "system_wins"),
    ("customer", "address_line1", "billing", "inbound", "system_wins"),
    ("customer", "address_line2", "billing", "inbound", "system_wins"),
    ("customer", "city", "billing", "inbound", "system_wins"),
    ("customer", "postal_code", "billing", "inbound", "system_wins"),
    ("customer", "region", "billing", "inbound", "system_wins"),
    ("customer", "country", "billing", "inbound", "system_wins"),
    ("contact", "*", "crm", "both", "system_wins"),
    ("deal", "*", "crm", "both", "system_wins"),
    ("order", "*", "billing", "both", "system_wins"),
    ("invoice", "*", "billing", "both", "system_wins"),
    ("payment", "*", "billing", "both", "system_wins"),
    ("ticket", "*", "helpdesk", "both", "newest_wins"),
]


def forwards(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    everything = Permission.objects.filter(
        content_type__app_label__in=["customers", "integrations", "reconciliation"]
    )
    for role, perms in ROLES.items():
        group, _ = Group.objects.get_or_create(name=role)
        if perms == "*":
            group.permissions.set(everything)
            continue
        wanted = []
        for dotted in perms:
            app_label, codename = dotted.split(".")
            wanted.append(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        group.permissions.set(wanted)
    FieldOwnership = apps.get_model("customers", "FieldOwnership")
    for entity, field, kind, direction, rule in DEFAULT_MATRIX:
        FieldOwnership.objects.update_or_create(
            entity=entity,
            field=field,
            defaults={"owner_kind": kind, "direction": direction, "conflict_rule": rule},
        )


def backwards(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()
    apps.get_model("customers", "FieldOwnership").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0001_initial"),
        ("integrations", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
