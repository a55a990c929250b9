"""Permissions of the sync engine's models for the role groups."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

STEWARD = [
    ("integrations", "view_connection"),
    ("integrations", "view_streamstate"),
    ("integrations", "view_syncrun"),
    ("integrations", "view_inboundrecord"),
    ("integrations", "change_inboundrecord"),
    ("integrations", "view_outboxmessage"),
    ("integrations", "change_outboxmessage"),
]


def forwards(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    admin, _ = Group.objects.get_or_create(name="admin")
    admin.permissions.add(*Permission.objects.filter(content_type__app_label="integrations"))
    steward, _ = Group.objects.get_or_create(name="steward")
    for app_label, codename in STEWARD:
        steward.permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("integrations", "0002_sync_engine"),
        ("customers", "0002_roles_and_default_ownership"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
